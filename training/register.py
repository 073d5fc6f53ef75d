"""The MLflow side of a model: log it as a pyfunc, register it, decide champion or challenger, load it.

Serving loads ``models:/<name>@champion`` through :func:`load_model`, never a path or a run id.
What is registered already won its validation period against the baselines (or is the baseline
that won). It becomes ``champion`` when there is none, or when it beats the current champion's
PR-AUC on a test period both were measured on fairly (see :func:`decide_promotion`); otherwise it
becomes ``challenger``, and the reason is recorded on the version.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, Schema
from sklearn.metrics import average_precision_score

from training.model import ChurnModel

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
GROUP_RISK_ARTIFACT = "group_risk"
"""The run's folder of the partial-churn model (``model/``) and its test comparison."""
REASON_TAG = "promotion_reason"


class ChurnPyfunc(PythonModel):
    """MLflow pyfunc wrapper: ``predict`` returns calibrated churn probabilities.

    After ``mlflow.pyfunc.load_model(uri)``, ``loaded.unwrap_python_model().model`` is the
    :class:`~training.model.ChurnModel`.
    """

    def __init__(self) -> None:
        self.model: ChurnModel | None = None

    def load_context(self, context: PythonModelContext) -> None:
        """Read the churn model from the logged artifact folder.

        Args:
            context: MLflow's context with the ``churn_model`` artifact path.
        """
        self.model = ChurnModel.load(Path(context.artifacts["churn_model"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        """Calibrated churn probability per row.

        Args:
            context: unused (MLflow's context).
            model_input: rows with the model's feature columns.
            params: unused.

        Returns:
            Probabilities, shape [n].
        """
        if self.model is None:
            raise RuntimeError("the churn model was not loaded")
        return self.model.predict_proba(model_input)


@dataclass
class LoadedModel:
    """A registered churn model, loaded.

    Attributes:
        model: the churn model.
        name: registered model name.
        version: registered version.
        alias: the alias it was loaded by.
        run_id: the MLflow run that trained it.
        metrics: the run's metrics (``test_pr_auc``, baselines, ...).
    """

    model: ChurnModel
    name: str
    version: str
    alias: str
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Promotion:
    """The registry decision for a new version.

    Attributes:
        promoted: whether the new version became champion.
        alias: ``champion`` or ``challenger``.
        reason: why, in one sentence.
        champion_version: the previous champion's version, if any.
        champion_pr_auc: the previous champion's PR-AUC used in the comparison, if any.
    """

    promoted: bool
    alias: str
    reason: str
    champion_version: str | None = None
    champion_pr_auc: float | None = None


@contextmanager
def tracking(tracking_uri: str) -> Iterator[MlflowClient]:
    """Point MLflow's fluent API at ``tracking_uri`` for the block (no download progress bars), then restore.

    Args:
        tracking_uri: an MLflow tracking URI (``sqlite:///...``, ``http://...``).

    Yields:
        A client on that store (also used as the model registry).
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    progress_bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    had_uri = mlflow.tracking._tracking_service.utils.is_tracking_uri_set()
    previous = mlflow.get_tracking_uri() if had_uri else None
    previous_registry = mlflow.get_registry_uri() if had_uri else None
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    finally:
        # None resets MLflow to its own default, which is what was in force before the block
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]
        mlflow.set_registry_uri(previous_registry)  # type: ignore[arg-type]
        if progress_bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = progress_bar


def is_local_store(tracking_uri: str) -> bool:
    """Whether the tracking URI is a local store (SQLite or files) whose artifacts we place ourselves.

    Args:
        tracking_uri: an MLflow tracking URI.

    Returns:
        True for ``sqlite:``, ``file:`` and plain paths.
    """
    return tracking_uri.startswith(("sqlite:", "file:")) or "://" not in tracking_uri


def ensure_experiment(client: MlflowClient, name: str, *, tracking_uri: str, artifact_root: str | Path) -> str:
    """The id of experiment ``name``, created (with artifacts under ``artifact_root`` for a local store) when missing.

    Args:
        client: MLflow client.
        name: experiment name, e.g. ``churn/crm``.
        tracking_uri: the store's URI (decides whether to set the artifact location).
        artifact_root: the folder for artifacts of a local store.

    Returns:
        The experiment id.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    location = None
    if is_local_store(tracking_uri):
        folder = Path(artifact_root).expanduser().resolve() / _slug(name)
        location = folder.as_uri()
    return client.create_experiment(name, artifact_location=location)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name).strip("-") or "experiment"


def pyfunc_requirements() -> list[str]:
    """The pip requirements recorded with the model (the installed versions)."""
    return [f"{pkg}=={metadata.version(pkg)}" for pkg in ("lightgbm", "pandas", "numpy", "scipy", "scikit-learn", "mlflow")]


def signature_example(model: ChurnModel, frame: pd.DataFrame, rows: int = 5) -> pd.DataFrame:
    """A small input example in the form callers send: categorical features as text, others as floats.

    Args:
        model: the churn model.
        frame: rows to take the example from.
        rows: how many rows.

    Returns:
        A frame with exactly the model's feature columns.
    """
    head = frame.head(rows)
    columns: dict[str, pd.Series] = {}
    for name in model.feature_names:
        if name in model.categorical:
            text = head[name].astype("string")
            columns[name] = text.astype(object).where(text.notna(), None)
        else:
            columns[name] = pd.to_numeric(head[name], errors="coerce").astype("float64")
    return pd.DataFrame(columns).reset_index(drop=True)


def log_churn_model(model: ChurnModel, example_frame: pd.DataFrame) -> str:
    """Log ``model`` to the active run as a pyfunc with signature and input example.

    Args:
        model: the trained churn model.
        example_frame: rows to take the input example from (e.g. the test period).

    Returns:
        The logged model's URI.
    """
    example = signature_example(model, example_frame)
    inputs = Schema(
        [
            ColSpec(DataType.string if name in model.categorical else DataType.double, name, required=False)
            for name in model.feature_names
        ]
    )
    signature = ModelSignature(inputs=inputs, outputs=infer_signature(example, model.predict_proba(example)).outputs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save(Path(tmp) / "churn_model")
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(Path(__file__).with_name("mlflow_model.py")),
            artifacts={"churn_model": str(folder)},
            signature=signature,
            input_example=example,
            pip_requirements=pyfunc_requirements(),
        )
    return info.model_uri


def register(client: MlflowClient, model_uri: str, name: str, *, run_id: str, tags: dict[str, str] | None = None) -> str:
    """Register the logged model as a new version of ``name``.

    Args:
        client: MLflow client.
        model_uri: the logged model's URI.
        name: registered model name.
        run_id: the run that produced it.
        tags: tags for the version.

    Returns:
        The new version number (as text).
    """
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Churn risk of active business customers (calibrated probability).")
    version = client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags or {})
    return str(version.version)


def current_version(client: MlflowClient, name: str, alias: str = CHAMPION) -> ModelVersion | None:
    """The version of ``name`` that holds ``alias``, or ``None``.

    Args:
        client: MLflow client.
        name: registered model name.
        alias: the alias.

    Returns:
        The model version, or ``None`` when the model or the alias does not exist.
    """
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _load_version(client: MlflowClient, name: str, version: str) -> ChurnModel:
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    wrapper = loaded.unwrap_python_model()
    if not isinstance(wrapper, ChurnPyfunc) or wrapper.model is None:
        raise LookupError(f"model {name} version {version} is not a churn model")
    return wrapper.model


def decide_promotion(
    client: MlflowClient,
    name: str,
    *,
    new_model: ChurnModel,
    new_pr_auc: float,
    test_frame: pd.DataFrame,
    test_labels: np.ndarray,
) -> Promotion:
    """Whether a new model should replace the current champion of ``name``.

    The new model won its own validation period against every baseline (or is the baseline that
    won), so it may be served. Against a champion, in this order:

    1. same horizon and same test period: the two recorded test PR-AUCs (both measured forward) decide;
    2. a champion whose training labels end before the new test period begins and that can score
       its rows is re-scored on it, and the PR-AUCs decide;
    3. otherwise (another horizon, other features, or a champion that learned from the new test
       period) no fair comparison exists and the newer model, trained on more recent data, is promoted.

    Args:
        client: MLflow client.
        name: registered model name.
        new_model: the new model (its metadata holds the horizon and the test period).
        new_pr_auc: the new model's PR-AUC on ``test_frame``.
        test_frame: the new test period's rows.
        test_labels: their labels.

    Returns:
        The decision and its reason.
    """
    won = _validation_note(new_model.metadata)
    champion = current_version(client, name, CHAMPION)
    if champion is None:
        return Promotion(True, CHAMPION, f"no champion yet: the first {name} model becomes champion ({won})")
    version = str(champion.version)
    try:
        old = _load_version(client, name, version)
    except Exception as err:  # noqa: BLE001 - any unreadable champion is replaced, saying why
        return Promotion(True, CHAMPION, f"the champion (version {version}) cannot be loaded ({err}); the new model replaces it ({won})", version)
    old_pr_auc, how = _champion_figure(client, champion, old, new_model.metadata, test_frame, test_labels)
    if old_pr_auc is None:
        return Promotion(True, CHAMPION, f"the champion (version {version}) cannot be compared fairly ({how}); the newer model is promoted ({won})", version)
    verdict = f"{how}: PR-AUC {new_pr_auc:.4f} vs {old_pr_auc:.4f}"
    if new_pr_auc > old_pr_auc:
        return Promotion(True, CHAMPION, f"beats the champion (version {version}) {verdict} ({won})", version, old_pr_auc)
    return Promotion(False, CHALLENGER, f"does not beat the champion (version {version}) {verdict}; kept as challenger", version, old_pr_auc)


def _validation_note(meta: dict[str, Any]) -> str:
    kind, baseline = meta.get("kind", "lightgbm"), meta.get("best_baseline")
    if not baseline:
        return f"{kind} chosen on the validation period"
    if kind == baseline:
        return f"the baseline {kind} won the validation period and is served"
    return (
        f"{kind} chosen on the validation period, ahead of the best baseline {baseline}: "
        f"score {meta.get('valid_score', float('nan')):.4f} vs {meta.get('best_baseline_valid_score', float('nan')):.4f}"
    )


def _champion_figure(
    client: MlflowClient, champion: ModelVersion, old: ChurnModel, new_meta: dict[str, Any], test_frame: pd.DataFrame, test_labels: np.ndarray
) -> tuple[float | None, str]:
    """The champion's PR-AUC to compare with, and how it was obtained (or why there is none)."""
    old_meta = old.metadata
    period = f"{new_meta.get('test_first')} to {new_meta.get('test_last')}"
    if old_meta.get("horizon_days") != new_meta.get("horizon_days"):
        return None, f"it predicts a {old_meta.get('horizon_days')}-day horizon, the new model {new_meta.get('horizon_days')} days"
    if (old_meta.get("test_first"), old_meta.get("test_last")) == (new_meta.get("test_first"), new_meta.get("test_last")):
        recorded = old_meta.get("test_pr_auc")
        if recorded is None and champion.run_id:
            recorded = client.get_run(champion.run_id).data.metrics.get("test_pr_auc")
        if recorded is not None:
            return float(recorded), f"by the recorded test PR-AUC on the same test period ({period})"
    if str(old_meta.get("labels_known_until", "")) > str(new_meta.get("test_first", "")):
        return None, f"it learned from outcomes up to {old_meta.get('labels_known_until')}, inside the new test period ({period})"
    try:
        rescored = float(average_precision_score(np.asarray(test_labels, dtype=int), old.predict_proba(test_frame)))
    except ValueError as err:
        missing = [c for c in old.feature_names if c not in test_frame.columns]
        return None, f"it needs features the new data lack ({', '.join(missing[:5])})" if missing else f"it cannot score the new rows ({err})"
    return rescored, f"on the same test period ({period}, champion re-scored)"


def apply_promotion(client: MlflowClient, name: str, version: str, decision: Promotion) -> None:
    """Set the alias the decision names on ``version`` and record the reason as a version tag.

    Args:
        client: MLflow client.
        name: registered model name.
        version: the new version.
        decision: from :func:`decide_promotion`.
    """
    client.set_registered_model_alias(name, decision.alias, version)
    client.set_model_version_tag(name, version, REASON_TAG, decision.reason)
    client.set_model_version_tag(name, version, "role", decision.alias)


def load_group_model(tracking_uri: str, run_id: str) -> ChurnModel | None:
    """The partial-churn model a training run logged beside its customer model, if it logged one.

    Args:
        tracking_uri: the MLflow tracking URI.
        run_id: the training run (:attr:`LoadedModel.run_id`).

    Returns:
        The group model, or None when the run has none (data without order lines, or an older run).
    """
    if not run_id:
        return None
    with tracking(tracking_uri) as client:
        if not any(f.path == GROUP_RISK_ARTIFACT for f in client.list_artifacts(run_id)):
            return None
        with tempfile.TemporaryDirectory() as tmp:
            folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{GROUP_RISK_ARTIFACT}/model", dst_path=tmp)
            return ChurnModel.load(Path(folder))


def load_model(tracking_uri: str, name: str, alias: str = CHAMPION) -> LoadedModel:
    """Load the version of registered model ``name`` that holds ``alias``.

    Args:
        tracking_uri: the MLflow tracking URI (also the registry).
        name: registered model name.
        alias: ``champion`` (what serving uses) or ``challenger``.

    Returns:
        The churn model with its version, run and metrics.

    Raises:
        LookupError: no model ``name`` holds ``alias`` in that store.
    """
    with tracking(tracking_uri) as client:
        version = current_version(client, name, alias)
        if version is None:
            raise LookupError(
                f"no {alias} model: run `churn train` (no registered model {name!r} has the alias {alias!r} in {tracking_uri})"
            )
        model = _load_version(client, name, str(version.version))
        metrics = dict(client.get_run(version.run_id).data.metrics) if version.run_id else {}
    return LoadedModel(model=model, name=name, version=str(version.version), alias=alias, run_id=version.run_id or "", metrics=metrics)
