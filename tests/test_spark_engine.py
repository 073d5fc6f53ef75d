"""The same features on Spark (local mode) as on DuckDB: one set of Ibis expressions, equal snapshots, labels and training sets.

One SparkSession serves every test of the run (``spark_session`` fixture); the 400-customer
sample is written once as Parquet and read by both engines.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving_fixtures import trained_store

from features.dataset import DataError, open_dataset, write_dataset
from features.labels import build_training_set
from features.registry import FEATURES
from features.sample_data import generate_sample
from features.snapshot import build_snapshot
from serving.batch import risk_scores_frame
from serving.playbook import load_playbook, registry_groups
from serving.scoring import ScoredSnapshot, Scorer, with_capacity_bands
from serving.spark_batch import spark_capacity_bands, spark_risk_scores
from training.register import load_model

if os.environ.get("CI") != "true":  # in CI (make test installs the spark extra) a missing pyspark fails
    pytest.importorskip("pyspark")
pytestmark = pytest.mark.spark

AS_OF = date(2025, 7, 1)


@pytest.fixture(scope="session")
def spark_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The 400-customer sample as a folder of Parquet files, with the one SparkSession of the run started."""
    os.environ.setdefault("CHURN_SPARK_MASTER", "local[2]")
    os.environ.setdefault("CHURN_SPARK_CONF", "spark.sql.shuffle.partitions=2")  # small data: fewer tasks per stage
    from features.spark import spark_session

    folder = tmp_path_factory.mktemp("spark") / "crm"
    write_dataset(folder, generate_sample(400, years=2, seed=11))
    spark_session()
    yield folder


def _assert_same(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
    assert list(duck.columns) == list(spark.columns)
    pd.testing.assert_frame_equal(duck, spark, check_exact=False, rtol=1e-9, atol=1e-9)


def test_every_feature_of_the_snapshot_is_the_same_on_spark(spark_folder: Path) -> None:
    duck = build_snapshot(open_dataset(spark_folder, validate=False), AS_OF)
    spark = open_dataset(spark_folder, engine="spark")
    assert spark.kind == "spark"
    result = build_snapshot(spark, AS_OF)
    features = [c for c in duck.columns if c in FEATURES]
    assert len(duck) > 150 and len(features) > 50
    assert duck[features].notna().any().all(), "every feature has a value somewhere, so each one is compared"
    _assert_same(duck, result)


def test_labels_and_the_training_set_are_the_same_on_spark(spark_folder: Path) -> None:
    dates = [date(2025, 3, 1), date(2025, 8, 1)]
    duck = build_training_set(open_dataset(spark_folder, validate=False), dates=dates)
    spark = build_training_set(open_dataset(spark_folder, engine="spark", cut_at=date(2025, 12, 1)), dates=dates)
    assert duck["churned"].nunique() == 2
    _assert_same(duck, spark)


def test_a_table_without_a_required_column_is_named(spark_folder: Path, tmp_path: Path) -> None:
    frames = generate_sample(20, years=1, seed=3)
    frames["orders"] = frames["orders"].drop(columns=["amount"])
    write_dataset(tmp_path / "bad", frames)
    with pytest.raises(DataError, match="table orders .* missing required column amount"):
        open_dataset(tmp_path / "bad", engine="spark")


def test_the_spark_risk_list_equals_the_duckdb_one_for_the_same_champion(spark_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from features.spark import spark_session

    store = trained_store(tmp_path_factory.mktemp("champion"))
    scorer = Scorer(load_model(store.tracking_uri, "churn"), load_playbook(None, features=registry_groups()))
    snapshot = build_snapshot(open_dataset(spark_folder, validate=False), AS_OF)
    duck_scorer = with_capacity_bands(scorer, snapshot, per_manager_week=0.1, horizon_days=90)
    stamp = datetime(2025, 7, 1, 6)
    duck = risk_scores_frame(duck_scorer, ScoredSnapshot.build(duck_scorer, snapshot, AS_OF), explain_top=10, scored_at=stamp)

    frame = spark_session().createDataFrame(snapshot).repartition(3)  # several partitions: rank and explained need the global view
    spark_scorer = spark_capacity_bands(scorer, frame, per_manager_week=0.1, horizon_days=90)
    assert (spark_scorer.risk_high, spark_scorer.risk_medium) == (duck_scorer.risk_high, duck_scorer.risk_medium)
    spark = spark_risk_scores(spark_scorer, frame, AS_OF, explain_top=10, scored_at=stamp).toPandas()

    assert set(duck["risk_band"]) >= {"high", "low"} and int(duck["explained"].sum()) == 10
    assert spark["customer_id"].tolist() == duck["customer_id"].tolist()
    assert np.allclose(spark["churn_probability"], duck["churn_probability"], rtol=0, atol=1e-6)
    for column in ("rank", "risk_band", "stage", "tier", "explained", "top_reason", "reasons_json", "first_action", "actions_json"):
        values = spark[column].astype(object)  # Arrow's null in a text column comes back as NaN
        assert values.where(values.notna(), None).tolist() == duck[column].tolist(), column
