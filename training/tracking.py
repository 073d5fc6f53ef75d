"""A training run in MLflow: parameters, metrics, the candidates' table, plots, the served model and its registration."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

# MLflow starts its telemetry client when imported: the opt-out must be in place before the import.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow
from mlflow import MlflowClient

from churn.settings import PROJECT_ROOT, default_tracking_uri
from training import evaluate as ev
from training.dataset import LABEL
from training.register import GROUP_RISK_ARTIFACT, Promotion, apply_promotion, decide_promotion, ensure_experiment, log_churn_model, register, tracking

if TYPE_CHECKING:
    from training.backtest import BacktestConfig, BacktestResult
    from training.partial import GroupRiskResult
    from training.train import Fitted

IMPORTANCE_ROWS = 3_000
# a RUNNING run without the owner tags (logged by an older version) counts as abandoned after this long
UNTAGGED_STALE_SECONDS = 24 * 3600
LOGGED_METADATA = (
    "horizon_days", "active_days", "as_of", "feature_set_version", "dataset_name", "dataset_fingerprint", "data_start",
    "train_first", "train_last", "tested_train_last", "valid_first", "valid_last", "test_first", "test_last", "seed",
    "evaluation", "kind", "recipe", "best_baseline",
)


@dataclass(frozen=True)
class Logged:
    """Where a run went and what the registry decided.

    Attributes:
        run_id: the MLflow run.
        experiment: its experiment's name.
        version: the registered version of the served model.
        decision: champion or challenger, and why.
        tracking_uri: the store.
    """

    run_id: str
    experiment: str
    version: str
    decision: Promotion
    tracking_uri: str


def log_training_run(
    fitted: Fitted,
    *,
    profit: ev.ProfitParams,
    trials: int,
    timeout_s: float | None,
    tracking_uri: str | None,
    artifact_root: str | None,
    model_name: str,
) -> Logged:
    """Log a fitted run, register its served model and apply the champion/challenger decision.

    Args:
        fitted: from :func:`training.train.fit_frame`.
        profit: campaign economics (logged).
        trials: Optuna trial budget (logged).
        timeout_s: Optuna time budget (logged).
        tracking_uri: MLflow tracking URI; default: the project's ``mlruns/mlflow.db``.
        artifact_root: artifact folder for a local store; default: ``mlruns/artifacts``.
        model_name: the registered model name.

    Returns:
        The run, the version and the decision.
    """
    tracking_uri = tracking_uri or default_tracking_uri()
    artifact_root = artifact_root or str(PROJECT_ROOT / "mlruns" / "artifacts")
    model, meta = fitted.model, fitted.model.metadata
    test = fitted.split.test
    test_y = test[LABEL].to_numpy(dtype=int)
    experiment = f"churn/{meta.get('dataset_name')}"
    with tracking(tracking_uri) as client:
        experiment_id = ensure_experiment(client, experiment, tracking_uri=tracking_uri, artifact_root=artifact_root)
        fail_abandoned_runs(client, experiment_id)
        run_name = f"{model.kind}-h{meta['horizon_days']}-{meta['as_of']}"
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=owner_tags()) as run:
            mlflow.set_tags({"dataset": str(meta.get("dataset_name")), "model_name": model_name, "evaluation": fitted.split.evaluation, "kind": model.kind})
            mlflow.log_params(run_params(fitted, profit, trials, timeout_s))
            mlflow.log_metrics(run_metrics(fitted))
            _log_artifacts(fitted, profit)
            model_uri = log_churn_model(model, test)
        version = register(client, model_uri, model_name, run_id=run.info.run_id, tags={"dataset": str(meta.get("dataset_name")), "horizon_days": str(meta["horizon_days"])})
        decision = decide_promotion(client, model_name, new_model=model, new_pr_auc=fitted.metrics["pr_auc"], test_frame=test, test_labels=test_y)
        apply_promotion(client, model_name, version, decision)
        for key, value in (("promotion", decision.alias), ("promotion_reason", decision.reason), ("model_version", version)):
            client.set_tag(run.info.run_id, key, value)
    return Logged(run.info.run_id, experiment, version, decision, tracking_uri)


def owner_tags() -> dict[str, str]:
    """Tags naming the process that logs a run, so that a later start can tell an abandoned run from a live one."""
    return {"churn.host": socket.gethostname(), "churn.pid": str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_abandoned_runs(client: MlflowClient, experiment_id: str, *, now: float | None = None) -> list[str]:
    """Mark FAILED the runs a killed ``churn train`` left RUNNING in an experiment.

    A run is abandoned when the process named in its owner tags (:func:`owner_tags`) ran on this
    host and is gone, or, without those tags, when it started more than a day ago. Runs of live
    processes and of other hosts are left alone.

    Args:
        client: the tracking client.
        experiment_id: the experiment.
        now: the current time in seconds (for tests; default: now).

    Returns:
        The ids of the runs marked failed.
    """
    now = time.time() if now is None else now
    failed = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        host, pid = run.data.tags.get("churn.host"), run.data.tags.get("churn.pid")
        if host is not None and pid is not None:
            abandoned = host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))
        else:
            abandoned = now - run.info.start_time / 1000 > UNTAGGED_STALE_SECONDS
        if abandoned:
            client.set_tag(run.info.run_id, "churn.failed_reason", "the process logging this run ended before it finished (killed or crashed)")
            client.set_terminated(run.info.run_id, status="FAILED")
            failed.append(run.info.run_id)
    return failed


def log_group_risk(run_id: str, groups: GroupRiskResult, *, tracking_uri: str) -> None:
    """Add the partial-churn model to a training run: its test figures, periods, comparison and the served model.

    Args:
        run_id: the training run (the served customer model's).
        groups: from :func:`training.partial.fit_group_risk`.
        tracking_uri: the store.
    """
    with tracking(tracking_uri), mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({metric_key(k): v for k, v in groups.metrics().items()})
        mlflow.log_params({"groups_served": groups.chosen} | {f"groups_{k}": v for k, v in groups.periods.items()})
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            groups.comparison.to_csv(folder / "comparison.csv", index=False)
            mlflow.log_artifact(str(folder / "comparison.csv"), artifact_path=GROUP_RISK_ARTIFACT)
            groups.served.save(folder / "model")
            mlflow.log_artifacts(str(folder / "model"), artifact_path=f"{GROUP_RISK_ARTIFACT}/model")


def run_params(fitted: Fitted, profit: ev.ProfitParams, trials: int, timeout_s: float | None) -> dict[str, Any]:
    """The run's parameters: periods of both models, the chosen candidate, LightGBM's tuned values, the economics."""
    meta = fitted.model.metadata
    out: dict[str, Any] = {key: meta.get(key) for key in LOGGED_METADATA}
    out["data_end"] = meta["as_of"]
    out["tested_train_first"] = fitted.tested.metadata["train_first"]
    summary = fitted.split.summary()
    out |= {f"split_{k}": v for k, v in summary.items() if k.endswith(("_rows", "_customers", "_snapshots")) or k == "gap_days"}
    out |= {f"lgbm_{k}": v for k, v in fitted.selection.tuning.get("params", {}).items()}
    out |= {f"profit_{k}": v for k, v in profit.as_dict().items()}
    out |= {"trials_budget": trials, "timeout_s": timeout_s, "num_features": len(fitted.model.feature_names), "calibration": "platt"}
    return out


def run_metrics(fitted: Fitted) -> dict[str, float]:
    """The run's metrics: the model's and the baselines' test figures, margins, tiers, validation figures per candidate."""
    out = {f"test_{k}": v for k, v in fitted.metrics.items()}
    for name, m in fitted.baselines.items():
        out |= {f"baseline_{name}_test_{k}": v for k, v in m.items()}
    for tier, m in fitted.tiers.items():
        out |= {f"tier_{metric_key(tier)}_{k}": v for k, v in m.items()}
    for kind, m in fitted.selection.metrics.items():
        out |= {f"valid_{kind}_{k}": v for k, v in m.items()}
    tuning = fitted.selection.tuning
    out |= {f"trees_{kind}": n for kind, n in tuning.get("trees", {}).items()}
    out |= {k: tuning[k] for k in ("trials_complete", "trials_pruned") if k in tuning}
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(float(v))}


