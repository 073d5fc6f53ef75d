"""The whole service as an ASGI app, called in this process (no server started): BentoML's app of
:class:`serving.service.ChurnService` over the real DuckDB store and MLflow registry."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving_fixtures import API_KEY, TrainedStore, service_env, trained_store

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its test client; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from serving.service import ChurnService

pytestmark = pytest.mark.slow

KEY = {"X-API-Key": API_KEY}
PAST = "2025-04-01"
MAX_BODY = 200_000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    shared = trained_store(tmp_path_factory.mktemp("serving_store"))
    return shared.copy(tmp_path_factory.mktemp("serving_asgi"))


@pytest.fixture(scope="module")
def client(store: TrainedStore) -> Iterator[TestClient]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in service_env(store, CHURN_MODEL_POLL_SECONDS="600", CHURN_MAX_BODY_BYTES=str(MAX_BODY)).items():
            env.setenv(name, value)
        with TestClient(ChurnService.to_asgi(), raise_server_exceptions=False) as c:  # type: ignore[attr-defined]
            deadline = time.monotonic() + 120
            while c.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the service did not get ready"
                time.sleep(0.1)
            yield c


@pytest.fixture(scope="module")
def customer(client: TestClient) -> str:
    answer = client.post("/risk_list", json={"limit": 1, "explain": False}, headers=KEY)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["items"][0]["customer_id"])


class Writer:
    """Another process holding the DuckDB file open for writing (as ``churn score`` does while it writes)."""

    def __init__(self, path: Path) -> None:
        code = "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('locked', flush=True); sys.stdin.readline(); con.close()"
        self.process = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("\n")
            self.process.stdin.flush()
        self.process.wait(timeout=30)


class _Seen(logging.Handler):
    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


# ---- a writer on the store: wait briefly, then 503 with Retry-After, never a 500


def test_reads_while_another_process_writes_get_503_with_retry_after(client: TestClient, store: TrainedStore, customer: str) -> None:
    writer = Writer(store.data)
    try:
        page = client.get(f"/ui/api/customers/{customer}", headers=KEY)
        past = client.post("/predict", json={"customers": [{"customer_id": customer}], "as_of": PAST}, headers=KEY)
        plain = client.post("/predict", json={"customers": [{"customer_id": customer}]}, headers=KEY)
    finally:
        writer.release()
    for answer in (page, past):
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) > 0 and "another process" in answer.json()["error"]
    assert plain.status_code == 200, "the latest snapshot is in memory: no store read"


def test_a_read_waits_for_a_short_write_to_finish(client: TestClient, store: TrainedStore, customer: str) -> None:
    seen = _Seen("locked by a writer")
    logging.getLogger("churn.serving").addHandler(seen)
    logging.getLogger("churn.serving").setLevel(logging.INFO)
    writer = Writer(store.data)
    answers: list[httpx.Response] = []
    try:
        reader = threading.Thread(target=lambda: answers.append(client.get(f"/ui/api/customers/{customer}", headers=KEY)))
        reader.start()
        assert seen.event.wait(30), "the read met the writer's lock"
        writer.release()
        reader.join(timeout=60)
    finally:
        writer.release()
        logging.getLogger("churn.serving").removeHandler(seen)
    assert answers and answers[0].status_code == 200, answers[0].text if answers else "no answer"
    assert answers[0].json()["customer_id"] == customer


def test_a_nul_byte_in_a_customer_id_is_a_4xx(client: TestClient) -> None:
    page = client.get("/ui/api/customers/C0%00001", headers=KEY)
    assert page.status_code == 400 and "customer id" in page.json()["error"], page.text
    api = client.post("/predict", json={"customers": [{"customer_id": "C0\u0000001"}]}, headers=KEY)
    assert api.status_code == 400, api.text
    assert ["customers", 0, "customer_id"] in [d["loc"] for d in api.json()["detail"]]


# ---- expensive requests do not hold up cheap ones


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_body_is_refused_before_it_is_read(client: TestClient, chunked: bool) -> None:
    body = b'{"customers": [' + b'{"customer_id": "C000001"}, ' * (MAX_BODY // 25) + b'{"customer_id": "C1"}]}'
    content = iter([body[:1000], body[1000:]]) if chunked else body
    answer = client.post("/predict", content=content, headers={**KEY, "Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text
    assert "CHURN_MAX_BODY_BYTES" in answer.json()["error"]


def test_a_plain_predict_is_not_queued_behind_past_snapshot_builds(client: TestClient, customer: str) -> None:
    seen = _Seen("building the snapshot as of")
    served = logging.getLogger("churn.serving")
    served.addHandler(seen)
    served.setLevel(logging.INFO)
    past: list[httpx.Response] = []

    def build(as_of: str) -> None:
        past.append(client.post("/predict", json={"customers": [{"customer_id": customer}], "as_of": as_of}, headers=KEY))

    builders = [threading.Thread(target=build, args=(f"2025-0{m}-15",)) for m in range(2, 8)]
    try:
        for b in builders:
            b.start()
        assert seen.event.wait(60), "a past snapshot is being built"
        plain = client.post("/predict", json={"customers": [{"customer_id": customer}]}, headers=KEY)
        built_before_plain = sum(a.status_code == 200 for a in past)
        for b in builders:
            b.join(timeout=180)
    finally:
        served.removeHandler(seen)
    assert plain.status_code == 200, plain.text
    built = [a for a in past if a.status_code == 200]
    refused = [a for a in past if a.status_code == 503]
    assert len(built) + len(refused) == len(builders), [a.text[:200] for a in past]
    assert built_before_plain < len(built), "the plain call was answered while past snapshots were still being built"
    assert refused and all(int(a.headers["Retry-After"]) > 0 and "churn score --as-of" in a.json()["error"] for a in refused)


def test_a_client_error_is_logged_as_one_line_without_a_traceback(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert client.post("/predict", json={"customers": [{"customer_id": ""}]}, headers=KEY).status_code == 400
        assert client.post("/predict", content=b"{not json", headers={**KEY, "Content-Type": "application/json"}).status_code == 400
    logged = [r for r in caplog.records if r.name == "bentoml._internal.server.http_app"]
    assert logged, "BentoML logs the rejected requests"
    assert all(r.levelno < logging.ERROR and r.exc_info is None and "client error" in r.getMessage() for r in logged)
