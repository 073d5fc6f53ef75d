"""The batch risk list scored inside Spark (``churn score --engine spark``): the champion goes to the executors.

Each partition of the snapshot goes through the same code as the DuckDB run
(:meth:`serving.scoring.ScoredSnapshot.build` and :func:`serving.batch.risk_scores_frame`), with the
scorer (the LightGBM booster, its calibrator and the playbook) broadcast once to the executors. What
needs the whole population is computed in Spark: the rank (a window over value at risk), which
at-risk customers are explained (a running count over the same window) and, with a team capacity,
the band cut-offs (the ``2k`` largest probabilities, a small aggregate). Exact reasons are computed,
again inside Spark, only for the explained rows. The driver never holds the scored customers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from serving.batch import EXPLAIN_TOP, EXPORT_COLUMNS, RISK_SCORE_TYPES, export_frame, risk_scores_frame
from serving.scoring import ScoredSnapshot, Scorer, capacity_thresholds

SPARK_TYPES = {"timestamp": "timestamp", "date": "date", "string": "string", "int64": "bigint", "float64": "double", "boolean": "boolean"}
"""The Spark SQL type of each :data:`serving.batch.RISK_SCORE_TYPES` kind."""


def _schema(columns: list[str] | tuple[str, ...]) -> str:
    types = {**RISK_SCORE_TYPES, "reasons": "string"}
    return ", ".join(f"`{c}` {SPARK_TYPES[types[c]]}" for c in columns)


def _scored_rows(scorer: Any, as_of: date, scored_at: datetime, explain: bool) -> Any:
    """The mapInPandas function: snapshot batches to risk-score rows (reasons for every row when ``explain``)."""

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model: Scorer = scorer.value
        for batch in batches:
            if batch.empty:
                continue
            snapshot = batch.sort_values("customer_id", ignore_index=True)
            scored = ScoredSnapshot.build(model, snapshot, as_of)
            yield risk_scores_frame(model, scored, explain_top="all" if explain else 0, scored_at=scored_at)

    return score


def _probabilities(scorer: Any) -> Any:
    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model: Scorer = scorer.value
        for batch in batches:
            yield pd.DataFrame({"churn_probability": model.probabilities(model.model.encode(batch.reset_index(drop=True)))})

    return score


def spark_capacity_bands(scorer: Scorer, snapshot: Any, *, per_manager_week: float, horizon_days: int) -> Scorer:
    """:func:`serving.scoring.with_capacity_bands` on a Spark snapshot: only the ``2k`` largest probabilities reach the driver."""
    from pyspark.sql import functions as F

    managers = snapshot.select(F.countDistinct("account_manager")).first()[0] if "account_manager" in snapshot.columns else 0
    reachable = max(1, int(np.ceil(max(int(managers), 1) * per_manager_week * horizon_days / 7.0)))
    shared = snapshot.sparkSession.sparkContext.broadcast(scorer)
    probability = snapshot.mapInPandas(_probabilities(shared), "churn_probability double")
    top = [row[0] for row in probability.orderBy(F.desc("churn_probability")).limit(2 * reachable).collect()]
    high, medium = capacity_thresholds(np.asarray(top, dtype=float), reachable)
    return replace(scorer, risk_high=high, risk_medium=medium)


def spark_risk_scores(scorer: Scorer, snapshot: Any, as_of: date, *, explain_top: int | Literal["all"] = EXPLAIN_TOP, scored_at: datetime) -> Any:
    """The rows of one batch run as a Spark DataFrame: equal to :func:`serving.batch.risk_scores_frame` on the whole snapshot.

    Args:
        scorer: the model in use (with its final band cut-offs).
        snapshot: the snapshot as a Spark DataFrame (the columns of ``features.snapshot.build_snapshot``).
        as_of: its as-of date.
        explain_top: at-risk customers (largest value at risk first) to explain, or "all".
        scored_at: the run's time stamp (UTC, naive).

    Returns:
        A Spark DataFrame with the :data:`serving.batch.RISK_SCORE_TYPES` columns, ordered by rank.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    shared = snapshot.sparkSession.sparkContext.broadcast(scorer)
    columns = list(RISK_SCORE_TYPES)
    rows = snapshot.mapInPandas(_scored_rows(shared, as_of, scored_at, explain=False), _schema(columns))
    value = F.col("value_at_risk")
    order = Window.orderBy(F.when(value.isNull() | F.isnan(value), F.lit(float("-inf"))).otherwise(value).desc(), F.desc("churn_probability"), F.asc("customer_id"))
    at_risk = F.col("risk_band").isin(list(scorer.playbook.act_on_bands))
    explained = F.lit(True) if explain_top == "all" else at_risk & (F.sum(at_risk.cast("int")).over(order) <= F.lit(int(explain_top)))
    ranked = rows.withColumn("rank", F.row_number().over(order).cast("bigint")).withColumn("explained", explained).persist()
    chosen = ranked.filter("explained").select("customer_id", "rank")
    with_reasons = (
        snapshot.join(F.broadcast(chosen.select("customer_id")), "customer_id")
        .mapInPandas(_scored_rows(shared, as_of, scored_at, explain=True), _schema(columns))
        .drop("rank", "explained")
        .join(chosen, "customer_id")
        .withColumn("explained", F.lit(True))
    )
    return ranked.filter(~F.col("explained")).unionByName(with_reasons.select(*columns)).select(*columns).orderBy("rank")


def spark_export(rows: Any) -> Any:
    """The export columns of :func:`spark_risk_scores` rows (:func:`serving.batch.export_frame`, per partition), ordered by rank."""

    def export(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield export_frame(batch)

    return rows.mapInPandas(export, _schema(EXPORT_COLUMNS)).orderBy("rank")
