"""Our model against the classical baselines on real data: the UCI "Online Retail" log of a UK gift wholesaler.

The log is imported through :mod:`features.importer` (invoice lines with a customer id become
orders, cancellations become returns). For each as-of date T the population is every customer with
an order in the 365 days before T, the label is "no order in [T, T + 90 days)", and three scores
are compared on the same customers and labels, each seeing nothing dated on or after T:

- the recency rule: days since the last order, turned into a probability by a logistic fit of the
  churn label on ``log1p(days)`` at T - 90 days (the latest snapshot whose label is known at T);
- BG/NBD: the modified BG/NBD of :mod:`features.btyd` (penalizer 0.1, time in weeks, repeat
  order days), fitted on every customer's orders before T, scored by P(no order in the 90 days);
- our model: ``training.train.train(..., as_of=T)`` into a temporary MLflow store, the registered
  champion loaded back, and the snapshot at T scored with it. With a few months of history the
  training takes weekly snapshots from 28 days after the first order, falls back to five folds of
  customers (``evaluation: customer-cv``) and starts the booster from the BG/NBD prior.

    .venv/bin/python benchmarks/real_data.py            # the table in benchmarks/results/real_data.md
    .venv/bin/python benchmarks/real_data.py --skip-model  # the baselines only (seconds)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

from features.importer import ONLINE_RETAIL_COLUMNS, ImportResult, import_transactions  # noqa: E402
from features.btyd import btyd_features  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "online_retail.parquet"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "real_data.md"
AS_OF_DATES = (date(2011, 6, 1), date(2011, 7, 1), date(2011, 8, 1), date(2011, 9, 1))
HORIZON_DAYS = 90
ACTIVE_DAYS = 365
BTYD_SETTINGS = {"variant": "mbgnbd", "penalizer": 0.1, "time_unit_days": 7.0, "count_by": "day"}
BASELINES = ("recency rule", "BG/NBD")
PROTOTYPE = "prototype: LightGBM on the BG/NBD prior"


@dataclass
class Scores:
    """The scores of one method at one as-of date.

    Attributes:
        proba: churn probability per customer of the population (NaN where the method has none).
        note: what the method did (parameters, convergence, failures).
        extra: further per-customer scores (BG/NBD: ``expected`` orders in the horizon).
    """

    proba: pd.Series | None
    note: str = ""
    extra: dict[str, pd.Series] = field(default_factory=dict)


def load_orders(path: Path) -> ImportResult:
    """Import the Online Retail log through the importer.

    Args:
        path: the Parquet (or CSV/Excel) file with the UCI columns.

    Returns:
        The orders and customers tables and the import report.
    """
    return import_transactions(path, **ONLINE_RETAIL_COLUMNS)


def population_and_labels(orders: pd.DataFrame, as_of: date, horizon_days: int = HORIZON_DAYS, active_days: int = ACTIVE_DAYS) -> pd.DataFrame:
    """Customers with an order in the ``active_days`` before T, their recency and their label.

    Args:
        orders: the contract's orders (returns have a negative amount and are no orders).
        as_of: T.
        horizon_days: H; churned = no order in [T, T + H).
        active_days: the activity window.

    Returns:
        Indexed by ``customer_id`` (sorted): ``days_since_last_order`` and ``churned`` (0/1).
    """
    t = pd.Timestamp(as_of)
    placed = orders.loc[orders["amount"] > 0, ["customer_id", "order_date"]]
    before = placed[(placed["order_date"] < t) & (placed["order_date"] >= t - pd.Timedelta(days=active_days))]
    last = before.groupby("customer_id")["order_date"].max().sort_index()
    after = placed[(placed["order_date"] >= t) & (placed["order_date"] < t + pd.Timedelta(days=horizon_days))]
    ordered_again = last.index.isin(after["customer_id"].unique())
    return pd.DataFrame({"days_since_last_order": (t - last).dt.days.astype(float), "churned": (~ordered_again).astype(int)}, index=last.index)


def recency_rule(orders: pd.DataFrame, as_of: date, horizon_days: int = HORIZON_DAYS) -> Scores:
    """Days since the last order, as a probability fitted on the latest snapshot labelled before T.

    Args:
        orders: the orders.
        as_of: T.
        horizon_days: H.

    Returns:
        The probabilities for the population at T.
    """
    now = population_and_labels(orders, as_of, horizon_days)
    earlier = as_of - timedelta(days=horizon_days)
    past = population_and_labels(orders[orders["order_date"] < pd.Timestamp(as_of)], earlier, horizon_days)
    fit = LogisticRegression(C=1e6).fit(np.log1p(past[["days_since_last_order"]].to_numpy()), past["churned"].to_numpy())
    proba = fit.predict_proba(np.log1p(now[["days_since_last_order"]].to_numpy()))[:, 1]
    return Scores(pd.Series(proba, index=now.index), f"logistic on log1p(days) fitted at {earlier} ({len(past):,} customers)")


def btyd_baseline(orders: pd.DataFrame, as_of: date, customers: pd.Index, horizon_days: int = HORIZON_DAYS) -> Scores:
    """The modified BG/NBD's P(no order in the horizon) for the population.

    Args:
        orders: the orders (the fit reads only those before T).
        as_of: T.
        customers: the population.
        horizon_days: H.

    Returns:
        The probabilities, with the fitted parameters in the note and ``auc_expected`` (the ROC-AUC
        of ranking by fewest expected orders instead) in ``extra``.
    """
    feats = btyd_features(orders, as_of, horizon_days, customers=customers, **BTYD_SETTINGS)  # type: ignore[arg-type]
    p = feats.attrs["params"]
    note = (
        f"r={p.r:.3f} alpha={p.alpha:.2f} a={p.a:.2g} b={p.b:.2g}; "
        + ("converged" if feats.attrs["converged"] else "did NOT converge")
        + (f" at the boundary ({', '.join(feats.attrs['boundary'])}: the drop-out process vanishes, the NBD limit)" if feats.attrs["boundary"] else "")
    )
    return Scores(feats[f"btyd_p_no_order_{horizon_days}d"], note, {"expected": feats[f"btyd_expected_orders_{horizon_days}d"]})


def model_scores(result: ImportResult, as_of: date, store: Path, *, trials: int, timeout_s: float, seed: int, horizon_days: int = HORIZON_DAYS) -> Scores:
    """Train our model as of T (a fresh registered model in a temporary store) and score the snapshot at T.

    Args:
        result: the imported tables.
        as_of: T.
        store: folder for the temporary MLflow store.
        trials: Optuna trials.
        timeout_s: Optuna time budget.
        seed: random seed.
        horizon_days: H.

    Returns:
        The calibrated churn probabilities of the population at T, or no scores and the reason.
    """
    from features.dataset import CRMDataset, DataError
    from features.snapshot import build_snapshot
    from training.register import load_model
    from training.train import train

    data = CRMDataset.from_frames(result.frames(), as_of=date(2100, 1, 1))
    tracking_uri = f"sqlite:///{(store / 'mlflow.db').as_posix()}"
    name = f"retail-{as_of.isoformat()}"
    started = time.perf_counter()
    try:
        trained = train(
            data, horizon_days=horizon_days, trials=trials, timeout_s=timeout_s, as_of=as_of, seed=seed,
            tracking_uri=tracking_uri, artifact_root=str(store / "artifacts"), model_name=name,
        )
    except DataError as err:
        return Scores(None, f"training failed: {err}")
    loaded = load_model(tracking_uri, name)
    snapshot = build_snapshot(data, as_of, active_days=ACTIVE_DAYS)
    proba = pd.Series(loaded.model.predict_proba(snapshot), index=snapshot["customer_id"].astype(str).to_numpy())
    split = trained.split
    meta = loaded.model.metadata
    note = (
        f"{split.get('train_rows', '?'):,} training rows over {split.get('train_snapshots', '?')} snapshot dates "
        f"({split.get('train_first')} to {split.get('train_last')}), {len(loaded.model.feature_names)} features, "
        f"evaluation {meta.get('evaluation')} (out-of-fold PR-AUC {trained.metrics['pr_auc']:.3f}), "
        f"BG/NBD prior {'on' if meta.get('btyd_prior') else 'off'}, {trained.tuning.get('trees')} trees "
        f"(folds {trained.tuning.get('fold_trees')}), {trained.tuning.get('trials_complete')} complete and "
        f"{trained.tuning.get('trials_pruned')} pruned trials, {time.perf_counter() - started:.0f} s"
    )
    return Scores(proba, note)


PROTOTYPE_PARAMS = {
    "objective": "binary", "learning_rate": 0.03, "num_leaves": 7, "min_data_in_leaf": 100, "feature_fraction": 0.8,
    "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 5.0, "deterministic": True, "force_row_wise": True,
    "num_threads": 2, "verbosity": -1,
}
PROTOTYPE_WARMUP_DAYS = 28
PROTOTYPE_FOLDS = 5


def prototype_scores(result: ImportResult, as_of: date, *, seed: int, horizon_days: int = HORIZON_DAYS) -> Scores:
    """The training change recommended for short histories, prototyped: LightGBM boosted from the BG/NBD prior.

    Weekly labelled snapshots from 28 days after the first order to T - H (every label matured at
    T), the registry's features plus the BTYD figures of each snapshot date; the booster starts
    from ``logit(btyd_p_no_order)`` (``init_score``) and learns corrections to it. Five boosters are
    cross-fitted on folds of customers (not of dates: with overlapping label windows a later date of
    the same customers rewards memorising them), each early-stopped on its held-out customers; their
    margins are averaged and Platt-calibrated on the out-of-fold margins.

    Args:
        result: the imported tables.
        as_of: T.
        seed: random seed.
        horizon_days: H.

    Returns:
        Calibrated churn probabilities for the population at T.
    """
    import lightgbm as lgb
    from scipy.special import logit

    from features.dataset import CRMDataset
    from features.registry import CATEGORICAL, model_features
    from features.snapshot import build_snapshot, build_training_set
    from features.btyd import btyd_feature_names

    started = time.perf_counter()
    data = CRMDataset.from_frames(result.frames(), as_of=date(2100, 1, 1))
    known = data.cut(as_of)
    first = known.start_date()
    dates = []
    t = as_of - timedelta(days=horizon_days)
    while t >= first + timedelta(days=PROTOTYPE_WARMUP_DAYS):
        dates.append(t)
        t -= timedelta(days=7)
    dates = dates[::-1]
    train = build_training_set(known, horizon_days, as_of=as_of, dates=dates)
    snapshot = build_snapshot(data, as_of, active_days=ACTIVE_DAYS)
    btyd_cols = btyd_feature_names(horizon_days)

    features = [f for f in model_features(known) if f not in CATEGORICAL and f not in btyd_cols] + btyd_cols
    prior = lambda f: logit(np.clip(f[btyd_cols[2]].to_numpy(dtype=float), 1e-6, 1 - 1e-6))  # noqa: E731
    customers = np.sort(train["customer_id"].unique())
    fold_of = dict(zip(customers, np.random.default_rng(seed).permutation(len(customers)) % PROTOTYPE_FOLDS, strict=True))
    fold = train["customer_id"].map(fold_of).to_numpy()
    params = PROTOTYPE_PARAMS | {"seed": seed}
    out_of_fold = np.zeros(len(train))
    margins = []
    trees = []
    for k in range(PROTOTYPE_FOLDS):
        fit_rows, held_rows = train[fold != k], train[fold == k]
        booster = lgb.train(
            params, lgb.Dataset(fit_rows[features], fit_rows["churned"], init_score=prior(fit_rows)), 1000,
            valid_sets=[lgb.Dataset(held_rows[features], held_rows["churned"], init_score=prior(held_rows))],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        trees.append(booster.best_iteration)
        out_of_fold[fold == k] = booster.predict(held_rows[features], raw_score=True, num_iteration=booster.best_iteration) + prior(held_rows)
        margins.append(booster.predict(snapshot[features], raw_score=True, num_iteration=booster.best_iteration))
    calibrator = LogisticRegression(C=1e6).fit(out_of_fold.reshape(-1, 1), train["churned"])
    margin = np.mean(margins, axis=0) + prior(snapshot)
    proba = calibrator.predict_proba(margin.reshape(-1, 1))[:, 1]
    rounds = f"{PROTOTYPE_FOLDS} cross-fitted boosters of {min(trees)}-{max(trees)}"
    note = (
        f"{len(train):,} training rows over {len(dates)} weekly snapshot dates ({dates[0]} to {dates[-1]}), "
        f"{len(features)} features, {rounds} trees, {time.perf_counter() - started:.0f} s"
    )
    return Scores(pd.Series(proba, index=snapshot["customer_id"].astype(str).to_numpy()), note)


def paired_bootstrap(y: np.ndarray, ours: np.ndarray, theirs: np.ndarray, *, draws: int = 1000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% intervals of the ROC-AUC and PR-AUC differences (ours - theirs) over resampled customers.

    Args:
        y: 0/1 labels.
        ours: our scores.
        theirs: the baseline's scores on the same customers.
        draws: bootstrap resamples.
        seed: random seed.

    Returns:
        ``{"roc_auc": (low, high), "pr_auc": (low, high)}``.
    """
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[float]] = {"roc_auc": [], "pr_auc": []}
    for _ in range(draws):
        idx = rng.integers(0, len(y), len(y))
        if not 0 < y[idx].sum() < len(idx):
            continue
        diffs["roc_auc"].append(roc_auc_score(y[idx], ours[idx]) - roc_auc_score(y[idx], theirs[idx]))
        diffs["pr_auc"].append(average_precision_score(y[idx], ours[idx]) - average_precision_score(y[idx], theirs[idx]))
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in diffs.items()}


def metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC (churn positive), lift in the top 10% and Brier score.

    Args:
        y: 0/1 churn labels.
        proba: churn probabilities (higher = riskier).

    Returns:
        ``roc_auc``, ``pr_auc``, ``lift_top10``, ``brier``.
    """
    order = np.argsort(-proba, kind="stable")
    k = max(1, int(round(0.10 * len(y))))
    return {
        "roc_auc": float(roc_auc_score(y, proba)),
        "pr_auc": float(average_precision_score(y, proba)),
        "lift_top10": float(y[order[:k]].mean() / y.mean()),
        "brier": float(brier_score_loss(y, np.clip(proba, 0.0, 1.0))),
    }


def run(
    data_path: Path = DEFAULT_DATA,
    dates: tuple[date, ...] = AS_OF_DATES,
    *,
    with_model: bool = True,
    with_prototype: bool = False,
    trials: int = 20,
    timeout_s: float = 300.0,
    seed: int = 42,
    say=print,
) -> tuple[pd.DataFrame, list[str]]:
    """Compute the comparison table.

    Args:
        data_path: the transactions file.
        dates: the as-of dates.
        with_model: also train and score our model (minutes); otherwise the baselines only.
        with_prototype: also score the prototype of the recommended training change.
        trials: Optuna trials per training run.
        timeout_s: Optuna time budget per training run.
        seed: random seed.
        say: progress printer.

    Returns:
        One row per (T, method) with customers, churn share and the metrics, and notes per run.
    """
    imported = load_orders(data_path)
    report = imported.report
    notes = [
        f"import: {report.lines_read:,} lines read, {report.lines_used:,} used, "
        + ", ".join(f"{n:,} dropped ({why})" for why, n in report.dropped.items())
        + f"; {report.orders:,} orders of which {report.returns:,} returns; {report.customers:,} customers"
    ]
    orders = imported.orders
    rows = []
    with tempfile.TemporaryDirectory(prefix="churn-bench-") as tmp:
        for t in dates:
            truth = population_and_labels(orders, t)
            y = truth["churned"].to_numpy()
            say(f"{t}: {len(truth):,} customers, churn share {y.mean():.3f}")
            methods: dict[str, Scores] = {"recency rule": recency_rule(orders, t), "BG/NBD": btyd_baseline(orders, t, truth.index)}
            if with_model:
                try:
                    methods["our model"] = model_scores(imported, t, Path(tmp), trials=trials, timeout_s=timeout_s, seed=seed)
                except Exception as err:  # noqa: BLE001 - report any failure of the model in the table notes
                    methods["our model"] = Scores(None, f"failed: {type(err).__name__}: {err}")
                    say(traceback.format_exc())
            if with_prototype:
                methods[PROTOTYPE] = prototype_scores(imported, t, seed=seed)
            aligned: dict[str, np.ndarray] = {}
            for name, scores in methods.items():
                notes.append(f"{t} {name}: {scores.note}")
                row: dict[str, object] = {"as_of": t.isoformat(), "method": name, "customers": len(truth), "churn_share": float(y.mean())}
                if scores.proba is None:
                    rows.append(row | {"roc_auc": np.nan, "pr_auc": np.nan, "lift_top10": np.nan, "brier": np.nan})
                    continue
                proba = scores.proba.reindex(truth.index)
                missing = int(proba.isna().sum())
                if missing:
                    notes.append(f"{t} {name}: {missing} customers of the population had no score")
                row |= metrics(y[proba.notna().to_numpy()], proba.dropna().to_numpy())
                aligned[name] = proba.to_numpy()
                if "expected" in scores.extra:
                    expected = scores.extra["expected"].reindex(truth.index).to_numpy()
                    row["roc_auc_expected_orders"] = float(roc_auc_score(y, -expected))
                    row["pr_auc_expected_orders"] = float(average_precision_score(y, -expected))
                rows.append(row)
                say(f"  {name:>13}: " + " ".join(f"{k}={row[k]:.3f}" for k in ("roc_auc", "pr_auc", "lift_top10", "brier")))
            for row in rows[-len(methods):]:
                name = str(row["method"])
                if name in BASELINES or name not in aligned or np.isnan(aligned[name]).any():
                    continue
                for metric in ("roc_auc", "pr_auc"):
                    best = max(BASELINES, key=lambda b: next(r[metric] for r in rows[-len(methods):] if r["method"] == b))
                    low, high = paired_bootstrap(y, aligned[name], aligned[best], seed=seed)[metric]
                    row[f"{metric}_margin_ci"] = f"{low:+.3f} to {high:+.3f} vs {best}"
    return pd.DataFrame(rows), notes


def to_markdown(table: pd.DataFrame, notes: list[str], *, command: str) -> str:
    """The comparison as Markdown: one row per as-of date and method, the winner's margin, and notes.

    Args:
        table: the output of :func:`run`.
        notes: notes from :func:`run`.
        command: the command that reproduces the table.

    Returns:
        The Markdown text.
    """
    lines = [
        "| T | method | customers | churn share | ROC-AUC | PR-AUC | lift top 10% | Brier |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    fmt = lambda v: "n/a" if pd.isna(v) else f"{v:.3f}"  # noqa: E731
    for _, r in table.iterrows():
        lines.append(
            f"| {r['as_of']} | {r['method']} | {r['customers']:,} | {r['churn_share']:.3f} | "
            f"{fmt(r['roc_auc'])} | {fmt(r['pr_auc'])} | {fmt(r['lift_top10'])} | {fmt(r['brier'])} |"
        )
    out = ["# Real data: our model against the baselines (UCI Online Retail)", "", f"Reproduce: `{command}`", "", *lines, ""]
    candidates = [m for m in dict.fromkeys(table["method"]) if m not in BASELINES]
    if candidates:
        out += [
            "## Margins over the better baseline at each T (95% paired bootstrap intervals over customers)",
            "",
            "| T | method | ROC-AUC | PR-AUC | beats both |",
            "|---|---|---|---|---|",
        ]
        for t, group in table.groupby("as_of", sort=True):
            by = group.set_index("method")
            base = by.loc[[m for m in BASELINES if m in by.index]]
            for name in candidates:
                if name not in by.index or pd.isna(by.loc[name, "roc_auc"]):
                    out.append(f"| {t} | {name} | n/a | n/a | no scores |")
                    continue
                d_roc = by.loc[name, "roc_auc"] - base["roc_auc"].max()
                d_pr = by.loc[name, "pr_auc"] - base["pr_auc"].max()
                ci = lambda m: f" ({by.loc[name, f'{m}_margin_ci']})" if f"{m}_margin_ci" in by.columns and isinstance(by.loc[name, f"{m}_margin_ci"], str) else ""  # noqa: E731
                out.append(f"| {t} | {name} | {d_roc:+.3f}{ci('roc_auc')} | {d_pr:+.3f}{ci('pr_auc')} | {'yes' if d_roc > 0 and d_pr > 0 else 'NO'} |")
        out.append("")
    if "roc_auc_expected_orders" in table.columns:
        btyd = table[table["method"] == "BG/NBD"]
        pairs = ", ".join(f"{r['as_of']} {r['roc_auc_expected_orders']:.3f} / {r['pr_auc_expected_orders']:.3f}" for _, r in btyd.iterrows())
        out += [f"BG/NBD ranked by fewest expected orders instead of P(no order) (ROC-AUC / PR-AUC, as in the data README): {pairs}.", ""]
    out += [
        "Population: customers with an order in the 365 days before T; label: no order in [T, T + 90 days); "
        "PR-AUC and lift treat churn as the positive class. Every method sees only data dated before T. "
        f"BG/NBD: modified BG/NBD (Batislam et al. 2007), penalizer {BTYD_SETTINGS['penalizer']} "
        "(as lifetimes: L2 on the parameters with time scaled so that the longest T is 1), time in weeks, "
        "repeat order days, fitted by maximum likelihood on every customer's orders before T.",
        "",
        "## Notes",
        "",
        *[f"- {n}" for n in notes],
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the Markdown table and write it to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the Online Retail file")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown output")
    parser.add_argument("--dates", nargs="*", default=[d.isoformat() for d in AS_OF_DATES], help="as-of dates YYYY-MM-DD")
    parser.add_argument("--skip-model", action="store_true", help="baselines only")
    parser.add_argument("--prototype", action="store_true", help="also the prototype of the recommended training change")
    parser.add_argument("--trials", type=int, default=20, help="Optuna trials per training run")
    parser.add_argument("--timeout", type=float, default=300.0, help="Optuna seconds per training run")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    dates = tuple(date.fromisoformat(d) for d in args.dates)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    table, notes = run(
        args.data, dates, with_model=not args.skip_model, with_prototype=args.prototype,
        trials=args.trials, timeout_s=args.timeout, seed=args.seed, say=log,
    )
    command = ".venv/bin/python benchmarks/real_data.py" + (" --skip-model" if args.skip_model else "") + (" --prototype" if args.prototype else "")
    text = to_markdown(table, notes, command=command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
