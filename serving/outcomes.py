"""What happened after each scoring run: were the scores right, and did the team's actions keep anyone?

``churn outcomes`` looks at every stored ``churn score`` run whose horizon has passed (``as_of + H``
is not after the end of the data) and reads what happened in ``[as_of, as_of + H)``:

- calibration: realised churn per risk band and per decile of the served probability, against the
  mean predicted probability (is "70%" still 70%?);
- discrimination: the realised ROC-AUC and PR-AUC of the probabilities as served (every scored
  customer: the list is judged as it was written), and, with a control group, the same as if no
  action had been taken ("untreated"): on the bands without actions and the control customers of the
  acted-on bands, each weighted by one over its band's holdout share to stand for the whole band,
  since the actions keep some of the customers the scores named;
- effect, where the run held out a control group: the retention (an order in the horizon) of the
  at-risk customers (the playbook's ``act_on_bands``) who were not held out against those who were,
  with the difference's 95% interval (Agresti-Caffo: one success and one failure added to each
  group, so that small groups get honest intervals); the same per recorded action (customers with
  that action recorded against control customers whose plan held it) and per driver of the first
  planned action. Touches: an action recorded through ``POST /actions`` or a CRM contact in the
  horizon;
- drift: the run's population stability index of inputs and scores against the training
  reference (stored by ``churn score``), and "retrain recommended" with the reason when the
  realised PR-AUC falls below the test figure by more than a setting, or a key input drifts.

The figures are stored in the ``run_outcomes`` table (one JSON report per run, newest wins) for the
page's Outcomes tab, and logged to MLflow as metrics of the run that trained the model version
that served them (``outcome_*``, step = the as-of date's day number).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from features.dataset import CRMDataset, open_dataset
from serving.actions import read_actions
from serving.drift import read_drift
from serving.playbook import load_playbook
from serving.tables import RunStamp, append_rows, disconnect, read_rows, read_run, run_history
from training.register import tracking

if TYPE_CHECKING:
    from churn.settings import Settings

RUN_OUTCOMES = "run_outcomes"
OUTCOME_TYPES: dict[str, str] = {
    "scored_at": "timestamp",
    "as_of": "date",
    "model_name": "string",
    "model_version": "string",
    "computed_at": "timestamp",
    "report_json": "string",
}
"""The columns of the ``run_outcomes`` table: one report per run and computation."""
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Comparison:
    """Retention of treated against control customers, with the difference's 95% interval.

    Attributes:
        treated: customers treated (not held out).
        control: customers held out.
        treated_retention: share of the treated who ordered in the horizon.
        control_retention: the same for control.
        uplift: treated minus control retention.
        low: the interval's lower end.
        high: its upper end.
    """

    treated: int
    control: int
    treated_retention: float
    control_retention: float
    uplift: float
    low: float
    high: float


def compare(treated_retained: np.ndarray, control_retained: np.ndarray) -> Comparison | None:
    """Treated against control retention, with the Agresti-Caffo interval of the difference.

    Args:
        treated_retained: per treated customer, whether it ordered in the horizon.
        control_retained: the same per control customer.

    Returns:
        The comparison, or None when a group is empty.
    """
    nt, nc = int(treated_retained.size), int(control_retained.size)
    if nt == 0 or nc == 0:
        return None
    pt, pc = float(treated_retained.mean()), float(control_retained.mean())
    at, ac = (treated_retained.sum() + 1) / (nt + 2), (control_retained.sum() + 1) / (nc + 2)
    half = Z95 * math.sqrt(at * (1 - at) / (nt + 2) + ac * (1 - ac) / (nc + 2))
    centre = at - ac
    return Comparison(nt, nc, pt, pc, pt - pc, max(-1.0, centre - half), min(1.0, centre + half))


def _orders_in(data: CRMDataset, start: date, end: date) -> set[str]:
    orders = data.table("orders")
    window = orders.filter((orders.order_date >= ibis.literal(start)) & (orders.order_date < ibis.literal(end)) & (orders.amount > 0))
    return set(window.select(customer_id=window.customer_id.cast("string")).distinct().to_pandas()["customer_id"])


def _contacted_in(data: CRMDataset, start: date, end: date) -> set[str]:
    if not data.has("contacts"):
        return set()
    contacts = data.table("contacts")
    window = contacts.filter((contacts.contacted_at >= ibis.literal(start)) & (contacts.contacted_at < ibis.literal(end)))
    return set(window.select(customer_id=window.customer_id.cast("string")).distinct().to_pandas()["customer_id"])


def calibration(frame: pd.DataFrame) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Realised churn against the mean served probability, per band and per decile.

    Args:
        frame: the run's rows with ``churn_probability``, ``risk_band`` and ``churned``.

    Returns:
        (per band, per decile) rows: customers, predicted, realised.
    """
    def rows(groups: Any, key: str) -> list[dict[str, Any]]:
        return [
            {key: k, "customers": int(len(g)), "predicted": float(g["churn_probability"].mean()), "realised": float(g["churned"].mean())}
            for k, g in groups
        ]

    bands = rows(((b, frame[frame["risk_band"] == b]) for b in ("high", "medium", "low") if (frame["risk_band"] == b).any()), "risk_band")
    rank = frame["churn_probability"].rank(method="first")
    decile = np.clip(np.ceil(rank.to_numpy(dtype=float) / len(frame) * 10), 1, 10).astype(int)
    deciles = rows(((int(d), frame[decile == d]) for d in range(1, 11) if (decile == d).any()), "decile")
    return bands, deciles


