"""`churn features` on a past as-of date: later rows are history to cut, not bad input."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd

from features.dataset import open_dataset, write_dataset
from features.sample_data import generate_sample
from features.snapshot import build_snapshot

CHURN = Path(sys.executable).with_name("churn")


def test_snapshot_at_a_past_date_through_the_cli(tmp_path: Path) -> None:
    store = tmp_path / "crm.duckdb"
    write_dataset(store, generate_sample(customers=200, years=2, seed=3, end=date(2025, 12, 31)))
    out = tmp_path / "snapshot.csv"
    done = subprocess.run(
        [CHURN, "features", "--data", str(store), "--as-of", "2025-06-01", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "features" in done.stdout and "missing" in done.stdout
    got = pd.read_csv(out)
    ds = open_dataset(store)
    want = build_snapshot(ds, date(2025, 6, 1))
    ds.close()
    assert len(got) == len(want) > 0
    assert list(got.columns) == list(want.columns)
    assert (pd.to_datetime(got["as_of"]) == pd.Timestamp("2025-06-01")).all()


def test_bad_output_suffix_is_a_clear_message(tmp_path: Path) -> None:
    store = tmp_path / "crm.duckdb"
    write_dataset(store, generate_sample(customers=50, years=1, seed=3))
    done = subprocess.run([CHURN, "features", "--data", str(store), "--out", str(tmp_path / "x.xlsx")], capture_output=True, text=True)
    assert done.returncode == 2
    assert "--out must end in .parquet or .csv" in done.stderr and "Traceback" not in done.stderr


def test_out_of_range_setting_names_the_field_and_variable(tmp_path: Path) -> None:
    done = subprocess.run([CHURN, "train", "--data", str(tmp_path / "none.duckdb"), "--horizon", "900"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "horizon_days (flag or CHURN_HORIZON_DAYS)" in done.stderr and "730" in done.stderr
    assert "Traceback" not in done.stderr
