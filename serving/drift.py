"""Drift: how far a scoring run's population has moved from the one the model learned on.

For every ``churn score`` run, the population stability index (PSI) of each model input and of the
scores, against the training reference: the snapshot of the latest date the served model learned
from (``train_last``), scored by the same model. PSI = sum over bins of (current share - reference
share) x ln(current share / reference share), over ten quantile bins of the reference (a
categorical input: its categories); under 0.1 is stable, over 0.25 a clear shift. The figures go to
the store's ``drift_scores`` table with the run's stamp; ``/metrics`` shows the newest run's and
``churn outcomes`` reads them for its retrain advice.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from serving.scoring import Scorer
from serving.tables import RunStamp, append_rows, read_rows

DRIFT_SCORES = "drift_scores"
SCORE = "__score__"
"""The ``feature`` name of the scores' own PSI."""
BINS = 10
FLOOR = 1e-4
DRIFT_TYPES: dict[str, str] = {
    "scored_at": "timestamp",
    "as_of": "date",
    "model_name": "string",
    "model_version": "string",
    "reference_as_of": "date",
    "feature": "string",
    "psi": "float64",
}
"""The columns of the ``drift_scores`` table."""


def psi(reference: pd.Series, current: pd.Series) -> float:
    """The population stability index of ``current`` against ``reference``.

    Args:
        reference: the training reference's values.
        current: the run's values.

    Returns:
        PSI over ten quantile bins of the reference (categories for text); missing values form a bin of their own.
    """
    if reference.dtype == object or isinstance(reference.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(reference):
        ref_keys, cur_keys = reference.astype(str).fillna("<missing>"), current.astype(str).fillna("<missing>")
        cats = sorted(set(ref_keys) | set(cur_keys))
        ref_share = ref_keys.value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy()
        cur_share = cur_keys.value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy()
    else:
        ref = pd.to_numeric(reference, errors="coerce").astype(float).to_numpy()
        cur = pd.to_numeric(current, errors="coerce").astype(float).to_numpy()
        finite = ref[np.isfinite(ref)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1])) if finite.size else np.array([])

        def shares(values: np.ndarray) -> np.ndarray:
            missing = ~np.isfinite(values)
            counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=edges.size + 1)
            return np.append(counts, missing.sum()) / max(values.size, 1)

        ref_share, cur_share = shares(ref), shares(cur)
    ref_share, cur_share = np.maximum(ref_share, FLOOR), np.maximum(cur_share, FLOOR)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def drift_frame(scorer: Scorer, reference: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """PSI of every model input present in both snapshots, and of the scores.

    Args:
        scorer: the served model.
        reference: the training reference snapshot.
        current: the run's snapshot.

    Returns:
        Columns ``feature`` (``__score__`` for the scores) and ``psi``, largest first.
    """
    model = scorer.model
    rows = [(name, psi(reference[name], current[name])) for name in model.feature_names if name in reference.columns and name in current.columns]
    ref_scores = pd.Series(scorer.probabilities(model.encode(reference)))
    cur_scores = pd.Series(scorer.probabilities(model.encode(current)))
    rows.append((SCORE, psi(ref_scores, cur_scores)))
    return pd.DataFrame(rows, columns=["feature", "psi"]).sort_values("psi", ascending=False, ignore_index=True)


def write_drift(location: str | Path, stamp: RunStamp, reference_as_of: date, frame: pd.DataFrame) -> None:
    """Append a run's PSI figures to the store's ``drift_scores`` table.

    Args:
        location: the store.
        stamp: the scoring run.
        reference_as_of: the reference snapshot's date.
        frame: from :func:`drift_frame`.
    """
    out = frame.copy()
    out.insert(0, "scored_at", pd.Timestamp(stamp.scored_at))
    out.insert(1, "as_of", stamp.as_of)
    out.insert(2, "model_name", stamp.model_name)
    out.insert(3, "model_version", stamp.model_version)
    out.insert(4, "reference_as_of", reference_as_of)
    out["scored_at"] = out["scored_at"].astype("datetime64[us]")
    append_rows(location, DRIFT_SCORES, out[list(DRIFT_TYPES)], DRIFT_TYPES)


def read_drift(location: str | Path, scored_at: datetime | None = None) -> pd.DataFrame:
    """The PSI figures of one run (the newest run with figures by default).

    Args:
        location: the store.
        scored_at: the run's stamp time; None for the newest.

    Returns:
        The :data:`DRIFT_TYPES` columns (empty when none were stored).
    """
    frame = read_rows(location, DRIFT_SCORES, DRIFT_TYPES)
    if frame.empty:
        return frame
    when = pd.Timestamp(scored_at) if scored_at is not None else pd.to_datetime(frame["scored_at"]).max()
    return frame[pd.to_datetime(frame["scored_at"]) == when].reset_index(drop=True)
