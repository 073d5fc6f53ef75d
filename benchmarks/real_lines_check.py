"""The line features of `churn features` on the real Online Retail log, against the tests' independent pandas computation.

    .venv/bin/python benchmarks/real_lines_check.py --data data/online_retail.duckdb --as-of 2011-09-01

Runs `churn features` (the product's command) into a Parquet file, recomputes every line feature of
every active customer with `tests/test_features_lines.py`'s pandas reading of the raw tables, and
prints the mismatches per feature (a value off by more than 1e-9, relative).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_features_lines import LINE_FEATURES, independent_line_features  # type: ignore[import-not-found]  # noqa: E402

from churn.cli import app  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Print the customers compared and the mismatches per line feature; exit 1 on any."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "online_retail.duckdb"))
    parser.add_argument("--as-of", dest="as_of", default="2011-09-01")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "features.parquet"
        app(["features", "--data", args.data, "--as-of", args.as_of, "--out", str(out)], standalone_mode=False)
        got = pd.read_parquet(out).set_index("customer_id")
    with duckdb.connect(args.data, read_only=True) as con:
        orders, lines = con.sql("SELECT * FROM orders").df(), con.sql("SELECT * FROM order_lines").df()
    expected = independent_line_features(orders, lines, date.fromisoformat(args.as_of))
    print(f"{len(expected):,} active customers (computed independently), {len(got):,} in `churn features`; same ids: {list(expected.index) == list(got.index)}")
    bad = 0
    for name in LINE_FEATURES:
        ours, theirs = got[name].astype(float), expected[name].astype(float)
        off = ((ours - theirs).abs() > 1e-9 * (1 + theirs.abs())) & ~(ours.isna() & theirs.isna())
        bad += int(off.sum())
        print(f"{name:28s} mismatches: {int(off.sum())}")
    return 1 if bad or list(expected.index) != list(got.index) else 0


if __name__ == "__main__":
    sys.exit(main())
