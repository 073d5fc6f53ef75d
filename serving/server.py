"""Start the service as ``bentoml serve`` with the settings in its environment (what ``churn serve`` runs).

The checks that make the service refuse to start (no API key, no champion model, a broken
playbook) run here first, so the command fails at once with the message instead of starting a
server that cannot answer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from churn.settings import Settings

SERVICE = "serving.service:ChurnService"
SERVICE_NAME = "churn"
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
    from churn.settings import PROJECT_ROOT

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

    Args:
        settings: data, tracking URI, model name, API key, playbook, limits.
        port: TCP port.
        host: interface to bind (loopback by default).
        workers: worker processes.
        poll_seconds: champion check interval (default 30 s).

    Returns:
        The server's exit code.

    Raises:
        serving.runtime.StartupError: no API key or no champion model (the message says what to run).
        serving.playbook.PlaybookError: the playbook is invalid.
    """
    from serving.runtime import check_startup

    check_startup(settings)
    process = subprocess.Popen(serve_command(port, host), env=serve_environment(settings, workers=workers, poll_seconds=poll_seconds))
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m serving.server [--port P] [--host H] [--data PATH] [--workers N]``.

    Args:
        argv: arguments (default: the command line).

    Returns:
        The exit code: the server's, or 2 when it refuses to start.
    """
    from churn.settings import load_settings
    from serving.playbook import PlaybookError
    from serving.runtime import StartupError

    parser = argparse.ArgumentParser(prog="python -m serving.server", description="Serve churn risk over HTTP.")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data", default=None, help="CRM dataset (default: CHURN_DATA or the embedded store)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    settings = load_settings(data=args.data)
    try:
        return serve(settings, args.port, args.host, workers=args.workers)
    except (StartupError, PlaybookError) as err:
        print(f"churn serve: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
