"""Run hygiene in a real MLflow store: a run a killed `churn train` left RUNNING is marked FAILED on the next start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from training.register import ensure_experiment, tracking
from training.tracking import UNTAGGED_STALE_SECONDS, fail_abandoned_runs, owner_tags


def test_runs_of_gone_processes_are_marked_failed_and_live_ones_kept(tmp_path: Path) -> None:
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    with tracking(uri) as client:
        experiment = ensure_experiment(client, "churn/test", tracking_uri=uri, artifact_root=tmp_path / "artifacts")
        killed = client.create_run(experiment, tags={"churn.host": socket.gethostname(), "churn.pid": gone.stdout.strip()}).info.run_id
        live = client.create_run(experiment, tags=owner_tags()).info.run_id
        elsewhere = client.create_run(experiment, tags={"churn.host": "another-host", "churn.pid": "1"}).info.run_id
        untagged = client.create_run(experiment).info.run_id
        finished = client.create_run(experiment, tags={"churn.host": socket.gethostname(), "churn.pid": gone.stdout.strip()}).info.run_id
        client.set_terminated(finished, status="FINISHED")

        assert fail_abandoned_runs(client, experiment) == [killed]
        assert fail_abandoned_runs(client, experiment, now=time.time() + UNTAGGED_STALE_SECONDS + 60) == [untagged]
        status = {run_id: client.get_run(run_id).info.status for run_id in (killed, live, elsewhere, untagged, finished)}
    assert status == {killed: "FAILED", live: "RUNNING", elsewhere: "RUNNING", untagged: "FAILED", finished: "FINISHED"}
    assert owner_tags()["churn.pid"] == str(os.getpid())