def _planned_keys(text: Any) -> list[str]:
    return [a["key"] for a in json.loads(text) if a.get("key")] if isinstance(text, str) else []


def _first_driver(text: Any) -> str | None:
    planned = json.loads(text) if isinstance(text, str) else []
    return str(planned[0]["driver"]) if planned else None


def effects(frame: pd.DataFrame, actions: pd.DataFrame, at_risk_bands: Sequence[str]) -> dict[str, Any] | None:
    """Treated against control retention of the at-risk customers: overall, per action and per driver.

    Args:
        frame: the run's rows with ``control``, ``risk_band``, ``actions_json``, ``churned`` and ``touched``.
        actions: the actions recorded for the run's customers in its horizon.
        at_risk_bands: the bands that get actions.

    Returns:
        The comparisons (as dicts), or None when the run held out no control group.
    """
    risk = frame[frame["risk_band"].isin(list(at_risk_bands))]
    control = risk["control"].to_numpy(dtype=bool)
    if not control.any():
        return None
    retained = ~risk["churned"].to_numpy(dtype=bool)
    overall = compare(retained[~control], retained[control])
    recorded = actions.groupby("action")["customer_id"].apply(lambda s: set(s.astype(str))).to_dict() if len(actions) else {}
    ids = risk["customer_id"].astype(str).to_numpy()
    planned = risk["actions_json"].map(_planned_keys).to_numpy()
    per_action = {}
    for key, done in sorted(recorded.items()):
        treated = ~control & np.isin(ids, list(done))
        held = control & np.array([key in p for p in planned], dtype=bool)
        found = compare(retained[treated], retained[held])
        if found is not None:
            per_action[key] = vars(found)
    drivers = risk["actions_json"].map(_first_driver).to_numpy()
    per_driver = {}
    for driver in sorted({d for d in drivers if d}):
        mine = drivers == driver
        found = compare(retained[mine & ~control], retained[mine & control])
        if found is not None:
            per_driver[driver] = vars(found)
    touched = risk["touched"].to_numpy(dtype=bool)
    return {
        "overall": vars(overall) if overall else None,
        "touched_treated": float(touched[~control].mean()) if (~control).any() else None,
        "touched_control": float(touched[control].mean()),
        "per_action": per_action,
        "per_driver": per_driver,
    }


def _aucs(y: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None) -> tuple[float | None, float | None]:
    """ROC-AUC and PR-AUC (churn positive, optionally weighted), None without both classes."""
    if not 0 < y.sum() < len(y):
        return None, None
    return float(roc_auc_score(y, p, sample_weight=weight)), float(average_precision_score(y, p, sample_weight=weight))


