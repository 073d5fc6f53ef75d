"""The real service, started as a process on a free loopback port and called over HTTP."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from serving_fixtures import API_KEY, ServiceProcess, TrainedStore, service_env, trained_store

from churn.settings import load_settings
from serving.batch import score_all
from serving.playbook import load_playbook

pytestmark = pytest.mark.slow

MAX_BATCH = 5


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    shared = trained_store(tmp_path_factory.mktemp("serving_store"))
    return shared.copy(tmp_path_factory.mktemp("serving_http"))


@pytest.fixture(scope="module")
def service(store: TrainedStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    log = tmp_path_factory.mktemp("serving_log") / "service.log"
    proc = ServiceProcess(service_env(store, CHURN_MAX_BATCH=str(MAX_BATCH)), log)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def everyone(client: httpx.Client) -> dict:
    answer = client.post("/risk_list", json={"limit": 1000, "explain": False})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _problem(answer: httpx.Response, status: int = 400) -> list:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"]
    return [tuple(d["loc"]) for d in body["detail"]]


# ---- health and auth


def test_health_and_metrics_need_no_key(service: ServiceProcess) -> None:
    for path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert httpx.get(f"{service.url}{path}", timeout=10).status_code == 200, path


def test_metrics_are_labelled_by_route_not_by_path(service: ServiceProcess, client: httpx.Client, everyone: dict) -> None:
    cid = everyone["items"][0]["customer_id"]
    assert client.get(f"/ui/api/customers/{cid}").status_code == 200
    assert client.get("/ui/api/customers/SECRET-ID-77").status_code == 404
    for _ in range(30):
        assert httpx.get(f"{service.url}/probe-{uuid.uuid4().hex}", timeout=10).status_code in (401, 404)
    before = httpx.get(f"{service.url}/metrics", timeout=10).text
    for _ in range(30):
        httpx.get(f"{service.url}/probe-{uuid.uuid4().hex}/x", timeout=10)
    after = httpx.get(f"{service.url}/metrics", timeout=10).text
    labels = set(re.findall(r'endpoint="([^"]*)"', after))
    assert "/ui/api/customers/{customer_id}" in labels and "unmatched" in labels and "/risk_list" in labels
    assert not any(cid in label or "SECRET" in label or "probe-" in label for label in labels), labels
    assert set(re.findall(r'endpoint="([^"]*)"', before)) == labels, "random paths add no series"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": API_KEY}, {"Authorization": "Basic " + API_KEY}],
    ids=["missing", "wrong-bearer", "wrong-x-api-key", "no-scheme", "basic"],
)
def test_api_refuses_a_missing_or_wrong_key(service: ServiceProcess, headers: dict) -> None:
    for path in ("/predict", "/risk_list", "/docs.json"):
        method = httpx.get if path.endswith(".json") else httpx.post
        kwargs = {} if path.endswith(".json") else {"json": {"customers": [{"customer_id": "x"}]}}
        answer = method(f"{service.url}{path}", headers=headers, timeout=10, **kwargs)
        assert answer.status_code == 401, (path, answer.text)
        assert "Authorization: Bearer" in answer.json()["error"]


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": API_KEY}], ids=["bearer", "x-api-key"])
def test_api_accepts_the_key_either_way(service: ServiceProcess, headers: dict) -> None:
    answer = httpx.post(f"{service.url}/risk_list", headers=headers, json={"limit": 1}, timeout=30)
    assert answer.status_code == 200, answer.text


# ---- /predict


def test_predict_by_id_names_model_and_as_of(client: httpx.Client, everyone: dict) -> None:
    top = next(i for i in everyone["items"] if i["risk_band"] == "high")
    answer = client.post("/predict", json={"customers": [{"customer_id": top["customer_id"]}]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"]["name"] == "churn" and body["model"]["version"] == "1" and body["model"]["alias"] == "champion"
    assert body["model"]["kind"] in ("recency", "bgnbd", "logistic_rfm", "lightgbm", "lightgbm_bgnbd", "blend") and body["model"]["recipe"]
    assert body["model"]["train_last"] < body["as_of"]
    assert body["as_of"] == everyone["as_of"]
    item = body["results"][0]
    assert item["status"] == "ok" and item["customer_id"] == top["customer_id"]
    for key in ("churn_probability", "risk_band", "tier", "pyramid", "revenue_12m", "value_at_risk", "reasons", "actions"):
        assert key in item
    assert item["churn_probability"] == pytest.approx(top["churn_probability"])
    assert item["value_at_risk"] == pytest.approx(item["churn_probability"] * item["value_12m"], rel=1e-3, abs=0.02) and item["stage"] in ("retain", "win_back")
    assert item["explained"] and item["reasons"]
    impacts = [r["impact"] for r in item["reasons"]]
    assert impacts == sorted(impacts, reverse=True) and impacts[0] > 0
    assert all(r["sentence"] and r["feature"] for r in item["reasons"])
    if item["risk_band"] != "low":
        action = item["actions"][0]
        assert action["owner"] in {"account_manager", "customer_service", "finance", "marketing"}
        assert action["deadline_days"] >= 0 and action["why"] and action["due_by"]
        assert action["key"] in load_playbook().action_keys()


def test_predict_answers_the_customers_product_groups_at_risk(client: httpx.Client, store: TrainedStore, everyone: dict, tmp_path: Path) -> None:
    ids = [i["customer_id"] for i in everyone["items"][:40]]
    results = [item for k in range(0, len(ids), MAX_BATCH) for item in client.post("/predict", json={"customers": [{"customer_id": c} for c in ids[k : k + MAX_BATCH]]}).json()["results"]]
    own = store.copy(tmp_path / "db")
    score_all(load_settings(data=str(own.data), tracking_uri=store.tracking_uri, model_name=store.model_name), out=tmp_path / "risk.csv", explain_top=0)
    listed = pd.read_csv(tmp_path / "risk_groups.csv", dtype={"customer_id": str})  # the same model's batch list of the same day
    answered = [item for item in results if item["groups_at_risk"]]
    assert len(answered) >= 20, "most active customers of the sample company buy some product group regularly"
    for item in answered:
        groups = item["groups_at_risk"]
        values = [g["value_at_risk"] for g in groups]
        assert values == sorted(values, reverse=True) and len(groups) <= 5
        mine = listed[listed["customer_id"] == item["customer_id"]].head(len(groups))
        assert [g["product_group"] for g in groups] == mine["product_group"].tolist()
        assert [g["probability"] for g in groups] == pytest.approx(mine["probability"].tolist(), rel=1e-5)


def test_low_risk_customers_get_reasons_only_when_asked(client: httpx.Client, everyone: dict) -> None:
    low = next(i for i in everyone["items"] if i["risk_band"] == "low")
    auto = client.post("/predict", json={"customers": [{"customer_id": low["customer_id"]}]}).json()["results"][0]
    assert not auto["explained"] and auto["reasons"] == [] and auto["actions"] == []
    asked = client.post("/predict", json={"customers": [{"customer_id": low["customer_id"]}], "explain": "all"}).json()["results"][0]
    assert asked["explained"] and asked["churn_probability"] == auto["churn_probability"]


def test_unknown_customer_gets_an_error_item_and_the_others_are_answered(client: httpx.Client, everyone: dict) -> None:
    known = [i["customer_id"] for i in everyone["items"][:2]]
    answer = client.post("/predict", json={"customers": [{"customer_id": known[0]}, {"customer_id": "NOPE-1"}, {"customer_id": known[1]}]})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == ["ok", "error", "ok"]
    assert [r["customer_id"] for r in results] == [known[0], "NOPE-1", known[1]]
    assert "unknown customer" in results[1]["error"]


def test_predict_with_the_customers_own_features(client: httpx.Client) -> None:
    features = {
        "days_since_last_order": 120, "median_gap_days": 10, "overdue_ratio": 12.0, "orders_90d": 0, "orders_365d": 20,
        "open_complaints": 2, "abc_class": "A", "pyramid_tier": "gold", "revenue_365d": 50000.0,
    }
    answer = client.post("/predict", json={"customers": [{"customer_id": "CRM-77", "features": features}, {"customer_id": 42, "features": {}}]})
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["results"]
    assert first["customer_id"] == "CRM-77" and first["tier"] == "A" and first["pyramid"] == "gold"
    assert first["revenue_12m"] == 50000.0 and first["customer_class"] == "key_account"
    # silent for 12 of its own ordering gaps, overdue and with open complaints: among the riskiest customers
    assert first["risk_band"] == "high" and first["churn_probability"] > second["churn_probability"]
    assert second["customer_id"] == "42" and second["tier"] is None


def test_large_batches_explain_only_the_at_risk_customers(client: httpx.Client, everyone: dict) -> None:
    ids = [{"customer_id": i["customer_id"]} for i in everyone["items"][:MAX_BATCH]]
    answer = client.post("/predict", json={"customers": ids, "explain": "none"})
    assert answer.status_code == 200
    assert not any(r["explained"] for r in answer.json()["results"])
    for item in answer.json()["results"]:
        if item["risk_band"] != "low":
            assert item["actions"], "an at-risk customer gets an action even without reasons"


# ---- bad input: a 4xx naming the field, never a 500


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"customers": []}, ("customers",)),
        ({"customers": "C1"}, ("customers",)),
        ({"customers": [{"customer_id": ""}]}, ("customers", 0, "customer_id")),
        ({"customers": [{"customer_id": None}]}, ("customers", 0, "customer_id")),
        ({"customers": [{"id": "C1"}]}, ("customers", 0, "customer_id")),
        ({"customers": [{"customer_id": "C1", "features": [1, 2]}]}, ("customers", 0, "features")),
        ({"customers": [{"customer_id": "C1", "features": {"orders_90d": "many"}}]}, ("customers", 0, "features", "orders_90d")),
        ({"customers": [{"customer_id": "C1", "features": {"colour": "red"}}]}, ("customers", 0, "features", "colour")),
        ({"customers": [{"customer_id": "C1", "features": {"region": 5}}]}, ("customers", 0, "features", "region")),
        ({"customers": [{"customer_id": f"C{i}"} for i in range(MAX_BATCH + 1)]}, ("customers",)),
        ({"customers": [{"customer_id": "C1"}], "as_of": "yesterday"}, ("as_of",)),
        ({"customers": [{"customer_id": "C1"}], "as_of": "2099-01-01"}, ("as_of",)),
        ({"customers": [{"customer_id": "C1"}], "explain": "some"}, ("explain",)),
        ({"customers": [{"customer_id": "C1"}], "extra": 1}, ("extra",)),
    ],
    ids=[
        "empty-batch", "not-a-list", "empty-id", "null-id", "missing-id", "features-not-object", "feature-text-for-number",
        "unknown-feature", "feature-number-for-category", "oversized-batch", "bad-date", "future-as-of", "bad-explain", "unknown-field",
    ],
)
def test_predict_bad_input(client: httpx.Client, body: dict, loc: tuple) -> None:
    assert loc in _problem(client.post("/predict", json=body))


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"limit": -1}, ("limit",)),
        ({"offset": -5}, ("offset",)),
        ({"limit": "ten"}, ("limit",)),
        ({"limit": 100000}, ("limit",)),
        ({"min_probability": 1.5}, ("min_probability",)),
        ({"tier": ["D"]}, ("tier", 0)),
        ({"pyramid": "bronze"}, ("pyramid", 0)),
        ({"risk_band": ["urgent"]}, ("risk_band", 0)),
        ({"sort": "name"}, ("sort",)),
        ({"region": [1]}, ("region", 0)),
        ({"limt": 5}, ("limt",)),
    ],
    ids=["negative-limit", "negative-offset", "text-limit", "huge-limit", "probability-above-1", "bad-tier", "bad-pyramid", "bad-band", "bad-sort", "region-number", "typo"],
)
def test_risk_list_bad_input(client: httpx.Client, body: dict, loc: tuple) -> None:
    assert loc in _problem(client.post("/risk_list", json=body))


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"{not json", "application/json"), (b"[1, 2]", "application/json"), (b"", "application/json"), (b"\xff\xfe", "application/json"),
     (b'--x\r\nContent-Disposition: form-data; name="customers"\r\n\r\nC1\r\n--x--\r\n', "multipart/form-data; boundary=x"), (b"customers=C1", "application/x-www-form-urlencoded")],
    ids=["malformed", "array", "empty", "binary", "multipart", "form"],
)
def test_malformed_bodies_get_a_4xx(client: httpx.Client, content: bytes, content_type: str) -> None:
    answer = client.post("/predict", content=content, headers={"Content-Type": content_type})
    assert 400 <= answer.status_code < 500, answer.text


def test_json_without_a_content_type_is_still_read(service: ServiceProcess, everyone: dict) -> None:
    cid = everyone["items"][0]["customer_id"]
    answer = httpx.post(
        f"{service.url}/predict", content=f'{{"customers": [{{"customer_id": "{cid}"}}]}}'.encode(),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/x-www-form-urlencoded"}, timeout=30,
    )
    assert answer.status_code == 200, answer.text


# ---- /risk_list


def test_risk_list_without_a_batch_run_scores_the_snapshot(everyone: dict) -> None:
    assert everyone["source"] == "snapshot" and everyone["model"]["version"] == "1"
    items = everyone["items"]
    assert everyone["total"] == len(items) > 100
    var = [i["value_at_risk"] if i["value_at_risk"] is not None else -1 for i in items]
    assert var == sorted(var, reverse=True)


def test_risk_list_filters_and_pages(client: httpx.Client, everyone: dict) -> None:
    items = everyone["items"]
    a = client.post("/risk_list", json={"tier": "A", "limit": 1000, "explain": False}).json()
    assert a["total"] == sum(i["tier"] == "A" for i in items) == len(a["items"])
    assert all(i["tier"] == "A" for i in a["items"])
    manager = items[0]["account_manager"]
    region = items[0]["region"]
    both = client.post("/risk_list", json={"account_manager": [manager], "region": region, "limit": 1000, "explain": False}).json()
    assert both["total"] == sum(i["account_manager"] == manager and i["region"] == region for i in items) >= 1
    pyramid = client.post("/risk_list", json={"pyramid": ["platinum", "gold"], "risk_band": ["high", "medium"], "limit": 0}).json()
    assert pyramid["items"] == []
    assert pyramid["total"] == sum(i["pyramid"] in ("platinum", "gold") and i["risk_band"] in ("high", "medium") for i in items)
    floor = client.post("/risk_list", json={"min_probability": 0.3, "sort": "probability", "limit": 1000, "explain": False}).json()
    probabilities = [i["churn_probability"] for i in floor["items"]]
    assert probabilities == sorted(probabilities, reverse=True) and min(probabilities, default=1) >= 0.3
    assert floor["total"] == sum(i["churn_probability"] >= 0.3 for i in items)
    pages = [client.post("/risk_list", json={"limit": 7, "offset": off, "explain": False}).json() for off in (0, 7, 14)]
    assert [i["customer_id"] for p in pages for i in p["items"]] == [i["customer_id"] for i in items[:21]]
    assert all(p["total"] == everyone["total"] and p["limit"] == 7 for p in pages)
    beyond = client.post("/risk_list", json={"offset": everyone["total"] + 10}).json()
    assert beyond["items"] == [] and beyond["total"] == everyone["total"]


def test_risk_list_splits_by_stage_with_win_back_steps_for_customers_gone_quiet(client: httpx.Client, everyone: dict) -> None:
    items = everyone["items"]
    assert {i["stage"] for i in items} == {"retain", "win_back"}
    quiet = client.post("/risk_list", json={"stage": "win_back", "limit": 1000}).json()
    keep = client.post("/risk_list", json={"stage": ["retain"], "limit": 0}).json()
    assert quiet["total"] + keep["total"] == everyone["total"] and quiet["total"] == sum(i["stage"] == "win_back" for i in items)
    acted = [i for i in quiet["items"] if i["actions"]]
    assert acted and all({a["driver"] for a in i["actions"]} == {"win_back"} for i in acted)
    assert all(i["let_go"] == (i["customer_class"] == "low_value") for i in quiet["items"])
    kept = client.post("/risk_list", json={"stage": "retain", "risk_band": "high", "limit": 20}).json()["items"]
    assert kept and all("win_back" not in {a["driver"] for a in i["actions"]} and not i["let_go"] for i in kept)
    for i in items[:50]:  # the answer's probability has six decimals: a large customer with a tiny probability carries that rounding
        assert i["value_at_risk"] == pytest.approx(i["churn_probability"] * i["value_12m"], rel=1e-4, abs=0.02 + 5e-7 * i["value_12m"])
    assert ("stage", 0) in [loc[-2:] for loc in _problem(client.post("/risk_list", json={"stage": "gone"}))]


def test_risk_list_page_carries_reasons_and_actions(client: httpx.Client) -> None:
    page = client.post("/risk_list", json={"risk_band": "high", "limit": 3}).json()
    for item in page["items"]:
        assert item["explained"] and item["reasons"] and item["actions"]


def test_risk_list_reads_the_newest_batch_run(client: httpx.Client, store: TrainedStore, everyone: dict) -> None:
    from churn.settings import load_settings
    from serving.batch import score_all

    settings = load_settings(data=str(store.data), tracking_uri=store.tracking_uri, model_name=store.model_name)
    ranked = score_all(settings, explain_top=10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = client.post("/risk_list", json={"limit": 5}).json()
        if body["source"] == "risk_scores":
            break
        time.sleep(0.5)
    assert body["source"] == "risk_scores" and body["scored_at"]
    assert body["total"] == len(ranked) == everyone["total"]
    assert [i["customer_id"] for i in body["items"]] == ranked["customer_id"].head(5).tolist()
    assert all(i["explained"] and i["actions"] for i in body["items"] if i["risk_band"] != "low")
    keys = load_playbook().action_keys()
    assert all(keys[a["key"]] == a["action"] for i in body["items"] for a in i["actions"])


def test_control_customers_are_listed_with_no_action_this_cycle(client: httpx.Client, store: TrainedStore) -> None:
    from churn.settings import load_settings

    settings = load_settings(data=str(store.data), tracking_uri=store.tracking_uri, model_name=store.model_name, holdout=0.25)
    ranked = score_all(settings, explain_top=10)
    held_out = set(ranked.loc[ranked["control"], "customer_id"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = client.post("/risk_list", json={"limit": 1000, "explain": True}).json()
        if {i["customer_id"] for i in body["items"] if i["control"]} == held_out:
            break
        time.sleep(0.5)
    assert {i["customer_id"] for i in body["items"] if i["control"]} == held_out and held_out
    assert all(not i["actions"] for i in body["items"] if i["control"])
    assert any(i["actions"] for i in body["items"] if not i["control"] and i["risk_band"] != "low")
    some = sorted(held_out)[:MAX_BATCH]
    answers = client.post("/predict", json={"customers": [{"customer_id": c} for c in some]}).json()["results"]
    assert all(a["control"] and not a["actions"] for a in answers)


def test_metrics_expose_the_served_model_age_and_the_newest_drift(service: ServiceProcess, store: TrainedStore) -> None:
    from serving.drift import read_drift

    drift = read_drift(str(store.data))
    assert len(drift), "the batch runs above stored their drift"
    score_psi = float(drift.loc[drift["feature"] == "__score__", "psi"].iloc[0])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = httpx.get(f"{service.url}/metrics", timeout=10).text
        if 'churn_drift_psi{feature="__score__"}' in text:
            break
        time.sleep(0.5)
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line.startswith("churn_")}
    assert lines['churn_drift_psi{feature="__score__"}'] == pytest.approx(score_psi)
    age = [v for k, v in lines.items() if k.startswith("churn_model_age_days{")]
    assert age and 0 <= age[0] < 1, "the model was trained minutes ago"
    assert any(k.startswith("churn_model_data_age_days{") and v > 0 for k, v in lines.items())


# ---- a new champion is picked up without a restart (keep this last: it moves the alias)


def test_a_new_champion_is_served_without_a_restart(client: httpx.Client, store: TrainedStore, everyone: dict) -> None:
    from training.register import tracking

    cid = everyone["items"][0]["customer_id"]
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=client.base_url, headers=dict(client.headers), timeout=60) as c:
            while not stop.is_set():
                answer = c.post("/predict", json={"customers": [{"customer_id": cid}]})
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")
                    continue
                body = answer.json()
                if body["results"][0]["status"] != "ok":
                    failures.append(str(body)[:200])
                seen.append(body["model"]["version"])

    worker = threading.Thread(target=hammer, daemon=True)
    worker.start()
    try:
        time.sleep(1.0)
        with tracking(store.tracking_uri) as registry:
            first = registry.get_model_version_by_alias(store.model_name, "champion")
            second = registry.create_model_version(store.model_name, source=first.source, run_id=first.run_id, model_id=first.model_id)
            registry.set_registered_model_alias(store.model_name, "champion", second.version)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (not seen or seen[-1] != str(second.version)):
            time.sleep(0.3)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not failures, failures[:3]
    assert seen and seen[0] == "1" and seen[-1] == str(second.version)
    assert seen == sorted(seen, key=int), "a request never goes back to the old model after the swap"


# ---- refusing to start


def test_refuses_to_start_without_a_champion(store: TrainedStore, tmp_path: Path) -> None:
    empty = TrainedStore(tmp_path, store.data, f"sqlite:///{(tmp_path / 'empty.db').as_posix()}", tmp_path / "artifacts")
    env = service_env(empty)
    done = subprocess.run([sys.executable, "-m", "churn.cli", "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=120)
    said = " ".join(done.stderr.split())
    assert done.returncode == 2
    assert "no champion model" in said and "churn train" in said and "churn demo" in said

    direct = ServiceProcess(env, tmp_path / "direct.log")
    try:
        direct.process.wait(timeout=120)
    finally:
        direct.stop()
    assert "churn train" in direct.output()


def test_refuses_to_start_without_an_api_key(store: TrainedStore) -> None:
    env = service_env(store)
    del env["CHURN_API_KEY"]
    done = subprocess.run([sys.executable, "-m", "churn.cli", "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "CHURN_API_KEY" in done.stderr
