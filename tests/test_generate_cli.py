"""`churn generate` writes the same data for the same seed into a folder, DuckDB and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.contract import TABLES
from features.dataset import open_dataset

CHURN = Path(sys.executable).with_name("churn")
ARGS = ["--customers", "150", "--years", "1.5", "--seed", "7"]


def _generate(target: str, *extra: str) -> None:
    done = subprocess.run([CHURN, "generate", *ARGS, "--out", target, *extra], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "orders" in done.stdout


def _frames(location: str) -> dict[str, pd.DataFrame]:
    ds = open_dataset(location)
    out = {}
    for name, table in ds.tables.items():
        frame = table.to_pandas()
        key = [c for c in TABLES[name].columns if c in frame.columns]
        out[name] = frame.sort_values(key).reset_index(drop=True)
    return out


@pytest.mark.postgres
def test_same_seed_same_data_in_every_store(tmp_path: Path, pg_url: str) -> None:
    folder, csv_folder, db = tmp_path / "crm", tmp_path / "crm_csv", tmp_path / "crm.duckdb"
    _generate(str(folder))
    _generate(str(csv_folder), "--format", "csv")
    _generate(str(db))
    _generate(pg_url)
    reference = _frames(str(db))
    assert set(reference) == set(TABLES)
    assert len(reference["orders"]) > 1000
    for location in (folder, csv_folder, pg_url):
        got = _frames(str(location))
        for name in reference:
            pd.testing.assert_frame_equal(got[name], reference[name], check_dtype=False, obj=f"{location}:{name}")


def test_other_seed_other_data(tmp_path: Path) -> None:
    _generate(str(tmp_path / "a.duckdb"))
    done = subprocess.run([CHURN, "generate", "--customers", "150", "--years", "1.5", "--seed", "8", "--out", str(tmp_path / "b.duckdb")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert open_dataset(tmp_path / "a.duckdb").fingerprint() != open_dataset(tmp_path / "b.duckdb").fingerprint()


def test_bad_target_is_a_clear_message(tmp_path: Path) -> None:
    done = subprocess.run([CHURN, "generate", *ARGS, "--out", "mysql://nowhere/db"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "unsupported database URL" in done.stderr and "Traceback" not in done.stderr
