"""The rolling backtest: train as of each date T, score the customers active at T, compare with what happened.

For every T the data is opened cut at T in the store's own query, so nothing dated on or after T is
read, validation included; the model is trained on it exactly as ``churn train --as-of T`` would
(candidates chosen on a later period, the winner refitted on everything known), and the served model
scores the snapshot at T. So do the baselines, refitted the same way. Then the outcome (an order in
[T, T + H) or not) is read from the whole data and every method is measured on the same customers:
all active customers, the early-warning list of those who ordered in the 90 days before T, and the
``retain`` list of those still within their own rhythm (:mod:`features.stage`).

Lead time: for the customers who were lost (no order after their last one, a horizon before the
data end), how many days before that last order did each method first put them in the top 10% of
the ``retain`` list (equal list sizes), or in the high band; with the share flagged at all and the
precision of the flagged list.

The model's margin over the best baseline comes with a paired bootstrap interval per date, and the
mean margin over all dates with an interval that resamples every date's customers at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from features.contract import MUTABLE_ATTRIBUTES
from features.dataset import CRMDataset, DataError
from features.labels import churned
from features.registry import FEATURES, model_features
from features.snapshot import build_snapshot
from features.stage import RETAIN, StageRule, customer_stage
from training import evaluate as ev
from training.candidates import BASELINES
from training.dataset import LABEL
from training.train import Fitted, categorical_of, fit_frame, labelled_snapshots

Progress = Callable[[str], None]
OpenAt = Callable[[date], CRMDataset]
COLUMNS = (
    "as_of", "subset", "method", "customers", "churn_rate", "roc_auc", "pr_auc", "brier", "lift_top10",
    "margin_roc_auc_low", "margin_roc_auc_high",
)
"""The columns of the backtest table, in order (more follow: the PR-AUC margin, the best baseline, the chosen candidate)."""
_EVERY = re.compile(r"^(\d+)\s*([DWM])$", re.IGNORECASE)


@dataclass(frozen=True)
class BacktestConfig:
    """What a backtest runs.

    Attributes:
        start: the first as-of date.
        end: the last as-of date (its label must have matured in the data).
        every: the step between as-of dates: ``<n>D``, ``<n>W`` or ``<n>M`` (days, weeks, months).
        horizon_days: H.
        active_days: the activity window of the population.
        trials: Optuna trials per training.
        timeout_s: Optuna time budget per training.
        seed: the seed of training and bootstrap.
        exclude: features left out of every training.
        ablate: feature names or registry groups, several joined by commas; for each entry the model is
            also trained without them.
        stage_rule: when a customer counts as gone quiet (the ``retain`` subset is the rest).
        lead_top: the share of each date's ``retain`` list a method flags, for the lead time.
        risk_high: the probability from which a customer is in the high band (the lead time's second list).
    """

    start: date
    end: date
    every: str = "1M"
    horizon_days: int = 90
    active_days: int = 365
    trials: int = 10
    timeout_s: float | None = None
    seed: int = 42
    exclude: tuple[str, ...] = ()
    ablate: tuple[str, ...] = ()
    stage_rule: StageRule = field(default_factory=StageRule)
    lead_top: float = 0.10
    risk_high: float = 0.5


@dataclass
class BacktestResult:
    """The backtest's figures.

    Attributes:
        table: one row per as-of date, subset and method (:data:`COLUMNS` first).
        summary: per subset and metric, the model's mean margin over the best baseline and its interval.
        ablation: per variant and subset, the mean ROC-AUC and PR-AUC of the model (empty without ``ablate``).
        runs: per as-of date, what training decided (candidate, periods, trees).
        scores: per as-of date and customer, its stage, each method's probability and the outcome (``churned``).
        lead_times: per method and list (top of ``retain``, high band), the lead time before lost customers' last order.
        seconds: wall time.
        notes: what the reader should know (features left out and why).
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    ablation: pd.DataFrame
    runs: pd.DataFrame
    scores: pd.DataFrame
    lead_times: pd.DataFrame
    seconds: float
    notes: list[str] = field(default_factory=list)


def as_of_dates(start: date, end: date, every: str) -> list[date]:
    """The as-of dates from ``start`` to ``end`` (both included when on the step).

    Args:
        start: the first date.
        end: the last date.
        every: ``<n>D``, ``<n>W`` or ``<n>M``.

    Returns:
        The dates, oldest first.

    Raises:
        DataError: a malformed step or an empty range.
    """
    match = _EVERY.match(every.strip())
    if match is None or int(match.group(1)) < 1:
        raise DataError(f"--every must look like 1M, 2W or 14D (a number and D, W or M), not {every!r}")
    n, unit = int(match.group(1)), match.group(2).upper()
    step = pd.DateOffset(months=n) if unit == "M" else pd.DateOffset(days=n * (7 if unit == "W" else 1))
    out, k = [], 0
    while (t := pd.Timestamp(start) + k * step) <= pd.Timestamp(end):
        out.append(t.date())
        k += 1
    if not out:
        raise DataError(f"no as-of date from {start} to {end}: --from must not be after --to")
    return out


def run_backtest(open_at: OpenAt, outcomes: CRMDataset, config: BacktestConfig, *, progress: Progress | None = None) -> BacktestResult:
    """Train, score and measure at every as-of date.

    Args:
        open_at: opens the data as known at T (cut in the store's query, validated).
        outcomes: the whole data, read only for the outcomes after each T.
        config: dates, horizon, budgets, ablations.
        progress: one-line status messages.

    Returns:
        The figures.

    Raises:
        DataError: a label that has not matured, or data that cannot train a model at some T.
    """
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    dates = as_of_dates(config.start, config.end, config.every)
    last = pd.Timestamp(outcomes.end_date()) - pd.Timedelta(days=config.horizon_days)
    if pd.Timestamp(dates[-1]) > last:
        newest = outcomes.end_date() - timedelta(days=1)
        raise DataError(
            f"the outcome at {dates[-1]} is not known yet: it needs {config.horizon_days} days of orders after it, "
            f"and the newest order is dated {newest}; use --to {last.date()} or earlier"
        )
    groups = {spec.group for spec in FEATURES.values()}
    unknown = sorted({n for entry in config.ablate for n in entry.split(",") if n not in FEATURES and n not in groups})
    if unknown:
        raise DataError(f"--ablate {', '.join(unknown)}: not a feature or feature group (groups: {', '.join(sorted(groups))}; features: see `churn features`)")
    notes: list[str] = []
    found = []
    for t in dates:
        say(f"as of {t}: training")
        found.append(_one_date(open_at(t), outcomes, t, config, notes, say))
    frame = pd.concat([d.table for d in found], ignore_index=True)
    scores = pd.concat([d.scores() for d in found], ignore_index=True)
    return BacktestResult(
        table=frame[[*COLUMNS, *(c for c in frame.columns if c not in COLUMNS)]],
        summary=summarise(found, seed=config.seed),
        ablation=pd.DataFrame([row for d in found for row in d.variants]),
        runs=pd.DataFrame([d.run for d in found]),
        scores=scores,
        lead_times=lead_times(scores, last_orders(outcomes), horizon_days=config.horizon_days, end=outcomes.end_date(), top=config.lead_top, high=config.risk_high),
        seconds=time.perf_counter() - started,
        notes=list(dict.fromkeys(notes)),
    )


@dataclass
class DateResult:
    """One as-of date of a backtest.

    Attributes:
        as_of: T.
        table: the methods' figures per subset (see :func:`training.evaluate.compare_methods`).
        variants: the model's figures per ablation variant.
        run: what training decided.
        y: the outcome of each customer scored at T.
        probas: method to its probabilities on those customers.
        masks: subset name to which of them belong to it.
        stage: each one's stage at T.
        customers: their ids.
    """

    as_of: date
    table: pd.DataFrame
    variants: list[dict[str, object]]
    run: dict[str, object]
    y: np.ndarray
    probas: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    stage: np.ndarray
    customers: np.ndarray

    def scores(self) -> pd.DataFrame:
        """One row per customer: ``as_of``, ``customer_id``, ``stage``, ``ordered_90d``, each method's probability, ``churned``."""
        return pd.DataFrame(
            {"as_of": self.as_of.isoformat(), "customer_id": self.customers, "stage": self.stage, "ordered_90d": self.masks["ordered_90d"], **self.probas, LABEL: self.y}
        )


def _one_date(known: CRMDataset, outcomes: CRMDataset, t: date, config: BacktestConfig, notes: list[str], say: Progress) -> DateResult:
    """Train as of T, score the snapshot at T, measure against the outcome."""
    try:
        features = backtest_features(known, config.exclude, notes)
        frame = labelled_snapshots(known, horizon_days=config.horizon_days, as_of=t, active_days=config.active_days, progress=lambda _m: None)
        fitted = _fit(frame, features, t, config, say)
        snapshot = build_snapshot(known, t, active_days=config.active_days)
    finally:
        known.close()
    y = outcome(outcomes, snapshot, t, config.horizon_days)
    probas = {"model": fitted.model.predict_proba(snapshot), **{b: m.predict_proba(snapshot) for b, m in fitted.served_baselines.items()}}
    table = ev.compare_methods(snapshot, y, probas, model="model", baselines=[b for b in BASELINES if b in probas], seed=config.seed, stage_rule=config.stage_rule)
    table.insert(0, "as_of", t.isoformat())
    table["chosen"] = np.where(table["method"] == "model", fitted.model.kind, table["method"])
    masks = {subset: ev.subset_mask(snapshot, subset, config.stage_rule) for subset in ev.SUBSETS}
    variants = [_variant_row(t, "all features", snapshot, y, fitted, masks)]
    for name in config.ablate:
        say(f"as of {t}: training without {name}")
        left_out = set(name.split(","))
        kept = [f for f in features if f not in left_out and FEATURES[f].group not in left_out]
        variants.append(_variant_row(t, f"without {name}", snapshot, y, _fit(frame, kept, t, config, lambda _m: None), masks))
    model_row = table[(table["method"] == "model") & (table["subset"] == "all")].iloc[0]
    say(f"as of {t}: {fitted.model.kind} ROC-AUC {model_row['roc_auc']:.3f}, margin {model_row['margin_roc_auc']:+.3f} over {model_row['best_baseline']}")
    stage = customer_stage(snapshot, config.stage_rule)
    return DateResult(t, table, variants, _run_row(t, fitted), y, probas, masks, stage, snapshot["customer_id"].astype(str).to_numpy())


def summarise(found: Sequence[DateResult], *, draws: int = 500, seed: int = 0) -> pd.DataFrame:
    """The model's mean margin over the best baseline across the dates, with a 95% interval.

    At each date the best baseline is the one with the best ROC-AUC on that subset (as in the
    table); the interval resamples the customers of every date at once, so it is the interval of
    the mean margin, not an average of intervals.

    Args:
        found: the dates.
        draws: bootstrap resamples.
        seed: random seed.

    Returns:
        One row per subset and metric (``roc_auc``, ``pr_auc``): ``dates``, ``wins`` (dates where
        the model beats every baseline), ``mean_margin``, ``low``, ``high``.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for subset in ev.SUBSETS:
        cases = []
        for d in found:
            mask = d.masks[subset]
            rows_t = d.table[(d.table["subset"] == subset) & (d.table["method"] == "model")]
            if rows_t.empty:
                continue
            cases.append((d.y[mask], d.probas["model"][mask], d.probas[str(rows_t.iloc[0]["best_baseline"])][mask], d.table[d.table["subset"] == subset]))
        for metric, score in (("roc_auc", roc_auc_score), ("pr_auc", average_precision_score)):
            margins = [score(y, ours) - score(y, theirs) for y, ours, theirs, _ in cases]
            wins = sum(_beats_all(table, metric) for *_, table in cases)
            boot = [np.mean([_resampled(rng, score, y, ours, theirs) for y, ours, theirs, _ in cases]) for _ in range(draws)]
            low, high = np.nanpercentile(boot, [2.5, 97.5]) if cases else (np.nan, np.nan)
            rows.append({"subset": subset, "metric": metric, "dates": len(cases), "wins": wins, "mean_margin": float(np.mean(margins)) if margins else np.nan, "low": float(low), "high": float(high)})
    return pd.DataFrame(rows)


def _beats_all(table: pd.DataFrame, metric: str) -> bool:
    by = table.set_index("method")[metric]
    return bool(by["model"] > by.drop("model").max())


def _resampled(rng: np.random.Generator, score: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> float:
    idx = rng.integers(0, len(y), len(y))
    if not 0 < y[idx].sum() < len(idx):
        return float("nan")
    return float(score(y[idx], ours[idx]) - score(y[idx], theirs[idx]))


def _fit(frame: pd.DataFrame, features: Sequence[str], t: date, config: BacktestConfig, say: Progress) -> Fitted:
    return fit_frame(
        frame, feature_names=list(features), categorical=categorical_of(features), horizon_days=config.horizon_days, as_of=t,
        trials=config.trials, timeout_s=config.timeout_s, seed=config.seed, progress=say, stage_rule=config.stage_rule,
    )


def backtest_features(known: CRMDataset, exclude: Sequence[str], notes: list[str]) -> list[str]:
    """The features a backtest may use: the data's, less ``exclude`` and the customer attributes known only as of today.

    Args:
        known: the data as of T.
        exclude: features left out on request.
        notes: where to say what was left out and why.

    Returns:
        Feature names in registry order.
    """
    features = [f for f in model_features(known) if f not in set(exclude)]
    if known.has("customer_history"):
        return features
    today_only = [f for f in features if any(need.partition(".")[2] in MUTABLE_ATTRIBUTES for need in FEATURES[f].needs)]
    if today_only:
        notes.append(
            f"left out {', '.join(today_only)}: they come from customer attributes known only as of today "
            "(give a customer_history table to use their value at each as-of date)"
        )
    return [f for f in features if f not in today_only]


def outcome(data: CRMDataset, snapshot: pd.DataFrame, t: date, horizon_days: int) -> np.ndarray:
    """Whether each customer of the snapshot placed no order in [T, T + H) (1 = lost).

    Args:
        data: the whole data (the outcome lies after T).
        snapshot: the customers scored at T.
        t: T.
        horizon_days: H.

    Returns:
        0/1 per snapshot row.
    """
    population = data.con.create_table(f"backtest_population_{t:%Y%m%d}", snapshot[["customer_id"]].astype(str), temp=True, overwrite=True)
    labels = churned(data, t, horizon_days, population).to_pandas().set_index("customer_id")[LABEL]
    return labels.reindex(snapshot["customer_id"].astype(str)).to_numpy(dtype=int)


def _variant_row(t: date, variant: str, snapshot: pd.DataFrame, y: np.ndarray, fitted: Fitted, masks: dict[str, np.ndarray]) -> dict[str, object]:
    proba = fitted.model.predict_proba(snapshot)
    row: dict[str, object] = {"as_of": t.isoformat(), "variant": variant, "chosen": fitted.model.kind, "features": len(fitted.model.feature_names)}
    for subset, mask in masks.items():
        row[f"{subset}_roc_auc"] = float(roc_auc_score(y[mask], proba[mask]))
        row[f"{subset}_pr_auc"] = float(average_precision_score(y[mask], proba[mask]))
    return row


def _run_row(t: date, fitted: Fitted) -> dict[str, object]:
    meta = fitted.model.metadata
    return {
        "as_of": t.isoformat(),
        "chosen": fitted.model.kind,
        "recipe": meta.get("recipe"),
        "evaluation": meta.get("evaluation"),
        "train_first": meta.get("train_first"),
        "train_last": meta.get("train_last"),
        "tested_train_last": meta.get("tested_train_last"),
        "test_first": meta.get("test_first"),
        "test_last": meta.get("test_last"),
        "training_rows": len(fitted.split.everything()),
        "trees": str(fitted.selection.tuning.get("trees", {})),
        "params": str({k: round(v, 4) if isinstance(v, float) else v for k, v in fitted.selection.tuning.get("params", {}).items()}),
        **{f"valid_{k}_score": m["score"] for k, m in fitted.selection.metrics.items()},
    }


def last_orders(data: CRMDataset) -> pd.Series:
    """Each customer's last order day in the whole data.

    Args:
        data: the whole data.

    Returns:
        Timestamps indexed by ``customer_id``.
    """
    orders = data.table("orders")
    last = orders.filter(orders.amount > 0).group_by("customer_id").aggregate(last_order=orders.order_date.max()).to_pandas()
    return pd.to_datetime(last.set_index(last["customer_id"].astype(str))["last_order"])


def lead_times(scores: pd.DataFrame, last: pd.Series, *, horizon_days: int, end: date, top: float = 0.10, high: float = 0.5) -> pd.DataFrame:
    """How early each method warned of the customers that were lost, on the ``retain`` list.

    A customer was lost when its last order lies more than a horizon before the data end. A method
    flags a customer at T when it is in the top ``top`` of T's ``retain`` list by that method's
    probability (the same number of customers for every method), or, for the second list, when its
    probability is at least ``high``. The lead time is the days from the first flag to the
    customer's last order (negative: flagged only after it).

    Args:
        scores: the backtest's per-customer scores (``as_of``, ``customer_id``, ``stage``, methods, ``churned``).
        last: each customer's last order day.
        horizon_days: H.
        end: the day after the data's newest order.
        top: the share of each date's ``retain`` list flagged.
        high: the high band's probability.

    Returns:
        One row per list and method: ``list``, ``method``, ``lost`` (lost customers on a ``retain`` list),
        ``flagged`` (share of them ever flagged), ``median_lead_days``, ``q25_lead_days``, ``q75_lead_days``,
        ``precision`` (share of flagged customer-dates lost within the horizon), ``flags`` (flagged customer-dates).
    """
    retain = scores[scores["stage"] == RETAIN].copy()
    retain["last_order"] = retain["customer_id"].map(last)
    lost = set(last.index[last < pd.Timestamp(end) - pd.Timedelta(days=horizon_days)]) & set(retain["customer_id"])
    methods = [m for m in ("model", *BASELINES) if m in retain.columns]
    rows = []
    for name in ("top", "high"):
        for method in methods:
            if name == "top":
                rank = retain.groupby("as_of")[method].rank(ascending=False, method="first", pct=True)
                flagged = retain[rank <= top]
            else:
                flagged = retain[retain[method] >= high]
            first = flagged[flagged["customer_id"].isin(lost)].groupby("customer_id").agg(first=("as_of", "min"), last_order=("last_order", "first"))
            lead = (first["last_order"] - pd.to_datetime(first["first"])).dt.days
            rows.append(
                {
                    "list": f"top {top:.0%} of retain" if name == "top" else f"probability >= {high:g}",
                    "method": method, "lost": len(lost), "flagged": len(first) / max(len(lost), 1),
                    "median_lead_days": float(lead.median()) if len(lead) else np.nan,
                    "q25_lead_days": float(lead.quantile(0.25)) if len(lead) else np.nan,
                    "q75_lead_days": float(lead.quantile(0.75)) if len(lead) else np.nan,
                    "precision": float(flagged[LABEL].mean()) if len(flagged) else np.nan, "flags": len(flagged),
                }
            )
    return pd.DataFrame(rows)
