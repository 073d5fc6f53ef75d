"""The exploration notebook runs top to bottom (on a generated sample, training into a temporary store)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "explore.ipynb"
KERNEL_NAME = "churn-radar-test"


def _kernelspec(folder: Path) -> Path:
    """A kernelspec running ipykernel with this very interpreter, in a private Jupyter data folder."""
    spec = folder / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "churn-radar (test)",
            "language": "python",
        })
    )
    return folder


@pytest.mark.slow
def test_explore_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    jupyter_data = _kernelspec(tmp_path / "jupyter")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # The kernel inherits this environment: no store at CHURN_DATA (so the notebook generates its
    # sample), temporary files under tmp_path, the private kernelspec, no telemetry.
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_data))
    monkeypatch.setenv("CHURN_DATA", str(tmp_path / "no-store-here.duckdb"))
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CHURN_TRACKING_URI", raising=False)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=300,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    started = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - started
    nbformat.write(nb, tmp_path / "explore.executed.ipynb")

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 8, f"expected the distribution, evaluation and reason plots, got {len(images)} images"
    text = "\n".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "a generated sample" in text
    assert "trained here" in text
    assert "notebook ran in" in text
    # nothing was written next to the project: the generated store lives in the scratch folder
    assert not Path(os.environ["CHURN_DATA"]).exists()
    assert any(scratch.glob("churn-explore-*/crm.duckdb"))
    print(f"notebook ran in {elapsed:.0f} s")
