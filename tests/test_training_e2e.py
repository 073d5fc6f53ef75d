"""`training.train.train` on generated CRM data: real snapshots and labels, as-of, registry, bad input."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.dataset import CRMDataset, DataError
from features.sample_data import generate_sample
from training.register import load_model
from training.train import TrainResult, train

END = date(2025, 12, 31)
AS_OF = END - timedelta(days=60)


@pytest.fixture(scope="module")
def data() -> CRMDataset:
    return CRMDataset.from_frames(generate_sample(300, years=2.0, seed=7, end=END))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("mlflow-e2e")
    return f"sqlite:///{(root / 'mlflow.db').as_posix()}", str(root / "artifacts")


@pytest.fixture(scope="module")
def result(data: CRMDataset, store: tuple[str, str]) -> TrainResult:
    messages: list[str] = []
    out = train(
        data,
        trials=2,
        timeout_s=None,
        as_of=AS_OF,
        tracking_uri=store[0],
        artifact_root=store[1],
        model_name="churn-e2e",
        progress=messages.append,
    )
    assert any("snapshot" in m for m in messages) and any("registered" in m for m in messages)
    return out



@pytest.mark.slow
def test_trains_registers_and_promotes_on_generated_data(result: TrainResult, store: tuple[str, str]) -> None:
    assert result.promoted and result.model_version == "1"
    assert result.experiment.startswith("churn/")
    assert {"recency", "bgnbd", "logistic_rfm"} <= set(result.baselines)
    assert 0.0 < result.metrics["pr_auc"] <= 1.0 and result.metrics["roc_auc"] > 0.5
    assert set(result.tiers) <= {"A", "B", "C", "unknown"} and result.tiers
    loaded = load_model(store[0], "churn-e2e")
    assert loaded.run_id == result.run_id
    assert loaded.model.metadata["feature_set_version"] == result.model.metadata["feature_set_version"]


@pytest.mark.slow
def test_as_of_keeps_every_label_before_the_training_date(result: TrainResult) -> None:
    meta = result.model.metadata
    assert meta["as_of"] == AS_OF.isoformat()
    assert date.fromisoformat(meta["test_last"]) + timedelta(days=90) <= AS_OF
    assert date.fromisoformat(meta["labels_known_until"]) <= AS_OF
    assert date.fromisoformat(meta["train_last"]) == AS_OF - timedelta(days=90), "the served model learned from the latest matured snapshot"
    assert date.fromisoformat(meta["tested_train_last"]) < date.fromisoformat(meta["test_first"])


@pytest.mark.slow
def test_model_scores_fresh_snapshots_of_the_same_data(result: TrainResult, data: CRMDataset) -> None:
    from features.snapshot import build_snapshot

    snapshot = build_snapshot(data, END)
    proba = result.model.predict_proba(snapshot)
    assert len(proba) == len(snapshot) > 0
    assert ((proba > 0) & (proba < 1)).all()
    contrib, base = result.model.contributions(snapshot.head(20))
    pd.testing.assert_series_equal(
        pd.Series(contrib.sum(1) + base), pd.Series(result.model.raw_score(snapshot.head(20))), atol=1e-6
    )


def test_history_shorter_than_the_horizon_is_explained(tmp_path: Path) -> None:
    short = CRMDataset.from_frames(generate_sample(40, years=0.2, seed=1, end=END))
    with pytest.raises(DataError, match=r"horizon"):
        train(short, trials=1, tracking_uri=f"sqlite:///{(tmp_path / 'x.db').as_posix()}", artifact_root=str(tmp_path))
    assert not (tmp_path / "x.db").exists()
