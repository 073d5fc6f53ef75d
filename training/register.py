"""The MLflow side of a model: log it as a pyfunc, register it, decide champion or challenger, load it.

Serving loads ``models:/<name>@champion`` through :func:`load_model`, never a path or a run id.
A new version becomes ``champion`` only when it beats the current champion's PR-AUC on the new
test period (the champion is re-scored on the same rows when it can read them), or when there is
no champion; otherwise it becomes ``challenger`` and the reason is recorded on the version.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# MLflow starts its telemetry client when imported: the opt-out must be in place before the import.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402
import mlflow.pyfunc  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities.model_registry import ModelVersion  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.models import ModelSignature, infer_signature  # noqa: E402
from mlflow.types import ColSpec, DataType, Schema  # noqa: E402

from training.model import ChurnModel  # noqa: E402

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
REASON_TAG = "promotion_reason"


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper: ``predict`` returns calibrated churn probabilities.

    After ``mlflow.pyfunc.load_model(uri)``, ``loaded.unwrap_python_model().model`` is the
    :class:`~training.model.ChurnModel`.
    """

    def __init__(self) -> None:
        self.model: ChurnModel | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Read the churn model from the logged artifact folder.

        Args:
            context: MLflow's context with the ``churn_model`` artifact path.
        """
        self.model = ChurnModel.load(Path(context.artifacts["churn_model"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:  # noqa: ARG002
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
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous_registry)
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
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("lightgbm", "pandas", "numpy", "scipy", "scikit-learn", "mlflow")]


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

    The champion is re-scored on ``test_frame`` when it has the same horizon and every feature it
    needs is there; otherwise its recorded test PR-AUC is compared when its test period is the
    same; otherwise the comparison is impossible and the new model is promoted, saying why.

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
    from sklearn.metrics import average_precision_score

    champion = current_version(client, name, CHAMPION)
    if champion is None:
        return Promotion(True, CHAMPION, f"no champion yet: the first {name} model becomes champion")
    version = str(champion.version)
    new_meta = new_model.metadata
    period = f"{new_meta.get('test_first')} to {new_meta.get('test_last')}"
    try:
        old = _load_version(client, name, version)
    except Exception as err:  # noqa: BLE001 - any unreadable champion is replaced, saying why
        return Promotion(True, CHAMPION, f"the champion (version {version}) cannot be loaded ({err}); the new model replaces it", version)
    old_meta = old.metadata
    same_horizon = old_meta.get("horizon_days") == new_meta.get("horizon_days")
    rescored: float | None = None
    problem = ""
    if same_horizon:
        try:
            rescored = float(average_precision_score(np.asarray(test_labels, dtype=int), old.predict_proba(test_frame)))
        except ValueError as err:
            missing = [c for c in old.feature_names if c not in test_frame.columns]
            problem = f"it needs features the new data lack ({', '.join(missing[:5])})" if missing else f"it cannot score the new rows ({err})"
    if rescored is not None:
        old_pr_auc = rescored
        how = f"on the same test period ({period}, champion re-scored)"
        if _overlaps(old_meta, new_meta):
            how += "; the champion's training labels reach into this period, so its score is optimistic"
    elif old_meta.get("test_first") == new_meta.get("test_first") and old_meta.get("test_last") == new_meta.get("test_last") and same_horizon:
        recorded = old_meta.get("test_pr_auc")
        if recorded is None:
            recorded = client.get_run(champion.run_id).data.metrics.get("test_pr_auc")
        if recorded is None:
            return Promotion(True, CHAMPION, f"the champion (version {version}) has no recorded test PR-AUC; the new model replaces it", version)
        old_pr_auc = float(recorded)
        how = f"by recorded test PR-AUC on the same test period ({period}), as the champion cannot be re-scored: {problem}"
    else:
        why = (
            f"it predicts a {old_meta.get('horizon_days')}-day horizon, the new model {new_meta.get('horizon_days')} days"
            if not same_horizon
            else f"{problem}, and it was tested on another period ({old_meta.get('test_first')} to {old_meta.get('test_last')})"
        )
        return Promotion(True, CHAMPION, f"the champion (version {version}) cannot be compared with the new model ({why}); the newer model is promoted", version)
    if new_pr_auc > old_pr_auc:
        return Promotion(
            True, CHAMPION, f"beats the champion (version {version}) {how}: PR-AUC {new_pr_auc:.4f} vs {old_pr_auc:.4f}", version, old_pr_auc
        )
    return Promotion(
        False,
        CHALLENGER,
        f"does not beat the champion (version {version}) {how}: PR-AUC {new_pr_auc:.4f} vs {old_pr_auc:.4f}; kept as challenger",
        version,
        old_pr_auc,
    )


def _overlaps(old_meta: dict[str, Any], new_meta: dict[str, Any]) -> bool:
    last_label = old_meta.get("labels_known_until")
    first_test = new_meta.get("test_first")
    return bool(last_label and first_test and str(last_label) > str(first_test))


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
