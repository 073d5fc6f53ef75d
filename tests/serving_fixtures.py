"""A trained serving store for the serving tests, built once per session, and a real service process.

:func:`trained_store` generates a small sample CRM dataset into DuckDB and trains and registers a
champion into a SQLite tracking store (both in a temporary folder); :class:`ServiceProcess` runs
``bentoml serve serving.service:ChurnService`` on a free loopback port with the ``CHURN_*``
environment pointing at copies of them, and stops it afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

API_KEY = "test-key-1234"
CUSTOMERS = 450
YEARS = 2.5
SEED = 11
_CACHE: dict[str, TrainedStore] = {}


@dataclass(frozen=True)
class TrainedStore:
    """A CRM dataset and an MLflow store holding a champion.

    Attributes:
        root: the folder holding both.
        data: the DuckDB dataset.
        tracking_uri: the SQLite tracking URI.
        artifact_root: where run artifacts live.
        model_name: the registered model name.
    """

    root: Path
    data: Path
    tracking_uri: str
    artifact_root: Path
    model_name: str = "churn"

    def copy(self, target: Path) -> TrainedStore:
        """A copy of the dataset (the tracking store is shared: its artifacts are referenced by path).

        Args:
            target: an empty folder.

        Returns:
            The same store with its own DuckDB file.
        """
        target.mkdir(parents=True, exist_ok=True)
        data = target / "crm.duckdb"
        shutil.copy(self.data, data)
        return TrainedStore(self.root, data, self.tracking_uri, self.artifact_root, self.model_name)


def trained_store(root: Path) -> TrainedStore:
    """Generate, write and train once per session (later calls return the first store).

    Args:
        root: an empty folder for the first call.

    Returns:
        The store.
    """
    if "store" in _CACHE:
        return _CACHE["store"]
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from features.dataset import open_dataset, write_dataset
    from features.sample_data import generate_sample
    from training.train import train

    root.mkdir(parents=True, exist_ok=True)
    data = root / "crm.duckdb"
    write_dataset(data, generate_sample(CUSTOMERS, years=YEARS, seed=SEED))
    tracking_uri = f"sqlite:///{(root / 'mlflow.db').as_posix()}"
    artifacts = root / "artifacts"
    dataset = open_dataset(data, validate=False)
    try:
        train(dataset, trials=2, timeout_s=30.0, tracking_uri=tracking_uri, artifact_root=str(artifacts), model_name="churn", seed=SEED)
    finally:
        dataset.con.disconnect()
    store = TrainedStore(root, data, tracking_uri, artifacts)
    _CACHE["store"] = store
    return store


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(store: TrainedStore, **extra: str) -> dict[str, str]:
    """The environment of a service process on ``store``.

    Args:
        store: dataset and tracking store.
        **extra: further variables (e.g. ``CHURN_MAX_BATCH``).

    Returns:
        The environment.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    env.update(
        {
            "BENTOML_DO_NOT_TRACK": "True",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "BENTOML_HOME": str(store.root / "bentoml_home"),
            "CHURN_DATA": str(store.data),
            "CHURN_TRACKING_URI": store.tracking_uri,
            "CHURN_ARTIFACT_ROOT": str(store.artifact_root),
            "CHURN_MODEL_NAME": store.model_name,
            "CHURN_API_KEY": API_KEY,
            "CHURN_MODEL_POLL_SECONDS": "1",
        }
    )
    env.update(extra)
    return env


class ServiceProcess:
    """``bentoml serve serving.service:ChurnService`` on a free loopback port.

    Attributes:
        port: the port.
        url: the base URL.
        log: the file receiving the server's output.
    """

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._out = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "serving.service:ChurnService", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 150.0) -> None:
        """Wait until /readyz answers 200.

        Raises:
            RuntimeError: the process ended or did not get ready in time (with its log).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the service was not ready after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        """What the server printed so far."""
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        """Stop the server and every process it started."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._out.close()
