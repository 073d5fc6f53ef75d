"""What a user may change, in one typed object.

Values come from (highest first) CLI flags, environment variables prefixed ``CHURN_``
(``CHURN_DATA``, ``CHURN_HORIZON_DAYS`` ...), an ignored ``.env`` file, then the defaults here.
``MLFLOW_TRACKING_URI`` is honoured as MLflow itself does. Nothing is read at import time:
call :func:`load_settings`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.dataset import Engine, dataset_name
from features.stage import StageRule

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_tracking_uri(root: Path = PROJECT_ROOT) -> str:
    """MLflow store inside ``mlruns/``: a SQLite file for runs and the registry, artifacts beside it."""
    return f"sqlite:///{(root / 'mlruns' / 'mlflow.db').as_posix()}"


def registry_model_name(data: str) -> str:
    """The registered model name of a dataset: ``churn-radar-<store name>`` (``churn-radar-crm`` for data/crm.duckdb).

    ``churn train``, ``churn score``, ``churn serve`` and ``churn demo`` on the same ``--data`` find
    the same model; ``CHURN_MODEL_NAME`` overrides it.

    Args:
        data: the dataset location.

    Returns:
        A name MLflow accepts: lowercase letters, digits, ``.``, ``_`` and ``-``.
    """
    slug = re.sub(r"[^a-z0-9._-]+", "-", dataset_name(data).lower()).strip("-.") or "dataset"
    return f"churn-radar-{slug}"


class Settings(BaseSettings):
    """The service's settings; every field can be set as ``CHURN_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="CHURN_", env_file=".env", extra="ignore")

    data: str = Field(
        default=str(PROJECT_ROOT / "data" / "crm.duckdb"),
        description="CRM dataset: a folder of CSV/Parquet files, a .duckdb file, or a postgresql:// URL.",
    )
    engine: Engine = Field(
        default="auto",
        description="Which engine computes the features: auto (the store's own: DuckDB, PostgreSQL) or spark (a folder of Parquet files or a catalog database, through a SparkSession; see CHURN_SPARK_MASTER).",
    )
    dayfirst: bool | None = Field(
        default=None,
        description="How to read text dates like 03/04/2024: day first (true) or month first (false); empty: as each column's rows tell.",
    )
    encoding: str | None = Field(default=None, description="Text encoding of a folder's CSV files, e.g. gbk or gb18030; empty: UTF-8.")
    max_quarantined_share: float = Field(
        default=0.5, gt=0, le=1, description="With --on-error quarantine, a table with more than this share of bad rows stops (the file is likely read wrong)."
    )
    tracking_uri: str = Field(
        default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(),
        description="MLflow tracking URI (MLFLOW_TRACKING_URI is honoured).",
    )
    artifact_root: str = Field(
        default=str(PROJECT_ROOT / "mlruns" / "artifacts"),
        description="Where a local tracking store keeps run artifacts.",
    )
    model_name: str = Field(
        default="",
        description="Registered model name in MLflow; by default derived from the dataset (churn-radar-<store name>), so that a model trained on another store is never its champion.",
    )
    horizon_days: int = Field(default=90, ge=7, le=730, description="A customer is lost after H days without an order.")
    active_days: int = Field(default=365, ge=30, le=1095, description="Active = ordered within this many days before the as-of date.")
    seed: int = Field(default=42, description="Random seed for sampling, training and tuning.")
    api_key: SecretStr | None = Field(default=None, description="API key for the service (or CHURN_API_KEY_FILE).")
    api_key_file: Path | None = Field(default=None, description="File holding the API key.")
    playbook: Path | None = Field(default=None, description="Win-back playbook YAML; the shipped default when empty.")
    model_poll_seconds: float = Field(default=30.0, gt=0, description="How often the service checks for a new champion model.")
    max_batch: int = Field(default=1000, ge=1, description="Largest /predict batch accepted.")
    max_body_bytes: int = Field(
        default=4_000_000, ge=1024, description="Largest request body accepted (413 above it, before the body is read); 1,000 customers with all their features fit."
    )
    risk_high: float = Field(default=0.5, gt=0, lt=1, description="Probability from which risk_band is high.")
    risk_medium: float = Field(default=0.25, gt=0, lt=1, description="Probability from which risk_band is medium.")
    capacity_per_manager_week: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Customers one account manager can contact per week. When set, the high band is the riskiest customers the team can "
            "reach within the horizon (account managers x this x horizon weeks), the medium band the next as many; "
            "risk_high and risk_medium are then not used."
        ),
    )
    holdout: float = Field(
        default=0.0,
        ge=0.0,
        le=0.5,
        description=(
            "Share of each risk band that `churn score` marks as control (no action this cycle), drawn at random with the seed, "
            "so that `churn outcomes` can measure what the actions changed; 0 = no control group."
        ),
    )
    retrain_pr_auc_drop: float = Field(
        default=0.1, ge=0, le=1, description="`churn outcomes` recommends retraining when the realised PR-AUC falls more than this below the test figure."
    )
    drift_psi_alert: float = Field(
        default=0.25, gt=0, description="PSI of the scores or of a key input above which `churn outcomes` recommends retraining (0.25 = a clear shift)."
    )
    drift_key_inputs: list[str] = Field(
        default_factory=lambda: ["days_since_last_order", "orders_90d", "revenue_90d", "btyd_p_alive"],
        description="The inputs whose drift alone is reason to retrain (JSON list in CHURN_DRIFT_KEY_INPUTS).",
    )
    stage_gap_multiple: float = Field(default=3.0, gt=0, description="A customer is win_back (gone quiet) after this many of its usual gaps without an order.")
    stage_min_days: float = Field(default=30.0, ge=0, description="Fewest days without an order before any customer is win_back.")
    stage_single_order_days: float = Field(default=90.0, ge=0, description="Days without an order after which a customer with a single order day is win_back.")

    @field_validator("risk_medium")
    @classmethod
    def _medium_below_high(cls, v: float, info: ValidationInfo) -> float:
        high = info.data.get("risk_high", 0.5)
        if v >= high:
            raise ValueError(f"risk_medium ({v}) must be below risk_high ({high})")
        return v

    @model_validator(mode="after")
    def _model_name_of_the_dataset(self) -> Settings:
        if not self.model_name.strip():
            self.model_name = registry_model_name(self.data)
        return self

    def stage_rule(self) -> StageRule:
        """When a customer counts as gone quiet (``win_back``) rather than still buying (``retain``)."""
        return StageRule(self.stage_gap_multiple, self.stage_min_days, self.stage_single_order_days)

    def resolved_api_key(self) -> str | None:
        """The API key from CHURN_API_KEY, else from the key file, else None (a blank key counts as none)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value().strip() or None
        if self.api_key_file is not None:
            return self.api_key_file.read_text().strip() or None
        return None


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with non-None ``overrides`` (CLI flags) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
