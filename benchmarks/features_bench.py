"""Feature pipeline benchmark: one snapshot and a 24-snapshot training set on the 100,000-customer sample.

Generates the 3-year sample (about 10 million orders) into ``data/bench/sample_100k_3y.duckdb`` once
(reused afterwards), then times, each in a fresh process so the peak memory is its own:

- one snapshot at the end of the data, and apart from it the BG/NBD features of that snapshot;
- the training set of the 24 monthly snapshots whose labels mature last.

Beside each time it prints the floor measured in the same process just before: a plain DuckDB
group-by over the same orders (last order, order count and revenue per customer, best of five),
and the ratio to it, which means the same on a slow or a busy machine: on a machine shared with
other work the seconds vary with the load, and the ratios are the figures to compare.

Targets on a 2-core machine: snapshot < 5 s (BG/NBD < 1.5 s of it) and at most 40 times the floor,
training set < 60 s, peak RSS < 4 GB.

Usage::

    .venv/bin/python benchmarks/features_bench.py [--customers 100000] [--years 3] [--snapshots 24]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from features.dataset import CRMDataset, open_dataset, write_dataset
from features.labels import build_training_set, snapshot_dates
from features.sample_data import iter_sample_chunks
from features.snapshot import add_btyd_features, build_snapshot, shared_history, snapshot_expr

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "data" / "bench"
TARGETS = {"snapshot": 5.0, "btyd": 1.5, "training_set": 60.0}
SNAPSHOT_FLOOR_RATIO = 40.0
PEAK_TARGET_GB = 4.0
FLOOR_SQL = "SELECT customer_id, max(order_date), count(*), sum(amount) FROM orders WHERE order_date < ? GROUP BY customer_id"


def sample_path(customers: int, years: float) -> Path:
    """Where the sample with this size lives."""
    return BENCH_DIR / f"sample_{customers // 1000}k_{years:g}y.duckdb"


def ensure_sample(customers: int, years: float) -> Path:
    """Generate the sample into a DuckDB file unless it is there already.

    Args:
        customers: number of customers.
        years: years of history.

    Returns:
        The DuckDB file.
    """
    path = sample_path(customers, years)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.duckdb")
    partial.unlink(missing_ok=True)
    started = time.perf_counter()
    counts = write_dataset(partial, iter_sample_chunks(customers=customers, years=years, chunk_size=5000))
    partial.rename(path)
    print(f"generated {path} in {time.perf_counter() - started:.0f} s: {counts}", flush=True)
    return path


def cpu_seconds() -> float:
    """User plus system CPU time of this process (all engine threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_gb() -> float:
    """Peak resident memory of this process, in GB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def floor_seconds(data: CRMDataset, as_of: date, repeats: int = 5) -> float:
    """The best of ``repeats`` runs of a plain DuckDB group-by over the orders before ``as_of``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        data.con.con.execute(FLOOR_SQL, [as_of]).arrow()
        best = min(best, time.perf_counter() - started)
    return best


def btyd_seconds(data: CRMDataset, as_of: date) -> float:
    """Seconds for the BG/NBD features of the snapshot at ``as_of`` (summary query, fit, figures)."""
    with shared_history(data, as_of) as shared:
        frame = snapshot_expr(data, as_of, 365, shared).to_pandas()
        started = time.perf_counter()
        add_btyd_features(frame, data, as_of, None if shared is None else shared.gaps)
        return time.perf_counter() - started


def run_case(case: str, path: Path, snapshots: int) -> dict[str, object]:
    """Time one case in this process, with the floor of this process.

    Args:
        case: "snapshot" or "training_set".
        path: the DuckDB sample.
        snapshots: snapshots in the training set.

    Returns:
        Seconds, the floor, peak RSS and the frame's shape (and the BG/NBD seconds of a snapshot).
    """
    data = open_dataset(path, validate=False)
    end = data.end_date()
    floor = floor_seconds(data, end)
    started, cpu_started = time.perf_counter(), cpu_seconds()
    if case == "snapshot":
        frame = build_snapshot(data, end)
    else:
        dates = snapshot_dates(data.start_date(), end, 90, "monthly")[-snapshots:]
        frame = build_training_set(data, horizon_days=90, dates=dates)
    seconds = time.perf_counter() - started
    result: dict[str, object] = {
        "case": case,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds() - cpu_started, 2),
        "floor_seconds": round(floor, 3),
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "rows": len(frame),
        "columns": frame.shape[1],
        "snapshots": int(frame["as_of"].nunique()),
    }
    if case == "snapshot":
        result["btyd_seconds"] = round(btyd_seconds(data, end), 2)
    return result


def report(result: dict[str, Any]) -> bool:
    """Print one case's line; whether it met its targets."""
    case = result["case"]
    ratio = result["seconds"] / result["floor_seconds"]
    met = result["seconds"] < TARGETS[case] and result["peak_rss_gb"] < PEAK_TARGET_GB
    extra = ""
    if case == "snapshot":
        met &= ratio <= SNAPSHOT_FLOOR_RATIO and result["btyd_seconds"] < TARGETS["btyd"]
        extra = f"  BG/NBD {result['btyd_seconds']:.2f} s (target < {TARGETS['btyd']} s)  ratio target <= {SNAPSHOT_FLOOR_RATIO:.0f}"
    print(
        f"{case:13s} {result['seconds']:7.2f} s  floor {result['floor_seconds']:.3f} s  ratio {ratio:5.0f}  (CPU {result['cpu_seconds']:.1f} s)  "
        f"peak RSS {result['peak_rss_gb']:.2f} GB  {result['snapshots']} snapshot(s), {result['rows']:,} rows x {result['columns']} columns  "
        f"(target < {TARGETS[case]:.0f} s, < {PEAK_TARGET_GB:.0f} GB{extra}: {'met' if met else 'MISSED'})",
        flush=True,
    )
    return met


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per case.

    Args:
        argv: command-line arguments.

    Returns:
        0 when every target is met, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--years", type=float, default=3.0)
    parser.add_argument("--snapshots", type=int, default=24)
    parser.add_argument("--case", choices=["snapshot", "training_set"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    path = ensure_sample(args.customers, args.years)
    if args.case:
        print(json.dumps(run_case(args.case, path, args.snapshots)))
        return 0
    ok = True
    for case in ("snapshot", "training_set"):
        cmd = [sys.executable, __file__, "--customers", str(args.customers), "--years", str(args.years), "--snapshots", str(args.snapshots), "--case", case]
        ok &= report(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]))
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    busy = ": other work shares the machine, so compare the ratios to the floor, not the seconds" if load > cpus / 2 else ""
    print(f"sample: {path}; load average {load:.1f} on {cpus} CPUs ({date.today()}){busy}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