def metric_key(text: str) -> str:
    """``text`` with every character MLflow does not allow in a metric name replaced by ``_``."""
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in str(text))


def candidates_table(fitted: Fitted) -> pd.DataFrame:
    """One row per candidate: its validation figures, its recipe, and whether it was chosen."""
    selection = fitted.selection
    return pd.DataFrame(
        [
            {"candidate": kind, **selection.metrics[kind], "recipe": recipe.describe(), "chosen": kind == selection.chosen.kind}
            for kind, recipe in selection.recipes.items()
        ]
    )


def _log_artifacts(fitted: Fitted, profit: ev.ProfitParams) -> None:
    model = fitted.model
    test = fitted.split.test
    y = test[LABEL].to_numpy(dtype=int)
    sample = test.sample(n=min(IMPORTANCE_ROWS, len(test)), random_state=int(model.metadata.get("seed", 0)))
    importance = model.importance(sample)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_json(folder / "features.json", {"feature_set_version": model.metadata.get("feature_set_version"), "features": model.feature_names, "categorical": model.categorical})
        _write_json(folder / "metrics.json", {"model": fitted.metrics, "baselines": fitted.baselines, "tiers": fitted.tiers})
        _write_json(folder / "split.json", fitted.split.summary())
        _write_json(folder / "tuning.json", fitted.selection.tuning)
        _write_json(folder / "calibration.json", _calibration(fitted, y))
        fitted.comparison.to_csv(folder / "test_comparison.csv", index=False)
        candidates_table(fitted).to_csv(folder / "candidates.csv", index=False)
        importance.rename("mean_abs_contribution").to_csv(folder / "feature_importance.csv", index_label="feature")
        for path in sorted(folder.iterdir()):
            mlflow.log_artifact(str(path))
        plot_dir = folder / "plots"
        plot_dir.mkdir()
        for name, fig in _plots(y, fitted.test_proba, ev.customer_values(test, profit), profit, importance).items():
            fig.savefig(plot_dir / name, dpi=110)
            plt.close(fig)
        mlflow.log_artifacts(str(plot_dir), artifact_path="plots")


