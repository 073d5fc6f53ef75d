"""Time and peak memory of the sample data generator.

Each case runs in a fresh Python process so that its peak resident memory is its own:
5,000 customers x 3 years generated in memory (``generate_sample``), and 100,000 customers x
3 years consumed chunk by chunk (``iter_sample_chunks``), each chunk dropped after counting.

    .venv/bin/python benchmarks/generate_sample.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = (("in memory", 5_000), ("chunked", 100_000))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(mode: str, customers: int, years: float) -> dict[str, object]:
    """Generate one case in this process.

    Args:
        mode: "in memory" (``generate_sample``) or "chunked" (``iter_sample_chunks``).
        customers: number of customers.
        years: length of the window.

    Returns:
        Seconds, peak resident memory in MB (and the part present before generating), row counts.
    """
    sys.path.insert(0, str(ROOT))
    from features.sample_data import generate_sample, iter_sample_chunks

    before = _peak_mb()
    started = time.perf_counter()
    rows: dict[str, int] = {}
    if mode == "in memory":
        tables = generate_sample(customers, years=years)
        rows = {name: len(frame) for name, frame in tables.items()}
    else:
        for chunk in iter_sample_chunks(customers, years=years):
            for name, frame in chunk.items():
                rows[name] = rows.get(name, 0) + len(frame)
    seconds = time.perf_counter() - started
    return {"mode": mode, "customers": customers, "years": years, "seconds": seconds, "peak_mb": _peak_mb(), "import_mb": before, "rows": rows}


def main() -> None:
    """Run every case in its own process and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=3, metavar=("MODE", "CUSTOMERS", "YEARS"), help=argparse.SUPPRESS)
    parser.add_argument("--years", type=float, default=3.0)
    args = parser.parse_args()
    if args.case:
        mode, customers, years = args.case
        print(json.dumps(run_case(mode, int(customers), float(years))))
        return

    print(f"{'case':<28}{'seconds':>9}{'peak MB':>9}{'orders':>12}{'invoices':>12}{'complaints':>12}{'contacts':>11}")
    for mode, customers in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--case", mode, str(customers), str(args.years)],
            check=True, capture_output=True, text=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        rows = result["rows"]
        label = f"{customers:,} x {args.years:g}y {mode}"
        print(
            f"{label:<28}{result['seconds']:>9.1f}{result['peak_mb']:>9.0f}{rows['orders']:>12,}"
            f"{rows['invoices']:>12,}{rows['complaints']:>12,}{rows['contacts']:>11,}"
        )
    print("peak MB is the process's peak resident memory, including about "
          f"{result['import_mb']:.0f} MB for the interpreter, numpy, pandas and pyarrow.")


if __name__ == "__main__":
    main()
