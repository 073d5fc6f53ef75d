"""The registered model's name comes from the dataset, in one function, the same for every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from churn.settings import load_settings, registry_model_name


@pytest.mark.parametrize(
    ("data", "name"),
    [
        ("data/crm.duckdb", "churn-radar-crm"),
        ("/srv/stores/crm.duckdb", "churn-radar-crm"),
        ("/srv/exports/Shop Nord", "churn-radar-shop-nord"),
        ("postgresql://sales:hunter2@db.local:5432/erp?schema=crm_2024", "churn-radar-erp.crm_2024"),
        ("postgresql://db.local/erp", "churn-radar-erp.public"),
    ],
)
def test_the_model_name_is_derived_from_the_store(data: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHURN_MODEL_NAME", raising=False)
    assert registry_model_name(data) == name
    assert load_settings(data=data).model_name == name
    assert "hunter2" not in name


def test_an_explicit_model_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURN_MODEL_NAME", "from-env")
    assert load_settings(data="data/crm.duckdb").model_name == "from-env"
    assert load_settings(data="data/crm.duckdb", model_name="flag").model_name == "flag"


def test_serve_looks_for_the_model_of_its_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    env.update(CHURN_API_KEY="k", CHURN_TRACKING_URI=f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}", COLUMNS="300")
    store = tmp_path / "north.duckdb"
    done = subprocess.run([sys.executable, "-m", "churn.cli", "serve", "--data", str(store), "--port", "1"], env=env, capture_output=True, text=True, timeout=120)
    said = " ".join(done.stderr.split())
    assert done.returncode == 2 and "no champion model 'churn-radar-north'" in said and f"churn train --data {store}" in said