def _calibration(fitted: Fitted, y: np.ndarray) -> dict[str, Any]:
    served, tested = fitted.model.calibrator, fitted.tested.calibrator
    return {
        "method": "platt scaling of the margin: the tested model's fitted on the validation period, the served model's on the test period (the tested model's forward margins)",
        "served": {"slope": served.slope, "intercept": served.intercept},
        "tested": {"slope": tested.slope, "intercept": tested.intercept},
        "tested_on_test_period": ev.reliability_curve(y, fitted.test_proba["model"]).to_dict(orient="records"),
    }


def _plots(y: np.ndarray, probas: Mapping[str, np.ndarray], values: np.ndarray, profit: ev.ProfitParams, importance: pd.Series) -> dict[str, Any]:
    return {
        "roc.png": ev.plot_roc(y, probas),
        "precision_recall.png": ev.plot_precision_recall(y, probas),
        "calibration.png": ev.plot_calibration(y, probas),
        "lift_gain.png": ev.plot_gain(y, probas),
        "profit_curve.png": ev.plot_profit(y, probas, values, profit),
        "feature_importance.png": ev.plot_importance(importance),
    }


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, date | datetime | pd.Timestamp):
        return value.isoformat()
    return str(value)


def log_backtest(result: BacktestResult, config: BacktestConfig, *, dataset_name: str, tracking_uri: str | None, artifact_root: str | None) -> str:
    """Log a backtest: a parent run with the tables and the margins plot, a child run per as-of date.

    Args:
        result: the backtest's figures.
        config: what it ran.
        dataset_name: names the experiment ``churn-backtest/<dataset_name>``.
        tracking_uri: MLflow tracking URI; default: the project's store.
        artifact_root: artifact folder for a local store.

    Returns:
        The parent run's id.
    """
    tracking_uri = tracking_uri or default_tracking_uri()
    artifact_root = artifact_root or str(PROJECT_ROOT / "mlruns" / "artifacts")
    with tracking(tracking_uri) as client:
        experiment_id = ensure_experiment(client, f"churn-backtest/{dataset_name}", tracking_uri=tracking_uri, artifact_root=artifact_root)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"backtest-{config.start}-{config.end}") as parent:
            mlflow.log_params({k: str(v) for k, v in asdict(config).items()} | {"seconds": round(result.seconds, 1)})
            for _, row in result.summary.iterrows():
                prefix = f"{row['subset']}_{row['metric']}"
                mlflow.log_metrics({f"{prefix}_mean_margin": row["mean_margin"], f"{prefix}_margin_low": row["low"], f"{prefix}_margin_high": row["high"], f"{prefix}_wins": row["wins"]})
            for _, row in result.lead_times[result.lead_times["list"].str.startswith("top")].iterrows():
                figures = {f"lead_{row['method']}_median_days": row["median_lead_days"], f"lead_{row['method']}_precision": row["precision"]}
                mlflow.log_metrics({k: float(v) for k, v in figures.items() if pd.notna(v)})
            _log_backtest_tables(result)
            for as_of, rows in result.table.groupby("as_of", sort=True):
                with mlflow.start_run(experiment_id=experiment_id, run_name=f"as-of-{as_of}", nested=True):
                    run = {str(k): v for k, v in result.runs[result.runs["as_of"] == as_of].iloc[0].items()}
                    mlflow.log_params({k: str(v) for k, v in run.items() if not k.startswith("valid_")})
                    mlflow.log_metrics(_date_metrics(rows, run))
    return parent.info.run_id


def _log_backtest_tables(result: BacktestResult) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tables = {"backtest.csv": result.table, "summary.csv": result.summary, "ablation.csv": result.ablation, "runs.csv": result.runs, "lead_times.csv": result.lead_times}
        for name, frame in tables.items():
            if not frame.empty:
                frame.to_csv(folder / name, index=False)
                mlflow.log_artifact(str(folder / name))
        fig = ev.plot_margins(result.table)
        fig.savefig(folder / "margins.png", dpi=110)
        plt.close(fig)
        mlflow.log_artifact(str(folder / "margins.png"), artifact_path="plots")


def _date_metrics(rows: pd.DataFrame, run: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {k: float(v) for k, v in run.items() if k.startswith("valid_") and pd.notna(v)}
    for _, row in rows.iterrows():
        for key in ("roc_auc", "pr_auc", "brier", "lift_top10", "margin_roc_auc", "margin_pr_auc"):
            if key in row and pd.notna(row[key]):
                out[f"{row['subset']}_{row['method']}_{key}"] = float(row[key])
    return out
