"""Our model against the simple baselines on real data: the UCI "Online Retail" log, by `churn backtest`.

A thin call of the product's own commands, so there is one training path: `churn import` turns the
invoice lines into the orders and customers tables (once, into data/online_retail.duckdb), then
`churn backtest` trains as of each month (nothing on or after it read), scores and compares with
what happened. The table goes to benchmarks/results/real_data.csv and .md, the run to MLflow.

    .venv/bin/python benchmarks/real_data.py                  # 2011-04-01 to 2011-09-01, monthly, 10 trials
    .venv/bin/python benchmarks/real_data.py --ablate lines   # also without a feature group
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

from churn.cli import app  # noqa: E402
from features.importer import ONLINE_RETAIL_COLUMNS  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "online_retail.parquet"
STORE = ROOT / "data" / "online_retail.duckdb"
RESULTS = ROOT / "benchmarks" / "results"
FLAGS = {"customer_col": "--customer-col", "date_col": "--date-col", "order_col": "--order-col", "quantity_col": "--quantity-col", "price_col": "--price-col", "country_col": "--country-col", "product_col": "--product-col"}


def churn(*args: str) -> None:
    """Run one `churn` command in this process; stop on failure."""
    try:
        app(list(args), standalone_mode=False)
    except SystemExit as done:
        if done.code:
            raise


def to_markdown(table: pd.DataFrame, command: str, seconds: float) -> str:
    """The backtest table as Markdown, with the command and its wall time."""
    lines = [
        f"Reproduce: `{command}` ({seconds / 60:.1f} min)", "",
        "| as of | subset | method | customers | churn | ROC-AUC | PR-AUC | Brier | lift@10% | ROC-AUC margin (95%) | PR-AUC margin (95%) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for _, r in table.iterrows():
        margin = {m: "" if pd.isna(r.get(f"margin_{m}")) else f"{r[f'margin_{m}']:+.3f} ({r[f'margin_{m}_low']:+.3f}, {r[f'margin_{m}_high']:+.3f})" for m in ("roc_auc", "pr_auc")}
        method = f"model ({r['chosen']})" if r["method"] == "model" else r["method"]
        lines.append(
            f"| {r['as_of']} | {r['subset']} | {method} | {r['customers']:,} | {r['churn_rate']:.3f} | {r['roc_auc']:.3f} | {r['pr_auc']:.3f} | "
            f"{r['brier']:.3f} | {r['lift_top10']:.2f} | {margin['roc_auc']} | {margin['pr_auc']} |"
        )
    return "\n".join(lines) + "\n"


def _has_lines(store: Path) -> bool:
    """Whether the store exists and holds the order lines (an import by an earlier version does not)."""
    if not store.exists():
        return False
    with duckdb.connect(str(store), read_only=True) as con:
        return "order_lines" in {row[0] for row in con.execute("SHOW TABLES").fetchall()}


def main(argv: list[str] | None = None) -> int:
    """Import the log once, run the backtest, write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the Online Retail file")
    parser.add_argument("--from", dest="start", default="2011-04-01")
    parser.add_argument("--to", dest="end", default="2011-09-01")
    parser.add_argument("--trials", default="10")
    parser.add_argument("--ablate", action="append", default=[], help="feature or registry group to leave out in a second training")
    args = parser.parse_args(argv)
    if not _has_lines(STORE):
        STORE.parent.mkdir(parents=True, exist_ok=True)
        mapping = [part for key, flag in FLAGS.items() for part in (flag, ONLINE_RETAIL_COLUMNS[key])]
        churn("import", "--transactions", str(args.data), *mapping, "--out", str(STORE))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "real_data.csv"
    command = ["backtest", "--data", str(STORE), "--from", args.start, "--to", args.end, "--every", "1M", "--trials", args.trials, "--out", str(out)]
    command += [part for name in args.ablate for part in ("--ablate", name)]
    started = time.perf_counter()
    churn(*command)
    seconds = time.perf_counter() - started
    shown = "churn " + " ".join(command).replace(str(ROOT) + "/", "")
    (RESULTS / "real_data.md").write_text(to_markdown(pd.read_csv(out), shown, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
