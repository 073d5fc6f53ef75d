"""Locust users for ``serving_bench.py``: single-customer ``/predict`` calls with no think time.

Configured by environment variables (set by the benchmark): ``BENCH_IDS`` (a JSON file of
customer ids), ``BENCH_API_KEY``, ``BENCH_REQUESTS`` (stop after this many), ``BENCH_OUT`` (where
the latencies go), ``BENCH_EXPLAIN`` (the request's ``explain``; the service default when unset).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment

IDS: list[str] = json.loads(Path(os.environ["BENCH_IDS"]).read_text())
KEY = os.environ.get("BENCH_API_KEY", "")
TARGET = int(os.environ.get("BENCH_REQUESTS", "10000"))
OUT = Path(os.environ["BENCH_OUT"])
EXPLAIN = os.environ.get("BENCH_EXPLAIN")
HEADERS = {"Content-Type": "application/json", **({"Authorization": f"Bearer {KEY}"} if KEY else {})}
_latencies: list[float] = []
_errors: list[str] = []


@events.request.add_listener
def _record(response_time: float, exception: Exception | None, **_: Any) -> None:
    _latencies.append(float(response_time))
    if exception is not None:
        _errors.append(str(exception)[:300])


def _stop_when_done(environment: Environment) -> None:
    while len(_latencies) < TARGET:
        gevent.sleep(0.05)
    if environment.runner is not None:
        environment.runner.quit()


@events.test_start.add_listener
def _start(environment: Environment, **_: Any) -> None:
    gevent.spawn(_stop_when_done, environment)


@events.quitting.add_listener
def _dump(environment: Environment, **_: Any) -> None:
    OUT.write_text(json.dumps({"latencies_ms": _latencies, "errors": _errors}))


class PredictUser(FastHttpUser):
    """One CRM client asking for one customer at a time."""

    wait_time = constant(0)

    @task
    def predict(self) -> None:
        payload: dict[str, Any] = {"customers": [{"customer_id": random.choice(IDS)}]}
        if EXPLAIN:
            payload["explain"] = EXPLAIN
        body = json.dumps(payload)
        self.client.post("/predict", data=body, headers=HEADERS, name="/predict")