def run_report(data: CRMDataset, location: str | Path, stamp: RunStamp, horizon_days: int, at_risk_bands: Sequence[str]) -> dict[str, Any]:
    """The outcomes of one scoring run whose horizon has passed.

    Args:
        data: the CRM data (orders and contacts after the run).
        location: the store holding the run and the recorded actions.
        stamp: the run.
        horizon_days: H.
        at_risk_bands: the bands that get actions.

    Returns:
        The report: run, counts, ROC-AUC, PR-AUC, calibration, effects.
    """
    frame = read_run(location, stamp)
    assert frame is not None  # the stamp comes from the store's own history
    end = stamp.as_of + timedelta(days=horizon_days)
    frame["churned"] = ~frame["customer_id"].astype(str).isin(_orders_in(data, stamp.as_of, end))
    recorded = read_actions(location)
    if len(recorded):
        done = pd.to_datetime(recorded["done_at"])
        recorded = recorded[(done >= pd.Timestamp(stamp.as_of)) & (done < pd.Timestamp(end))]
    touched = set(recorded["customer_id"].astype(str)) | _contacted_in(data, stamp.as_of, end)
    frame["touched"] = frame["customer_id"].astype(str).isin(touched)
    frame["control"] = frame["control"].fillna(False).astype(bool) if "control" in frame.columns else False
    y, p = frame["churned"].to_numpy(dtype=int), frame["churn_probability"].to_numpy(dtype=float)
    bands, deciles = calibration(frame)
    # the actions keep some of the at-risk customers the scores named: judge the scores as if no action had been
    # taken too, on the control customers (weighted to stand for their whole band) and the bands without actions
    acted = frame["risk_band"].isin(list(at_risk_bands)).to_numpy(dtype=bool)
    control = frame["control"].to_numpy(dtype=bool)
    held = {b: control[frame["risk_band"].to_numpy() == b].mean() for b in at_risk_bands if (frame["risk_band"] == b).any()}
    weight = np.where(acted & control, [1.0 / held.get(b, 1.0) if held.get(b) else 0.0 for b in frame["risk_band"]], 1.0)
    untreated = control | ~acted
    plain_roc, plain_pr = _aucs(y[untreated], p[untreated], weight[untreated]) if control.any() else (None, None)
    roc, pr = _aucs(y, p)
    return {
        "scored_at": stamp.scored_at.isoformat(),
        "as_of": stamp.as_of.isoformat(),
        "horizon_end": end.isoformat(),
        "model_name": stamp.model_name,
        "model_version": stamp.model_version,
        "customers": int(len(frame)),
        "churn_rate": float(y.mean()),
        "predicted_churn_rate": float(p.mean()),
        "roc_auc": roc,
        "pr_auc": pr,
        "untreated_roc_auc": plain_roc,
        "untreated_pr_auc": plain_pr,
        "bands": bands,
        "deciles": deciles,
        "holdout": float(frame["holdout"].max()) if "holdout" in frame.columns and frame["holdout"].notna().any() else 0.0,
        "effects": effects(frame, recorded, at_risk_bands),
    }


def matured_runs(location: str | Path, data_end: date, horizon_days: int) -> list[RunStamp]:
    """The stored scoring runs whose horizon has passed, oldest first.

    Args:
        location: the store.
        data_end: the day after the newest order.
        horizon_days: H.

    Returns:
        Their stamps.
    """
    history = run_history(location)
    stamps = [
        RunStamp(pd.Timestamp(str(r["scored_at"])).to_pydatetime(), pd.Timestamp(str(r["as_of"])).date(), str(r["model_name"]), str(r["model_version"]))
        for r in history.to_dict("records")
    ]
    return sorted((s for s in stamps if s.as_of + timedelta(days=horizon_days) <= data_end), key=lambda s: s.scored_at)


def store_reports(location: str | Path, reports: Sequence[dict[str, Any]]) -> None:
    """Append the reports to the store's ``run_outcomes`` table (the page reads the newest per run).

    Args:
        location: the store.
        reports: from :func:`run_report`.
    """
    if not reports:
        return
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    frame = pd.DataFrame(
        {
            "scored_at": pd.to_datetime([r["scored_at"] for r in reports]).astype("datetime64[us]"),
            "as_of": [date.fromisoformat(r["as_of"]) for r in reports],
            "model_name": [r["model_name"] for r in reports],
            "model_version": [r["model_version"] for r in reports],
            "computed_at": pd.to_datetime([now] * len(reports)).astype("datetime64[us]"),
            "report_json": [json.dumps(r) for r in reports],
        }
    )
    append_rows(location, RUN_OUTCOMES, frame, OUTCOME_TYPES)


def latest_reports(location: str | Path) -> list[dict[str, Any]]:
    """The newest stored report of every run, oldest run first (for the page).

    Args:
        location: the store.

    Returns:
        The reports (empty when ``churn outcomes`` never ran).
    """
    frame = read_rows(location, RUN_OUTCOMES, OUTCOME_TYPES)
    newest = frame.sort_values("computed_at").drop_duplicates("scored_at", keep="last").sort_values("scored_at")
    return [json.loads(text) for text in newest["report_json"]]


