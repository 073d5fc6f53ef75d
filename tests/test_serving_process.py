"""`churn serve` as a real process: a stop signal drains the requests in flight and leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from serving_fixtures import API_KEY, TrainedStore, free_port, service_env, trained_store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    shared = trained_store(tmp_path_factory.mktemp("serving_store"))
    return shared.copy(tmp_path_factory.mktemp("serving_process"))


def _wait_until(condition, timeout: float, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} while waiting for {what}")
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _port_is_free(port: int) -> bool:
    """Whether a new server could listen on the port now, as a restarted `churn serve` would.

    SO_REUSEADDR, as every server sets it: the connections the stopped server closed may linger in
    TIME_WAIT for a minute, and they do not keep a new server from listening; a listener still open does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


def _in_flight(url: str, endpoint: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    found = re.findall(rf'request_in_progress\{{[^}}]*endpoint="{re.escape(endpoint)}"[^}}]*\}} ([0-9.]+)', text)
    return sum(float(v) for v in found)


def test_sigterm_to_churn_serve_drains_and_leaves_no_process(store: TrainedStore, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "churn.cli", "serve", "--port", str(port)],
            cwd=ROOT, env=service_env(store), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            _wait_until(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 180, "/readyz", serve)
            children = psutil.Process(serve.pid).children(recursive=True)
            assert children, "churn serve runs the server as child processes"
            answer: dict[str, object] = {}

            def slow_request() -> None:  # a past as_of builds a snapshot: long enough to be cut off
                try:
                    reply = httpx.post(
                        f"{url}/predict", headers={"X-API-Key": API_KEY}, timeout=120,
                        json={"customers": [{"customer_id": "C000001"}], "as_of": "2025-04-01"},
                    )
                    answer["status"] = reply.status_code
                except httpx.HTTPError as err:
                    answer["error"] = repr(err)

            worker = threading.Thread(target=slow_request)
            worker.start()
            _wait_until(lambda: _in_flight(url, "/predict") >= 1, 30, "the request to be in flight", serve)
            os.kill(serve.pid, signal.SIGTERM)  # the command only, as a process manager does
            assert serve.wait(timeout=90) == 0
            worker.join(timeout=60)
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGKILL)
    assert answer == {"status": 200}, "the request in flight is answered before the server stops"
    assert not [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], "no orphaned server process"
    assert _port_is_free(port)
