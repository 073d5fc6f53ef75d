"""Actions recorded as done: POST /actions on the real service, the retention_actions store on DuckDB and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from serving_fixtures import API_KEY, ServiceProcess, TrainedStore, service_env, trained_store

from features.dataset import write_dataset
from features.sample_data import generate_sample
from serving.actions import ActionConflict, ActionDone, read_actions, record_action
from serving.playbook import load_playbook

KEY = next(iter(load_playbook().action_keys()))


def _action(**changes: object) -> ActionDone:
    body = {"id": "crm-1", "customer_id": "C000001", "action": KEY, "owner": "Anna Li", "done_at": "2025-06-02T10:30:00+02:00", "outcome": "reached", "note": "new range sent"}
    return ActionDone.model_validate({**body, **changes})


@pytest.fixture(scope="module")
def small_data() -> dict:
    return generate_sample(20, years=1.0, seed=3, lines=False)


@pytest.mark.parametrize("kind", ["duckdb", "folder", "postgres"])
def test_an_action_is_stored_once_per_id_and_never_changed(kind: str, small_data: dict, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    location = {"duckdb": str(tmp_path / "crm.duckdb"), "folder": str(tmp_path / "crm")}.get(kind) or request.getfixturevalue("pg_url")
    write_dataset(location, small_data)
    first = record_action(location, _action())
    again = record_action(location, _action())
    assert first.stored and not again.stored and again.recorded_at == first.recorded_at
    with pytest.raises(ActionConflict, match="outcome, note"):
        record_action(location, _action(outcome="declined", note="no"))
    assert record_action(location, _action(id="crm-2")).stored
    stored = read_actions(location).sort_values("id")
    assert stored["id"].tolist() == ["crm-1", "crm-2"]
    assert stored["done_at"].iloc[0] == datetime(2025, 6, 2, 8, 30)  # converted to UTC
    assert stored["outcome"].iloc[0] == "reached" and stored["note"].iloc[0] == "new range sent"


# ---- over HTTP, with a restart


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return trained_store(tmp_path_factory.mktemp("serving_store")).copy(tmp_path_factory.mktemp("actions_data"))


def _serve(store: TrainedStore, log: Path) -> ServiceProcess:
    process = ServiceProcess(service_env(store), log)
    process.wait_ready()
    return process


@pytest.fixture(scope="module")
def service(store: TrainedStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = _serve(store, tmp_path_factory.mktemp("actions_log") / "first.log")
    try:
        yield process
    finally:
        process.stop()


def _post(url: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/actions", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)


@pytest.fixture(scope="module")
def body(service: ServiceProcess) -> dict:
    risk = httpx.post(f"{service.url}/risk_list", json={"risk_band": ["high", "medium"], "limit": 1}, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60).json()
    item = risk["items"][0]
    return {"id": "crm-http-1", "customer_id": item["customer_id"], "action": item["actions"][0]["key"], "owner": "Anna Li",
            "done_at": "2025-06-02T10:30:00", "outcome": "promised_order", "note": "order next week"}


def test_posting_the_same_action_twice_stores_it_once(service: ServiceProcess, body: dict) -> None:
    first, again = _post(service.url, body), _post(service.url, body)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["stored"] is True and again.json()["stored"] is False
    other = _post(service.url, {**body, "outcome": "declined"})
    assert other.status_code == 409 and other.json()["detail"][0]["loc"] == ["id"] and "outcome" in other.json()["error"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"outcome": "maybe"}, "outcome"),
        ({"done_at": "yesterday"}, "done_at"),
        ({"done_at": "2999-01-01"}, "done_at"),
        ({"id": ""}, "id"),
        ({"owner": None}, "owner"),
        ({"action": "call_everyone"}, "action"),
        ({"customer_id": "nobody"}, "customer_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_malformed_action_gets_a_400_naming_the_field(service: ServiceProcess, body: dict, change: dict, field: str) -> None:
    answer = _post(service.url, {**body, "id": f"bad-{field}", **change})
    assert answer.status_code == 400, answer.text
    assert field in [loc for d in answer.json()["detail"] for loc in d["loc"]], answer.text


def test_a_missing_field_and_a_missing_key_are_refused(service: ServiceProcess, body: dict) -> None:
    missing = _post(service.url, {k: v for k, v in body.items() if k != "outcome"})
    assert missing.status_code == 400 and "outcome" in missing.text
    assert httpx.post(f"{service.url}/actions", json=body, timeout=30).status_code == 401


def test_actions_survive_a_restart_of_the_service(service: ServiceProcess, store: TrainedStore, body: dict, tmp_path: Path) -> None:
    assert _post(service.url, {**body, "id": "crm-restart"}).json()["stored"] is True
    service.stop()
    again = _serve(store, tmp_path / "second.log")
    try:
        answer = _post(again.url, {**body, "id": "crm-restart"})
        assert answer.status_code == 200 and answer.json()["stored"] is False
    finally:
        again.stop()
    stored = read_actions(str(store.data))
    assert (stored["id"] == "crm-restart").sum() == 1
