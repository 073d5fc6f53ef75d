"""serving/runtime.py on its own: start-up checks, loading and warming a state, answers and their errors."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from serving_fixtures import TrainedStore, trained_store

from churn.settings import Settings, load_settings
from serving.runtime import NotReady, RequestError, Runtime, StartupError, check_startup, data_signature, poll_seconds
from serving.schemas import CustomerError, CustomerIn, CustomerRisk, PredictRequest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    shared = trained_store(tmp_path_factory.mktemp("serving_store"))
    return shared.copy(tmp_path_factory.mktemp("serving_runtime"))


def _settings(store: TrainedStore, **extra: object) -> Settings:
    return load_settings(**{"data": str(store.data), "tracking_uri": store.tracking_uri, "model_name": store.model_name, "api_key": "k", **extra})


@pytest.fixture(scope="module")
def runtime(store: TrainedStore) -> Runtime:
    loaded = Runtime(_settings(store, max_batch=3))
    assert loaded.refresh()
    return loaded


@pytest.mark.parametrize("key", ["", "   "], ids=["empty", "spaces"])
def test_a_blank_key_is_refused_at_start(store: TrainedStore, key: str) -> None:
    with pytest.raises(StartupError, match="the API key is blank.*CHURN_API_KEY"):
        check_startup(load_settings(data=str(store.data), tracking_uri=store.tracking_uri, api_key=key))


def test_a_blank_key_file_is_refused_at_start(store: TrainedStore, tmp_path: Path) -> None:
    (tmp_path / "key").write_text("\n")
    settings = load_settings(data=str(store.data), tracking_uri=store.tracking_uri, api_key_file=str(tmp_path / "key"))
    with pytest.raises(StartupError, match="blank"):
        check_startup(settings)


def test_no_champion_says_what_to_run(store: TrainedStore) -> None:
    with pytest.raises(StartupError, match="churn train"):
        check_startup(_settings(store, model_name="nobody-trained-this"))


def test_not_ready_before_the_first_state(store: TrainedStore) -> None:
    fresh = Runtime(_settings(store))
    assert not fresh.ready
    with pytest.raises(NotReady, match="readyz"):
        fresh.predict(PredictRequest(customers=[CustomerIn(customer_id="C1")]))


def test_the_explainer_is_warmed_before_the_state_is_published(store: TrainedStore, caplog: pytest.LogCaptureFixture) -> None:
    fresh = Runtime(_settings(store))
    with caplog.at_level(logging.INFO, logger="churn.serving"):
        assert fresh.refresh()
    messages = [r.getMessage() for r in caplog.records]
    warmed = next(i for i, m in enumerate(messages) if m.startswith("warmed the explainer"))
    served = next(i for i, m in enumerate(messages) if m.startswith("serving "))
    assert warmed < served and fresh.ready
    assert not fresh.refresh(), "nothing changed: no new state"


def test_predict_answers_known_and_unknown_customers(runtime: Runtime) -> None:
    state = runtime.require_state()
    known = next(iter(state.snapshot.table.positions))
    answer = runtime.predict(PredictRequest(customers=[CustomerIn(customer_id=known), CustomerIn(customer_id="NOPE")], explain="all"))
    first, second = answer.results
    assert isinstance(first, CustomerRisk) and first.customer_id == known and first.explained
    assert isinstance(second, CustomerError) and "unknown customer" in second.error
    assert answer.as_of == state.snapshot.as_of and answer.model.version == state.scorer.loaded.version


def test_predict_refuses_what_it_cannot_answer(runtime: Runtime) -> None:
    end = runtime.require_state().snapshot.as_of
    with pytest.raises(RequestError) as big:
        runtime.predict(PredictRequest(customers=[CustomerIn(customer_id=f"C{i}") for i in range(4)]))
    assert big.value.loc == ["customers"] and "CHURN_MAX_BATCH" in str(big.value)
    with pytest.raises(RequestError) as later:
        runtime.predict(PredictRequest(customers=[CustomerIn(customer_id="C1")], as_of=end + timedelta(days=1)))
    assert later.value.loc == ["as_of"]
    with pytest.raises(RequestError, match="first order"):
        runtime.predict(PredictRequest(customers=[CustomerIn(customer_id="C1")], as_of=end - timedelta(days=20 * 365)))


def test_a_past_snapshot_is_built_once_and_cached(runtime: Runtime) -> None:
    state = runtime.require_state()
    day = state.snapshot.as_of - timedelta(days=90)
    first = runtime.snapshot_for(state, day)
    assert first.as_of == day and first is not state.snapshot
    assert runtime.snapshot_for(state, day) is first
    assert runtime.snapshot_for(state, None) is state.snapshot


def test_data_signature_changes_when_the_store_is_written(store: TrainedStore, tmp_path: Path) -> None:
    own = store.copy(tmp_path)
    before = data_signature(str(own.data))
    with own.data.open("ab") as f:
        f.write(b"\0")
    assert data_signature(str(own.data)) != before


def test_poll_seconds_comes_from_the_settings(store: TrainedStore) -> None:
    assert poll_seconds(_settings(store, model_poll_seconds=2.5)) == 2.5
    assert poll_seconds(_settings(store, model_poll_seconds=0.01)) == 0.2
