"""What ``/metrics`` tells about the model in service: its age and the newest run's drift.

Prometheus gauges, set by the service's watcher after every refresh: ``churn_model_age_days``
(days since the served version was trained), ``churn_model_data_age_days`` (days between the
newest training snapshot and the data's as-of date), ``churn_drift_psi{feature=...}`` (the newest
``churn score`` run's PSI per input against the training reference; ``feature="__score__"`` for
the scores) and ``churn_drift_scored_timestamp_seconds`` (when that run scored). ``/readyz`` does not
depend on them: a drifted model still serves.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from serving.drift import read_drift

if TYPE_CHECKING:
    from serving.runtime import Runtime

logger = logging.getLogger("churn.serving")


class Monitor:
    """The service's model-health gauges (create it in the worker process, after BentoML set up its metrics)."""

    def __init__(self) -> None:
        import prometheus_client  # after the worker set PROMETHEUS_MULTIPROC_DIR (see bentoml.metrics)

        self.model_age = prometheus_client.Gauge("churn_model_age_days", "Days since the served model version was trained.", ["model", "version"], multiprocess_mode="mostrecent")
        self.data_age = prometheus_client.Gauge(
            "churn_model_data_age_days", "Days between the newest snapshot the served model learned from and the data it scores.", ["model", "version"], multiprocess_mode="mostrecent"
        )
        self.psi = prometheus_client.Gauge("churn_drift_psi", "PSI of the newest scoring run against the training reference, per input (__score__: the scores).", ["feature"], multiprocess_mode="mostrecent")
        self.scored = prometheus_client.Gauge("churn_drift_scored_timestamp_seconds", "When the scoring run behind churn_drift_psi scored (UTC).", multiprocess_mode="mostrecent")
        self._drift_of: Any = None

    def update(self, runtime: Runtime) -> None:
        """Set the gauges from the runtime's state and the store's newest drift figures.

        Args:
            runtime: the service's runtime (after a refresh).
        """
        state = runtime.state
        if state is None:
            return
        info = state.scorer.model_info
        meta = state.scorer.model.metadata
        if info.trained_at:
            trained = pd.Timestamp(info.trained_at)
            trained = trained.tz_convert(UTC) if trained.tzinfo else trained.tz_localize(UTC)
            self.model_age.labels(info.name, info.version).set((datetime.now(UTC) - trained.to_pydatetime()).total_seconds() / 86400)
        if meta.get("train_last"):
            self.data_age.labels(info.name, info.version).set((state.snapshot.as_of - date.fromisoformat(str(meta["train_last"])[:10])).days)
        try:
            drift = read_drift(runtime.settings.data)
        except Exception as err:  # noqa: BLE001 - a busy store is read next time
            logger.info("drift figures not readable now (%s)", err)
            return
        if drift.empty:
            return
        when = pd.Timestamp(drift["scored_at"].iloc[0])
        if when == self._drift_of:
            return
        for feature, value in zip(drift["feature"].astype(str), drift["psi"].astype(float), strict=True):
            self.psi.labels(feature).set(value)
        self.scored.set(when.tz_localize(UTC).timestamp())
        self._drift_of = when
