"""How much is there to find? Each method fitted on the very period it is judged on (an oracle, not a forecast).

For each as-of date T the labelled snapshot at T (features before T, outcome in [T, T + H)) is split
into five folds of customers; every method is fitted on four and scores the fifth, so each is judged
on outcomes from the same months it learned from. No forecast can know those months, so the spread
between the methods here bounds what a better model could gain over the baselines with these
features. Compare its margin with `churn backtest`'s.

    .venv/bin/python benchmarks/ceiling.py --data data/online_retail.duckdb --dates 2011-04-01 2011-06-01 2011-09-01
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.dataset import open_dataset
from features.labels import build_training_set
from features.registry import model_features
from training.backtest import backtest_features
from training.candidates import Context, fit_part
from training.model import ChurnModel, category_lists
from training.train import categorical_of
from training.tune import SHORT_HISTORY_TRIAL

FOLDS = 5
ROUNDS = 300
PARTS = ("recency", "bgnbd", "logistic_rfm", "lightgbm_bgnbd")


def out_of_fold(frame: pd.DataFrame, features: list[str], *, seed: int) -> dict[str, np.ndarray]:
    """Every part's out-of-fold margins over folds of customers, and their equal-vote blend.

    Args:
        frame: the labelled snapshot at one date.
        features: the model's features.
        seed: folds and LightGBM.

    Returns:
        Part name (and ``blend``) to margins, one per row.
    """
    ctx = Context(features, category_lists(frame, categorical_of(features)), seed)
    fold = np.random.default_rng(seed).permutation(len(frame)) % FOLDS
    out = {part: np.zeros(len(frame)) for part in PARTS}
    for k in range(FOLDS):
        fit, held = frame[fold != k], frame[fold == k]
        for part in PARTS:
            component = fit_part(part, fit, ctx, params=SHORT_HISTORY_TRIAL, rounds=ROUNDS)
            out[part][fold == k] = ChurnModel(features, ctx.categories, [component]).raw_score(held)
    out["blend"] = sum((m - m.mean()) / m.std() for name, m in out.items() if name in ("lightgbm_bgnbd", "logistic_rfm", "bgnbd"))
    return out


def main(argv: list[str] | None = None) -> int:
    """Print each method's cross-validated ROC-AUC per date and the best model's margin over the best baseline."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--dates", nargs="+", required=True, help="as-of dates YYYY-MM-DD")
    parser.add_argument("--horizon", type=int, default=90)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    data = open_dataset(args.data)
    rows = []
    for text in args.dates:
        t = date.fromisoformat(text)
        frame = build_training_set(data, args.horizon, dates=[t])
        features = backtest_features(data.cut(t), (), [])
        scores = out_of_fold(frame, [f for f in features if f in model_features(data)], seed=args.seed)
        y = frame["churned"].to_numpy()
        row = {"as_of": text, "customers": len(frame)} | {name: roc_auc_score(y, m) for name, m in scores.items()}
        row["margin"] = max(row["lightgbm_bgnbd"], row["blend"]) - max(row[p] for p in ("recency", "bgnbd", "logistic_rfm"))
        rows.append(row)
        print(pd.DataFrame([row]).round(4).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    print("\nROC-AUC, 5-fold cross-validated on the outcome period itself:")
    print(table.round(4).to_string(index=False))
    print(f"mean margin of the best model over the best baseline: {table['margin'].mean():+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