def retrain_advice(report: dict[str, Any], test_pr_auc: float | None, drift: pd.DataFrame, settings: Settings) -> list[str]:
    """Why the model should be retrained, if it should: realised PR-AUC clearly below the test figure, or a key input drifted.

    With a control group the PR-AUC is the untreated one (as if no action had been taken: control
    customers weighted for their band, and the bands without actions): the actions keep some of the
    customers the scores named, which would otherwise count against the scores.

    Args:
        report: from :func:`run_report`.
        test_pr_auc: the served version's PR-AUC on its test period.
        drift: the run's PSI per input (``feature``, ``psi``; the scores as ``__score__``).
        settings: ``retrain_pr_auc_drop``, ``drift_psi_alert`` and ``drift_key_inputs``.

    Returns:
        The reasons (empty: no retrain needed).
    """
    reasons = []
    realised = report.get("untreated_pr_auc") if report.get("untreated_pr_auc") is not None else report.get("pr_auc")
    if realised is not None and test_pr_auc is not None and test_pr_auc - realised > settings.retrain_pr_auc_drop:
        reasons.append(
            f"realised PR-AUC {realised:.3f} is {test_pr_auc - realised:.3f} below the test figure {test_pr_auc:.3f} "
            f"(more than CHURN_RETRAIN_PR_AUC_DROP={settings.retrain_pr_auc_drop:g})"
        )
    keys = {"__score__", *settings.drift_key_inputs}
    alerts = drift[drift["feature"].isin(keys) & (drift["psi"] > settings.drift_psi_alert)] if len(drift) else drift
    for row in alerts.sort_values("psi", ascending=False).itertuples(index=False):
        what = "the scores" if row.feature == "__score__" else f"key input {row.feature}"
        reasons.append(f"{what} drifted: PSI {row.psi:.2f} against the training reference (over CHURN_DRIFT_PSI_ALERT={settings.drift_psi_alert:g})")
    return reasons


METRICS = ("roc_auc", "pr_auc", "untreated_roc_auc", "untreated_pr_auc", "churn_rate", "predicted_churn_rate")


def log_to_mlflow(tracking_uri: str, reports: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Log each report's figures as ``outcome_*`` metrics of the run that trained its model version.

    Args:
        tracking_uri: the MLflow store.
        reports: from :func:`run_report` (with ``retrain`` reasons).

    Returns:
        Model version to its test PR-AUC (None when unknown), for the retrain advice.
    """
    test_figures: dict[str, float | None] = {}
    with tracking(tracking_uri) as client:
        for report in reports:
            version = client.get_model_version(report["model_name"], report["model_version"])
            run_id = str(version.run_id)
            step = (date.fromisoformat(report["as_of"]) - date(1970, 1, 1)).days
            figures = {f"outcome_{k}": report[k] for k in METRICS if report.get(k) is not None}
            overall = (report.get("effects") or {}).get("overall")
            if overall:
                figures |= {"outcome_uplift": overall["uplift"], "outcome_uplift_low": overall["low"], "outcome_uplift_high": overall["high"]}
            for key, value in figures.items():
                client.log_metric(run_id, key, float(value), step=step)
            client.set_model_version_tag(report["model_name"], report["model_version"], f"outcomes_{report['as_of']}", json.dumps({k: round(v, 4) for k, v in figures.items()}))
            test_figures[report["model_version"]] = client.get_run(run_id).data.metrics.get("test_pr_auc")
    return test_figures


def outcomes(settings: Settings) -> list[dict[str, Any]]:
    """Every matured scoring run's outcomes: computed, advised on, stored and logged to MLflow.

    Args:
        settings: the data location, horizon, tracking URI and thresholds.

    Returns:
        The reports, oldest run first (each with its ``retrain`` reasons).
    """
    playbook = load_playbook(settings.playbook)
    data = open_dataset(settings.data, validate=False)
    try:
        stamps = matured_runs(settings.data, data.end_date(), settings.horizon_days)
        reports = [run_report(data, settings.data, s, settings.horizon_days, playbook.act_on_bands) for s in stamps]
    finally:
        disconnect(data.con)
    test_figures = log_to_mlflow(settings.tracking_uri, reports) if reports else {}
    for stamp, report in zip(stamps, reports, strict=True):
        drift = read_drift(settings.data, stamp.scored_at)
        report["drift"] = [{"feature": str(f), "psi": float(v)} for f, v in drift.sort_values("psi", ascending=False).head(20)[["feature", "psi"]].itertuples(index=False)]
        report["test_pr_auc"] = test_figures.get(stamp.model_version)
        report["retrain"] = retrain_advice(report, report["test_pr_auc"], drift, settings)
    store_reports(settings.data, reports)
    return reports
