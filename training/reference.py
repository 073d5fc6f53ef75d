"""Which side of each feature goes with churn: what lets a reason read as a reason.

A tree model's contribution can be positive for a value that, on its own, says the customer is safe
(trees correct the BG/NBD starting score, features interact): "its buying pattern gives a less than 1%
chance of no order" then stands as the reason of a 88% risk. A retention team reads that as nonsense.
So each model carries, per numeric feature, the typical value of its training rows (the median) and
the side of it that goes with churn there (the sign of the rank correlation with the label); a
feature is cited as a reason only when the customer's value lies on that side (see
:func:`serving.reasons.explain_row`). Learned from the training rows, so it holds for any order log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from training.dataset import LABEL

MAX_ROWS = 200_000
"""Rows read for the reference (evenly spaced over the training rows; medians and signs settle long before)."""
MIN_CORRELATION = 0.02
"""A rank correlation weaker than this, or than two standard errors of it (2 / sqrt(rows)), gives the
feature no side: it is then cited wherever the model says it raises the risk."""


def risk_reference(rows: pd.DataFrame, feature_names: Sequence[str], categorical: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """The typical value and risky side of every numeric feature, from labelled training rows.

    Args:
        rows: training rows with the feature columns and the label.
        feature_names: the model's features.
        categorical: the categorical ones (left out: a category has no side).

    Returns:
        Feature name to ``{"median": m, "risk_side": s}``: ``s`` is +1 when higher values go with
        churn, -1 when lower ones do, 0 when neither clearly; features without a value are left out.
    """
    step = max(1, -(-len(rows) // MAX_ROWS))
    sample = rows.iloc[::step]
    label = sample[LABEL].to_numpy(dtype=float)
    out: dict[str, dict[str, float]] = {}
    for name in feature_names:
        if name in categorical or name not in sample.columns:
            continue
        values = pd.to_numeric(sample[name], errors="coerce").to_numpy(dtype=float)
        known = ~np.isnan(values)
        if not known.any():
            continue
        out[name] = {"median": float(np.median(values[known])), "risk_side": _side(values[known], label[known])}
    return out


def _side(values: np.ndarray, label: np.ndarray) -> float:
    """+1, -1 or 0: the sign of Spearman's correlation of the values with the label, when clear."""
    if len(values) < 2 or np.ptp(values) == 0 or np.ptp(label) == 0:
        return 0.0
    ranks = pd.Series(values).rank().to_numpy()
    rho = float(np.corrcoef(ranks, label)[0, 1])
    return float(np.sign(rho)) if abs(rho) >= max(MIN_CORRELATION, 2 / np.sqrt(len(values))) else 0.0


def on_risky_side(value: float | None, reference: Mapping[str, float] | None) -> bool:
    """Whether a customer's value of a feature lies on the side of the typical value that goes with churn.

    Args:
        value: the customer's value (None or NaN: missing).
        reference: the feature's entry of :func:`risk_reference` (None: not known).

    Returns:
        True when the value is strictly on the risky side, or when there is nothing to check against
        (no reference, no side, a missing value: missing values have their own sentences).
    """
    if reference is None or not reference.get("risk_side") or value is None or value != value:
        return True
    return (float(value) - float(reference["median"])) * float(reference["risk_side"]) > 0
