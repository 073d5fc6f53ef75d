"""Start the service as ``bentoml serve`` with the settings in its environment (what ``churn serve`` runs).

The checks that make the service refuse to start (no API key, no champion model, a broken
playbook) run here first, so the command fails at once with the message instead of starting a
server that cannot answer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from types import FrameType

from churn.settings import PROJECT_ROOT, Settings
from serving.runtime import check_startup

SERVICE = "serving.service:ChurnService"
SERVICE_NAME = "churn"
GRACE_SECONDS = 60.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
QUIET_ENV = {"BENTOML_DO_NOT_TRACK": "True", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}


def settings_env(settings: Settings, *, poll_seconds: float | None = None) -> dict[str, str]:
    """The ``CHURN_*`` environment that gives the service process these settings.

    Args:
        settings: the settings (from CLI flags and the environment).
        poll_seconds: how often the service checks for a new champion (default: its own).

    Returns:
        Environment variables to add (the API key included when set).
    """
    env = {
        "CHURN_DATA": str(settings.data),
        "CHURN_TRACKING_URI": settings.tracking_uri,
        "CHURN_ARTIFACT_ROOT": str(settings.artifact_root),
        "CHURN_MODEL_NAME": settings.model_name,
        "CHURN_HORIZON_DAYS": str(settings.horizon_days),
        "CHURN_ACTIVE_DAYS": str(settings.active_days),
        "CHURN_MAX_BATCH": str(settings.max_batch),
        "CHURN_MAX_BODY_BYTES": str(settings.max_body_bytes),
        "CHURN_RISK_HIGH": str(settings.risk_high),
        "CHURN_RISK_MEDIUM": str(settings.risk_medium),
        **QUIET_ENV,
    }
    if settings.playbook is not None:
        env["CHURN_PLAYBOOK"] = str(settings.playbook)
    if settings.api_key is not None:
        env["CHURN_API_KEY"] = settings.api_key.get_secret_value()
    if settings.api_key_file is not None:
        env["CHURN_API_KEY_FILE"] = str(settings.api_key_file)
    if poll_seconds is not None:
        env["CHURN_MODEL_POLL_SECONDS"] = str(poll_seconds)
    return env


def serve_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``bentoml serve`` command line.

    Args:
        port: TCP port.
        host: interface to bind.

    Returns:
        The argv.
    """
    return [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port), "--working-dir", str(PROJECT_ROOT)]


def serve_environment(settings: Settings, *, workers: int = 1, poll_seconds: float | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The full environment of the server process.

    Args:
        settings: the settings.
        workers: worker processes (each holds its own copy of the model and the snapshot).
        poll_seconds: champion check interval.
        base: the environment to start from (default: this process's).

    Returns:
        The environment.
    """
    env = dict(os.environ if base is None else base)
    env.update(settings_env(settings, poll_seconds=poll_seconds))
    if workers != 1:
        env["BENTOML_CONFIG_OVERRIDES"] = json.dumps({"services": {SERVICE_NAME: {"workers": workers}}})
    return env


def serve(settings: Settings, port: int = 3000, host: str = "127.0.0.1", *, workers: int = 1, poll_seconds: float | None = None) -> int:
    """Check that the service can start, then run it in the foreground until it stops.

    SIGTERM, SIGINT (Ctrl-C) and SIGHUP are passed on to the server, which finishes the requests in
    flight and stops its workers; this process waits for that, so nothing is left holding the port.

    Args:
        settings: data, tracking URI, model name, API key, playbook, limits.
        port: TCP port.
        host: interface to bind (loopback by default).
        workers: worker processes.
        poll_seconds: champion check interval (default 30 s).

    Returns:
        The server's exit code (0 after a stop asked for by a signal).

    Raises:
        serving.runtime.StartupError: no API key or no champion model (the message says what to run).
        serving.playbook.PlaybookError: the playbook is invalid.
    """
    check_startup(settings)
    env = serve_environment(settings, workers=workers, poll_seconds=poll_seconds)
    # its own session: a Ctrl-C in the terminal reaches the server once, through this process
    process = subprocess.Popen(serve_command(port, host), env=env, start_new_session=True)
    return supervise(process)


def supervise(process: subprocess.Popen[bytes], grace_seconds: float = GRACE_SECONDS) -> int:
    """Wait for the server process, passing SIGTERM, SIGINT and SIGHUP on to it as a graceful stop.

    Args:
        process: the ``bentoml serve`` process (leader of its own process group).
        grace_seconds: how long the server may take to drain before its whole group is killed.

    Returns:
        The server's exit code; 0 when it stopped because of a forwarded signal.
    """
    stopping = threading.Event()
    killer = threading.Timer(grace_seconds, _kill_group, args=(process,))
    killer.daemon = True

    def forward(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set() or process.poll() is not None:
            return
        stopping.set()
        print(f"churn serve: {signal.Signals(signum).name}: finishing the requests in flight, then stopping", file=sys.stderr, flush=True)
        process.send_signal(signal.SIGTERM)
        killer.start()

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        code = process.wait()
    finally:
        killer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _kill_group(process)  # a worker the server left behind would keep the port
    return 0 if stopping.is_set() and code in (0, -signal.SIGTERM, 128 + signal.SIGTERM) else code


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
