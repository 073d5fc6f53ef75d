"""The batch risk list (``churn score``): every active customer scored, kept in the store with its history.

Each run appends its rows to a ``risk_scores`` table in the dataset's own store (a DuckDB table, a
PostgreSQL table, or ``risk_scores.parquet`` in a folder dataset), stamped with the run's time, the
as-of date and the model name and version; earlier runs are never overwritten. The service's
``/risk_list`` reads the newest run. Exact reasons (the costly part) are computed for the top of
the list (the at-risk customers with the largest value at risk), where the retention team reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from features.dataset import DataError, data_end_date, open_dataset
from features.snapshot import build_snapshot
from serving.drift import SCORE, drift_frame, write_drift
from serving.groups import GROUP_RISK_SCORES, GROUP_RISK_TYPES, export_path, score_groups, stamped
from serving.playbook import PlannedAction, load_playbook, registry_groups
from serving.schemas import CustomerRisk
from serving.scoring import ScoredSnapshot, Scorer, actions_json, reasons_json, with_capacity_bands
from serving.tables import RISK_SCORES, RunStamp, ScoringError, append_rows, disconnect
from training.register import load_group_model, load_model

if TYPE_CHECKING:
    from churn.settings import Settings

EXPLAIN_TOP = 1000
"""At-risk customers at the top of a batch run that get exact reasons (the rest get their class's actions)."""

RISK_SCORE_TYPES: dict[str, str] = {
    "scored_at": "timestamp",
    "as_of": "date",
    "model_name": "string",
    "model_version": "string",
    "rank": "int64",
    "customer_id": "string",
    "churn_probability": "float64",
    "risk_band": "string",
    "tier": "string",
    "pyramid": "string",
    "customer_class": "string",
    "revenue_12m": "float64",
    "value_at_risk": "float64",
    "region": "string",
    "segment": "string",
    "account_manager": "string",
    "explained": "boolean",
    "top_reason": "string",
    "first_action": "string",
    "first_action_owner": "string",
    "first_action_due": "date",
    "reasons_json": "string",
    "actions_json": "string",
    "stage": "string",
    "value_12m": "float64",
    "let_go": "boolean",
    "control": "boolean",
    "holdout": "float64",
}
"""The columns of the ``risk_scores`` table and their types (columns added later come last: older tables gain them)."""

EXPORT_COLUMNS = (
    "customer_id",
    "churn_probability",
    "risk_band",
    "tier",
    "pyramid",
    "revenue_12m",
    "value_12m",
    "value_at_risk",
    "stage",
    "let_go",
    "control",
    "top_reason",
    "first_action",
    "first_action_owner",
    "first_action_due",
    "reasons",
    "customer_class",
    "region",
    "segment",
    "account_manager",
    "rank",
    "as_of",
    "model_name",
    "model_version",
)
"""The columns of the CSV/Parquet export, in order."""

Progress = Callable[[str], None]


def score_all(
    settings: Settings,
    as_of: date | None = None,
    out: str | Path | None = None,
    *,
    explain_top: int | Literal["all"] = EXPLAIN_TOP,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Score every active customer, append the run to ``risk_scores`` and optionally export it.

    Args:
        settings: data location, tracking URI, model name, playbook and thresholds.
        as_of: score as of this date; default the day after the newest order.
        out: a ``.csv`` or ``.parquet`` file for the ranked list (None: the store only).
        explain_top: how many at-risk customers (largest value at risk first) get exact reasons
            and driver-specific actions; ``"all"`` explains every customer (slow for large data).
        progress: called with one-line status messages.

    Returns:
        The ranked list (the export columns), highest value at risk first.

    Raises:
        ScoringError: no champion model, or no active customer at ``as_of``.
        features.dataset.DataError: the data cannot be read.
    """

    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    if out is not None and Path(out).suffix.lower() not in (".csv", ".parquet"):
        raise ScoringError(f"--out {out}: use a .csv or .parquet file name")
    playbook = load_playbook(settings.playbook, features=registry_groups())
    try:
        loaded = load_model(settings.tracking_uri, settings.model_name)
    except LookupError as err:
        raise ScoringError(f"{err}; or `churn demo` for a sample model") from None
    scorer = Scorer(loaded, playbook, risk_high=settings.risk_high, risk_medium=settings.risk_medium, stage_rule=settings.stage_rule())
    say(f"model {loaded.name} version {loaded.version} ({loaded.alias})")

    if as_of is not None and as_of > (end := data_end_date(settings.data, dayfirst=settings.dayfirst, encoding=settings.encoding)):
        raise DataError(f"as-of date {as_of} is after the end of the data ({end}): nothing is known about it yet")
    group_model = load_group_model(settings.tracking_uri, loaded.run_id)
    data = open_dataset(settings.data, validate=False, cut_at=as_of, dayfirst=settings.dayfirst, encoding=settings.encoding, engine=settings.engine)
    try:
        day = as_of or data.end_date()
        say(f"building the snapshot as of {day}")
        snapshot = build_snapshot(data, day, settings.active_days)
        reference_day = _reference_day(loaded.model.metadata, day, settings.horizon_days)
        reference = build_snapshot(data, reference_day, settings.active_days) if reference_day else None
        groups = score_groups(group_model, data, day, settings.active_days) if group_model is not None and data.has("order_lines") else None
    finally:
        disconnect(data.con)
    if snapshot.empty:
        raise ScoringError(f"no active customer as of {day} (no order in the {settings.active_days} days before it)")
    say(f"scoring {len(snapshot):,} customers")
    if settings.capacity_per_manager_week is not None:
        scorer = with_capacity_bands(scorer, snapshot, per_manager_week=settings.capacity_per_manager_week, horizon_days=settings.horizon_days)
        say(f"risk bands from the team's capacity: high from {scorer.risk_high:.1%}, medium from {scorer.risk_medium:.1%}")
    scored = ScoredSnapshot.build(scorer, snapshot, day)
    frame = risk_scores_frame(scorer, scored, explain_top=explain_top, scored_at=_utc_now())
    frame = mark_control(frame, settings.holdout, seed=settings.seed)
    if settings.holdout:
        say(f"{int(frame['control'].sum()):,} customers held out as control ({settings.holdout:.0%} of each band): no action this cycle")
    write_risk_scores(settings.data, frame)
    say(f"{len(frame):,} rows appended to {RISK_SCORES} in {settings.data}")
    if reference is not None and reference_day is not None and not reference.empty:
        _write_drift(settings.data, scorer, reference, reference_day, snapshot, frame, say)
    export = export_frame(frame)
    if out is not None:
        path = write_export(export, out)
        say(f"risk list written to {path}")
    if groups is not None:
        _write_groups(settings.data, groups, frame, out, say)
    say(f"done in {time.perf_counter() - started:.1f} s")
    return export


def _reference_day(metadata: dict[str, Any], day: date, horizon_days: int) -> date | None:
    """The training reference's date for drift: the latest snapshot the model learned from (``train_last``) when it is
    before ``day``; for a model that learned past the run's date, the date a horizon before it, inside its training period."""
    first, last = metadata.get("train_first"), metadata.get("train_last")
    if not last:
        return None
    reference = min(date.fromisoformat(str(last)[:10]), day - timedelta(days=horizon_days))
    if first and reference < date.fromisoformat(str(first)[:10]):
        return None
    return reference


def _write_drift(location: str, scorer: Scorer, reference: pd.DataFrame, reference_day: date, snapshot: pd.DataFrame, frame: pd.DataFrame, say: Progress) -> None:
    """Store the run's PSI of inputs and scores against the training reference."""
    first = frame.iloc[0]
    stamp = RunStamp(pd.Timestamp(first["scored_at"]).to_pydatetime(), first["as_of"], str(first["model_name"]), str(first["model_version"]))
    drift = drift_frame(scorer, reference, snapshot)
    write_drift(location, stamp, reference_day, drift)
    top = drift[drift["feature"] != SCORE].iloc[0] if len(drift) > 1 else None
    score_psi = float(drift.loc[drift["feature"] == SCORE, "psi"].iloc[0])
    say(f"drift against the training reference ({reference_day}): scores PSI {score_psi:.3f}" + (f", largest input {top['feature']} {top['psi']:.3f}" if top is not None else ""))


def _write_groups(location: str, groups: pd.DataFrame, frame: pd.DataFrame, out: str | Path | None, say: Progress) -> None:
    """Append the product groups at risk with the customer run's stamp, and export them beside ``out``."""
    first = frame.iloc[0]
    rows = stamped(groups, scored_at=first["scored_at"], as_of=first["as_of"], model_name=first["model_name"], model_version=first["model_version"])
    append_rows(location, GROUP_RISK_SCORES, _typed(rows, GROUP_RISK_TYPES), GROUP_RISK_TYPES)
    say(f"{len(rows):,} product groups at risk appended to {GROUP_RISK_SCORES}")
    if out is not None:
        say(f"product groups at risk written to {write_export(groups, export_path(out))}")


def risk_scores_frame(
    scorer: Scorer, scored: ScoredSnapshot, *, explain_top: int | Literal["all"] = EXPLAIN_TOP, scored_at: datetime | None = None
) -> pd.DataFrame:
    """The rows of one batch run, ranked by value at risk.

    Args:
        scorer: the model in use.
        scored: the scored snapshot.
        explain_top: at-risk customers (largest value at risk first) to explain, or "all".
        scored_at: the run's time stamp (default now, UTC).

    Returns:
        One row per customer with the :data:`RISK_SCORE_TYPES` columns.
    """
    table = scored.table
    order = table.ranked("value_at_risk")
    summary = table.frame.iloc[order].reset_index(drop=True)
    positions = order.tolist()
    if explain_top == "all":
        explain = [True] * len(positions)
    else:
        at_risk = summary["risk_band"].isin(list(scorer.playbook.act_on_bands)).to_numpy()
        explain = (at_risk & (np.cumsum(at_risk) <= int(explain_top))).tolist()
    explained_at = [p for p, e in zip(positions, explain, strict=True) if e]
    answers: dict[int, CustomerRisk] = {}
    chunk = 2000
    for start in range(0, len(explained_at), chunk):
        part = explained_at[start : start + chunk]
        answers.update(zip(part, scored.answers(scorer, part, [True] * len(part)), strict=True))
    by_class: dict[tuple[Any, Any, Any, Any], tuple[list[PlannedAction], str]] = {}
    top_reason: list[str | None] = []
    reasons_text: list[str | None] = []
    first: list[PlannedAction | None] = []
    actions_text: list[str] = []
    for pos, row in zip(positions, summary[["tier", "pyramid", "risk_band", "stage"]].itertuples(index=False), strict=True):
        answer = answers.get(pos)
        if answer is not None:
            actions = answer.actions
            top_reason.append(answer.reasons[0].sentence if answer.reasons else None)
            reasons_text.append(reasons_json(answer.reasons))
            actions_text.append(actions_json(actions))
        else:
            key = (row.tier, row.pyramid, row.risk_band, row.stage)
            if key not in by_class:
                planned = scorer.actions({"tier": row.tier, "pyramid": row.pyramid, "risk_band": row.risk_band, "stage": row.stage}, [], scored.as_of)
                by_class[key] = (planned, actions_json(planned))
            actions, text = by_class[key]
            top_reason.append(None)
            reasons_text.append(None)
            actions_text.append(text)
        first.append(actions[0] if actions else None)
    frame = summary.copy()
    frame.insert(0, "rank", np.arange(1, len(frame) + 1, dtype=np.int64))
    frame["explained"] = explain
    frame["top_reason"] = top_reason
    frame["first_action"] = [a.action if a else None for a in first]
    frame["first_action_owner"] = [a.owner if a else None for a in first]
    frame["first_action_due"] = [a.due_by if a else None for a in first]
    frame["reasons_json"] = reasons_text
    frame["actions_json"] = actions_text
    frame["scored_at"] = pd.Timestamp(scored_at or _utc_now()).tz_localize(None).floor("us")
    frame["as_of"] = scored.as_of
    frame["model_name"] = scorer.loaded.name
    frame["model_version"] = str(scorer.loaded.version)
    return _typed(frame)


CONTROL_NOTE = "control: no action this cycle"
"""What the risk list says instead of a control customer's first action."""


def mark_control(frame: pd.DataFrame, holdout: float, *, seed: int) -> pd.DataFrame:
    """Mark a random share of each risk band as control (no action this cycle), reproducibly.

    The draw is seeded by ``seed`` and the run's as-of date, so scoring the same date again holds
    out the same customers. Control rows keep their planned actions in ``actions_json`` (what they
    would have been given: ``churn outcomes`` compares like with like), but their ``first_action``
    says :data:`CONTROL_NOTE`.

    Args:
        frame: rows from :func:`risk_scores_frame`.
        holdout: the share of each band, 0 to 0.5.
        seed: the random seed.

    Returns:
        A copy with ``control`` and ``holdout`` set.
    """
    out = frame.copy()
    control = np.zeros(len(out), dtype=bool)
    if holdout > 0 and len(out):
        day = pd.Timestamp(out["as_of"].iloc[0]).toordinal()
        rng = np.random.default_rng([seed, day])
        ids = out["customer_id"].astype(str).to_numpy()
        for band in ("high", "medium", "low"):
            rows = np.flatnonzero(out["risk_band"].to_numpy() == band)
            rows = rows[np.argsort(ids[rows], kind="stable")]
            control[rng.permutation(rows)[: int(round(holdout * rows.size))]] = True
    out["control"] = control
    out["holdout"] = float(holdout)
    for column in ("first_action", "first_action_owner", "first_action_due"):
        out[column] = out[column].where(~control, CONTROL_NOTE if column == "first_action" else None)
    return out


def _typed(frame: pd.DataFrame, types: dict[str, str] = RISK_SCORE_TYPES) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for col, kind in types.items():
        values = frame[col] if col in frame.columns else pd.Series([None] * len(frame), index=frame.index)
        if kind == "timestamp":
            out[col] = pd.to_datetime(values).astype("datetime64[us]")
        elif kind == "date":
            out[col] = pd.to_datetime(values).astype("datetime64[us]").dt.date.where(values.notna(), None)
        elif kind == "float64":
            out[col] = pd.to_numeric(values, errors="coerce").astype("float64")
        elif kind == "int64":
            out[col] = pd.to_numeric(values).astype("int64")
        elif kind == "boolean":
            out[col] = values.fillna(False).astype(bool)
        else:
            out[col] = values.astype(object).where(values.notna(), None)
    return out


def export_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The export columns of a batch run (reasons joined into one readable column).

    Args:
        frame: rows from :func:`risk_scores_frame`.

    Returns:
        The :data:`EXPORT_COLUMNS`.
    """

    out = frame.copy()
    out["reasons"] = [
        "; ".join(r["sentence"] for r in json.loads(text)) if isinstance(text, str) else None for text in out["reasons_json"]
    ]
    return out[list(EXPORT_COLUMNS)].reset_index(drop=True)


def write_export(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write the ranked list to CSV or Parquet, by the file's extension.

    Args:
        frame: the export frame.
        out: a ``.csv`` or ``.parquet`` path.

    Returns:
        The path written.

    Raises:
        ScoringError: another extension.
    """
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ScoringError(f"--out {path}: use a .csv or .parquet file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(path, index=False, float_format="%.6g")
    else:
        frame.to_parquet(path, index=False)
    return path


# ---------------------------------------------------------------------------------------------
# the risk_scores store


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def write_risk_scores(location: str | Path, frame: pd.DataFrame) -> None:
    """Append one run's rows to the store's ``risk_scores`` (created on first use).

    Args:
        location: the dataset location (folder, .duckdb file or postgresql:// URL).
        frame: rows from :func:`risk_scores_frame`.
    """
    append_rows(location, RISK_SCORES, _typed(frame), RISK_SCORE_TYPES)
