"""Spark ``local[2]`` against DuckDB: the time of one snapshot on the same Parquet folder, and how Spark's time grows with the customers.

For each size (default 10,000 and 100,000 customers, 3 years) the sample is generated once as a
folder of Parquet files under ``data/bench/`` (reused afterwards); then one snapshot at the end of
the data is built on DuckDB (the folder read by the embedded engine, no row validation) and on Spark
(``open_dataset(engine="spark")``, one SparkSession for the whole run, its start-up timed apart).
Both results are compared (same customers, floats within 1e-9) before the times are printed.

Scoring inside Spark is not part of this branch yet (``churn score --engine spark`` builds the
snapshot on Spark and scores on the driver), so only snapshot times are measured.

Usage::

    CHURN_SPARK_MASTER='local[2]' .venv/bin/python benchmarks/spark_bench.py [--customers 10000 100000] [--years 3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from features.dataset import open_dataset, write_dataset
from features.sample_data import iter_sample_chunks
from features.snapshot import build_snapshot

ROOT = Path(__file__).resolve().parent.parent


def sample_folder(customers: int, years: float) -> Path:
    """The Parquet folder of the sample of ``customers`` (generated on first use)."""
    folder = ROOT / "data" / "bench" / f"sample_{customers}_{years:g}y_parquet"
    if not (folder / "orders.parquet").exists():
        write_dataset(folder, iter_sample_chunks(customers=customers, years=years, seed=42))
    return folder


def timed_snapshot(folder: Path, engine: str) -> tuple[float, pd.DataFrame]:
    """Seconds for opening ``folder`` on ``engine`` and building its snapshot at the end of the data, and the snapshot."""
    started = time.perf_counter()
    data = open_dataset(folder, validate=False, engine=engine)  # type: ignore[arg-type]
    frame = build_snapshot(data, data.end_date())
    return time.perf_counter() - started, frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--years", type=float, default=3.0)
    args = parser.parse_args()
    os.environ.setdefault("CHURN_SPARK_MASTER", "local[2]")
    from features.spark import spark_session

    started = time.perf_counter()
    spark_session()
    print(f"Spark session ({os.environ['CHURN_SPARK_MASTER']}) started in {time.perf_counter() - started:.1f} s")
    rows = []
    for customers in args.customers:
        folder = sample_folder(customers, args.years)
        duck_s, duck = timed_snapshot(folder, "auto")
        spark_s, spark = timed_snapshot(folder, "spark")
        pd.testing.assert_frame_equal(duck, spark, check_exact=False, rtol=1e-9, atol=1e-9)
        rows.append({"customers": customers, "snapshot rows": len(duck), "duckdb s": round(duck_s, 1), "spark s": round(spark_s, 1), "spark / duckdb": round(spark_s / duck_s, 1)})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    if len(table) > 1:
        first, last = table.iloc[0], table.iloc[-1]
        print(f"Spark time x{last['spark s'] / first['spark s']:.1f} for x{last['customers'] / first['customers']:.0f} customers")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
