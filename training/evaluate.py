"""How good a churn score is on the test period: ranking, probability quality, and money.

- Ranking: ROC-AUC, PR-AUC (average precision), lift and capture rate in the top 5/10/20%.
- Probabilities: Brier score, log loss, expected calibration error and the reliability curve.
- Money: the profit of a retention campaign that contacts the top k customers by risk (the profit
  curve), its maximum and best fraction to contact, and the expected maximum profit (EMP) of
  Verbraken, Verbeke and Baesens (2013, IEEE TKDE 25(5)): the campaign's success rate is uncertain
  (Beta-distributed), and EMP averages the best achievable profit over it. Unlike the paper, the
  value of a kept customer is per customer (a share of its 12-month revenue) when the data allow.

Every function takes plain arrays or frames and returns numbers, dicts or matplotlib figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from features.stage import RETAIN, StageRule, customer_stage

TOP_FRACTIONS = (0.05, 0.10, 0.20)
TIER_COLUMN = "abc_class"


@dataclass(frozen=True)
class ProfitParams:
    """The economics of a retention campaign.

    Attributes:
        contact_cost: cost of contacting one customer (a call or visit by the account manager).
        incentive_cost: cost of the offer, paid by every contacted customer who accepts it
            (kept churners and, as in Verbraken et al., loyal customers who take it anyway).
        success_rate: share of contacted would-be-lost customers the campaign keeps (the mean
            of the Beta distribution used for EMP).
        success_concentration: alpha + beta of that Beta distribution (higher = more certain).
        value_fraction: a kept customer is worth this share of its 12-month revenue (its margin).
        default_value: the value of a kept customer when the data have no revenue column.
        value_column: the revenue column the value is taken from.
    """

    contact_cost: float = 50.0
    incentive_cost: float = 0.0
    success_rate: float = 0.3
    success_concentration: float = 20.0
    value_fraction: float = 0.2
    default_value: float = 1000.0
    value_column: str = "revenue_365d"

    def as_dict(self) -> dict[str, float | str]:
        """The parameters, for logging."""
        return asdict(self)


def customer_values(frame: pd.DataFrame, params: ProfitParams) -> np.ndarray:
    """What keeping each customer is worth: ``value_fraction`` x 12-month revenue, else the default.

    Args:
        frame: test rows (may have ``params.value_column``).
        params: campaign economics.

    Returns:
        Values, shape [n] (missing or negative revenue counts as the default value or zero).
    """
    if params.value_column in frame.columns:
        revenue = pd.to_numeric(frame[params.value_column], errors="coerce").astype(float)
        if revenue.notna().any():
            return (revenue.fillna(0.0).clip(lower=0.0) * params.value_fraction).to_numpy()
    return np.full(len(frame), float(params.default_value))


def probability_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier score, log loss and calibration error of probabilities.

    Args:
        y: 0/1 labels.
        proba: predicted churn probabilities.

    Returns:
        ``roc_auc``, ``pr_auc``, ``brier``, ``log_loss``, ``ece``, ``base_rate``, ``mean_proba``, ``n``.
    """
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(proba, dtype=float), 1e-12, 1 - 1e-12)
    both = 0 < y.sum() < len(y)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
        "mean_proba": float(p.mean()) if len(p) else float("nan"),
        "n": float(len(y)),
    }


def ranking_order(score: np.ndarray) -> np.ndarray:
    """Indices from the riskiest to the safest (ties keep the input order).

    Args:
        score: risk scores.

    Returns:
        A permutation of ``range(n)``.
    """
    return np.argsort(-np.asarray(score, dtype=float), kind="stable")


def lift_and_capture(y: np.ndarray, score: np.ndarray, fractions: Sequence[float] = TOP_FRACTIONS) -> dict[str, float]:
    """Lift and capture rate among the top fractions of customers by score.

    Lift = churn rate in the top k / overall churn rate; capture = lost customers in the top k /
    all lost customers.

    Args:
        y: 0/1 labels.
        score: risk scores (higher = riskier).
        fractions: the top fractions, e.g. 0.05 for the top 5%.

    Returns:
        ``lift_top5``, ``capture_top5``, ``precision_top5``, ... one triple per fraction.
    """
    y = np.asarray(y, dtype=float)
    ranked = y[ranking_order(score)]
    positives = ranked.sum()
    base = positives / len(ranked)
    out: dict[str, float] = {}
    for fraction in fractions:
        k = max(1, int(round(fraction * len(ranked))))
        hits = ranked[:k].sum()
        tag = f"top{round(fraction * 100)}"
        out[f"precision_{tag}"] = float(hits / k)
        out[f"lift_{tag}"] = float(hits / k / base) if base > 0 else float("nan")
        out[f"capture_{tag}"] = float(hits / positives) if positives > 0 else float("nan")
    return out


@dataclass(frozen=True)
class ProfitCurve:
    """Campaign profit when contacting the top k customers, for every k.

    Attributes:
        fraction: share of customers contacted, shape [n + 1] (starting at 0).
        profit: expected profit at the mean success rate, same shape.
        gain: ``sum of value x churned`` among the contacted (what a perfect campaign could keep).
        cost: what contacting them costs (contacts plus incentives to loyal customers).
    """

    fraction: np.ndarray
    profit: np.ndarray
    gain: np.ndarray
    cost: np.ndarray


def profit_curve(y: np.ndarray, score: np.ndarray, values: np.ndarray, params: ProfitParams) -> ProfitCurve:
    """Expected campaign profit of contacting the top k by score, for k = 0..n.

    A contacted customer who would be lost is kept with probability ``success_rate`` and is then
    worth its value minus the incentive; every contact costs ``contact_cost``; loyal contacted
    customers take the incentive.

    Args:
        y: 0/1 labels (1 = lost).
        score: risk scores.
        values: value of keeping each customer.
        params: campaign economics.

    Returns:
        The curve.
    """
    order = ranking_order(score)
    churned = np.asarray(y, dtype=float)[order]
    value = np.asarray(values, dtype=float)[order]
    gain = np.concatenate([[0.0], np.cumsum(churned * (value - params.incentive_cost))])
    cost = np.concatenate(
        [[0.0], np.cumsum(params.contact_cost + (1.0 - churned) * params.incentive_cost)]
    )
    profit = params.success_rate * gain - cost
    fraction = np.arange(len(order) + 1) / max(1, len(order))
    return ProfitCurve(fraction=fraction, profit=profit, gain=gain, cost=cost)


def profit_metrics(y: np.ndarray, score: np.ndarray, values: np.ndarray, params: ProfitParams) -> dict[str, float]:
    """Maximum profit, best fraction to contact, profit in the top fractions, and EMP.

    EMP integrates the best profit ``max_k (gamma * gain_k - cost_k)`` over the success rate
    ``gamma ~ Beta(a, b)`` with mean ``success_rate`` and ``a + b = success_concentration``.

    Args:
        y: 0/1 labels.
        score: risk scores.
        values: value of keeping each customer.
        params: campaign economics.

    Returns:
        ``profit_max``, ``profit_best_fraction``, ``profit_top5`` ..., ``emp`` (total) and
        ``emp_per_customer``, ``emp_fraction`` (expected best fraction to contact).
    """
    curve = profit_curve(y, score, values, params)
    n = len(curve.fraction) - 1
    best = int(np.argmax(curve.profit))
    out = {
        "profit_max": float(curve.profit[best]),
        "profit_best_fraction": float(curve.fraction[best]),
    }
    for fraction in TOP_FRACTIONS:
        k = max(1, int(round(fraction * n)))
        out[f"profit_top{round(fraction * 100)}"] = float(curve.profit[k])
    a = params.success_rate * params.success_concentration
    b = (1.0 - params.success_rate) * params.success_concentration
    quantiles = (np.arange(200) + 0.5) / 200
    gammas = stats.beta.ppf(quantiles, a, b)
    best_profit = np.empty(len(gammas))
    best_fraction = np.empty(len(gammas))
    for i, gamma in enumerate(gammas):
        profits = gamma * curve.gain - curve.cost
        k = int(np.argmax(profits))
        best_profit[i], best_fraction[i] = profits[k], curve.fraction[k]
    emp = float(best_profit.mean())
    out["emp"] = emp
    out["emp_per_customer"] = emp / max(1, n)
    out["emp_fraction"] = float(best_fraction.mean())
    return out


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-frequency bins: sum of |mean predicted - observed| x share.

    Args:
        y: 0/1 labels.
        proba: predicted probabilities.
        bins: number of bins.

    Returns:
        The ECE (0 = perfectly calibrated).
    """
    curve = reliability_curve(y, proba, bins=bins)
    if curve.empty:
        return float("nan")
    weights = curve["count"] / curve["count"].sum()
    return float((weights * (curve["mean_predicted"] - curve["observed_rate"]).abs()).sum())


def reliability_curve(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability against observed churn rate in equal-frequency bins.

    Args:
        y: 0/1 labels.
        proba: predicted probabilities.
        bins: number of bins.

    Returns:
        One row per bin: ``mean_predicted``, ``observed_rate``, ``count``.
    """
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": np.asarray(proba, dtype=float)})
    if frame.empty:
        return pd.DataFrame(columns=["mean_predicted", "observed_rate", "count"])
    ranks = frame["p"].rank(method="first")
    frame["bin"] = np.minimum((ranks - 1) * bins // len(frame), bins - 1).astype(int)
    grouped = frame.groupby("bin").agg(mean_predicted=("p", "mean"), observed_rate=("y", "mean"), count=("y", "size"))
    return grouped.reset_index(drop=True)


def tier_metrics(frame: pd.DataFrame, y: np.ndarray, proba: np.ndarray, column: str = TIER_COLUMN) -> dict[str, dict[str, float]]:
    """Metrics per customer tier (ABC class by default).

    Args:
        frame: the test rows (with ``column``).
        y: their labels.
        proba: their predicted probabilities.
        column: the tier column.

    Returns:
        Tier value to ``n``, ``base_rate``, ``mean_proba``, ``roc_auc``, ``pr_auc``, ``brier``,
        ``lift_top10``, ``capture_top10`` (AUCs are NaN when a tier has a single class);
        empty when the column is absent.
    """
    if column not in frame.columns:
        return {}
    y = np.asarray(y, dtype=int)
    p = np.asarray(proba, dtype=float)
    tiers = frame[column].astype("string").fillna("unknown").to_numpy()
    out: dict[str, dict[str, float]] = {}
    for tier in sorted(set(tiers)):
        mask = tiers == tier
        metrics = probability_metrics(y[mask], p[mask])
        ranking = lift_and_capture(y[mask], p[mask], fractions=(0.10,))
        out[str(tier)] = {
            key: metrics[key] for key in ("n", "base_rate", "mean_proba", "roc_auc", "pr_auc", "brier")
        } | {key: ranking[key] for key in ("lift_top10", "capture_top10")}
    return out


def evaluate_scores(
    y: np.ndarray, proba: np.ndarray, values: np.ndarray, params: ProfitParams
) -> dict[str, float]:
    """Every test metric of one set of probabilities.

    Args:
        y: 0/1 labels.
        proba: predicted churn probabilities (also the ranking score).
        values: value of keeping each customer (see :func:`customer_values`).
        params: campaign economics.

    Returns:
        Probability, ranking and profit metrics in one flat dict; the ``value_ranked_*`` profit
        metrics contact customers by value at risk (probability x value) instead of by probability.
    """
    by_value = profit_metrics(y, np.asarray(proba, dtype=float) * np.asarray(values, dtype=float), values, params)
    value_ranked = {f"value_ranked_{key}": by_value[key] for key in ("profit_max", "profit_best_fraction", "emp", "emp_fraction")}
    return probability_metrics(y, proba) | lift_and_capture(y, proba) | profit_metrics(y, proba, values, params) | value_ranked


COLORS = ("#1f5fa8", "#d0731c", "#4c9a2a", "#8a3ea8", "#7a7a7a")


def plot_roc(y: np.ndarray, scores: Mapping[str, np.ndarray]) -> Figure:
    """ROC curves of several scores on the same labels.

    Args:
        y: 0/1 labels.
        scores: label of the curve to scores.

    Returns:
        The figure.
    """
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for (name, s), color in zip(scores.items(), COLORS, strict=False):
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, color=color, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title="ROC, test period")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_precision_recall(y: np.ndarray, scores: Mapping[str, np.ndarray]) -> Figure:
    """Precision-recall curves of several scores, with the base rate.

    Args:
        y: 0/1 labels.
        scores: label of the curve to scores.

    Returns:
        The figure.
    """
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for (name, s), color in zip(scores.items(), COLORS, strict=False):
        precision, recall, _ = precision_recall_curve(y, s)
        ax.plot(recall, precision, color=color, label=f"{name} (AP {average_precision_score(y, s):.3f})")
    ax.axhline(float(np.mean(y)), ls=":", color="grey", lw=1, label=f"base rate {np.mean(y):.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test period", ylim=(0, 1.02))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_calibration(y: np.ndarray, probas: Mapping[str, np.ndarray], bins: int = 10) -> Figure:
    """Reliability diagram: mean predicted probability against observed churn rate per bin.

    Args:
        y: 0/1 labels.
        probas: label of the curve to probabilities (e.g. calibrated and uncalibrated).
        bins: equal-frequency bins.

    Returns:
        The figure.
    """
    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = 0.0
    for (name, p), color in zip(probas.items(), COLORS, strict=False):
        curve = reliability_curve(y, p, bins=bins)
        ece = expected_calibration_error(y, p, bins=bins)
        brier = brier_score_loss(y, p)
        ax.plot(curve["mean_predicted"], curve["observed_rate"], marker="o", color=color, label=f"{name} (ECE {ece:.3f}, Brier {brier:.3f})")
        top = max(top, float(curve["mean_predicted"].max()), float(curve["observed_rate"].max()))
    top = min(1.0, top * 1.05 + 0.01)
    ax.plot([0, top], [0, top], ls=":", color="grey", lw=1, label="perfect")
    ax.set(xlabel="mean predicted churn probability", ylabel="observed churn rate", title="Calibration, test period", xlim=(0, top), ylim=(0, top))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_gain(y: np.ndarray, scores: Mapping[str, np.ndarray]) -> Figure:
    """Cumulative gain (capture rate) and lift by share of customers contacted.

    Args:
        y: 0/1 labels.
        scores: label of the curve to scores.

    Returns:
        The figure (gain on the left, lift on the right).
    """
    fig, (ax_gain, ax_lift) = plt.subplots(1, 2, figsize=(10, 4.5))
    y = np.asarray(y, dtype=float)
    n = len(y)
    share = np.arange(1, n + 1) / n
    for (name, s), color in zip(scores.items(), COLORS, strict=False):
        hits = np.cumsum(y[ranking_order(s)])
        ax_gain.plot(share, hits / max(1.0, y.sum()), color=color, label=name)
        lift = (hits / np.arange(1, n + 1)) / max(1e-12, y.mean())
        start = max(1, n // 100)
        ax_lift.plot(share[start:], lift[start:], color=color, label=name)
    ax_gain.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="random")
    ax_gain.set(xlabel="share of customers contacted (riskiest first)", ylabel="share of lost customers captured", title="Cumulative gain")
    ax_lift.axhline(1.0, ls=":", color="grey", lw=1)
    ax_lift.set(xlabel="share of customers contacted (riskiest first)", ylabel="lift", title="Lift")
    for ax in (ax_gain, ax_lift):
        for fraction in TOP_FRACTIONS:
            ax.axvline(fraction, color="#dddddd", lw=0.8, zorder=0)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_profit(y: np.ndarray, scores: Mapping[str, np.ndarray], values: np.ndarray, params: ProfitParams) -> Figure:
    """Expected campaign profit against the share of customers contacted, best point marked.

    Each score ranks customers by probability (solid); the first score is also drawn ranked by
    value at risk, probability x value (dashed).

    Args:
        y: 0/1 labels.
        scores: label of the curve to probabilities.
        values: value of keeping each customer.
        params: campaign economics.

    Returns:
        The figure.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    curves = [(name, s, color, "-") for (name, s), color in zip(scores.items(), COLORS, strict=False)]
    if curves:
        name, s, color, _ = curves[0]
        curves.insert(1, (f"{name} by value at risk", np.asarray(s, dtype=float) * np.asarray(values, dtype=float), color, "--"))
    for name, s, color, style in curves:
        curve = profit_curve(y, s, values, params)
        best = int(np.argmax(curve.profit))
        ax.plot(curve.fraction, curve.profit, color=color, ls=style, label=f"{name} (max {curve.profit[best]:,.0f} at {curve.fraction[best]:.0%})")
        ax.plot([curve.fraction[best]], [curve.profit[best]], marker="o", color=color)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set(
        xlabel="share of customers contacted (riskiest first)",
        ylabel="expected profit",
        title=(
            f"Retention campaign profit, test period\n(contact {params.contact_cost:g}, incentive {params.incentive_cost:g}, "
            f"success {params.success_rate:.0%}, value {params.value_fraction:.0%} of 12-month revenue)"
        ),
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_importance(importance: pd.Series, top: int = 20) -> Figure:
    """Horizontal bars of mean |contribution| per feature, largest on top.

    Args:
        importance: feature name to mean absolute contribution (log-odds).
        top: how many features to show.

    Returns:
        The figure.
    """
    shown = importance.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(shown) + 1.2))
    ax.barh(shown.index, shown.to_numpy(), color=COLORS[0])
    ax.set(xlabel="mean |contribution| to the log-odds (test period)", title="Feature importance")
    fig.tight_layout()
    return fig


SUBSETS = ("all", "ordered_90d", "retain")
"""``all``: every active customer; ``ordered_90d``: those who ordered in the 90 days before T (the early-warning
list); ``retain``: those still within their own rhythm (:mod:`features.stage`), where recency alone cannot rank."""
EARLY_WARNING_DAYS = 90


def subset_mask(frame: pd.DataFrame, subset: str, stage_rule: StageRule | None = None) -> np.ndarray:
    """Which rows belong to a subset of :data:`SUBSETS`.

    Args:
        frame: rows with ``days_since_last_order`` (and ``median_gap_days`` for ``retain``).
        subset: the subset's name.
        stage_rule: when a customer counts as gone quiet (``retain`` is the rest); the defaults when None.

    Returns:
        A boolean mask, shape [n].
    """
    if subset == "all":
        return np.ones(len(frame), dtype=bool)
    if subset == "retain":
        return customer_stage(frame, stage_rule) == RETAIN
    if subset == "ordered_90d":
        days = pd.to_numeric(frame["days_since_last_order"], errors="coerce").to_numpy(dtype=float)
        return days <= EARLY_WARNING_DAYS
    raise ValueError(f"unknown subset {subset!r}: one of {', '.join(SUBSETS)}")


def paired_bootstrap(y: np.ndarray, ours: np.ndarray, theirs: np.ndarray, *, draws: int = 500, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% intervals of the ROC-AUC and PR-AUC differences (ours - theirs), resampling customers.

    Args:
        y: 0/1 labels.
        ours: our scores.
        theirs: the other method's scores on the same rows.
        draws: bootstrap resamples.
        seed: random seed.

    Returns:
        ``{"roc_auc": (low, high), "pr_auc": (low, high)}`` (NaN when no resample has both classes).
    """
    y = np.asarray(y, dtype=int)
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[float]] = {"roc_auc": [], "pr_auc": []}
    for _ in range(draws):
        idx = rng.integers(0, len(y), len(y))
        if not 0 < y[idx].sum() < len(idx):
            continue
        diffs["roc_auc"].append(roc_auc_score(y[idx], ours[idx]) - roc_auc_score(y[idx], theirs[idx]))
        diffs["pr_auc"].append(average_precision_score(y[idx], ours[idx]) - average_precision_score(y[idx], theirs[idx]))
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if v else (float("nan"), float("nan")) for k, v in diffs.items()}


def compare_methods(
    frame: pd.DataFrame,
    y: np.ndarray,
    probas: Mapping[str, np.ndarray],
    *,
    model: str,
    baselines: Sequence[str],
    seed: int = 0,
    stage_rule: StageRule | None = None,
) -> pd.DataFrame:
    """Every method's figures per subset, and the model's margin over the best baseline with its interval.

    Args:
        frame: the scored rows (for the subsets).
        y: their 0/1 labels.
        probas: method name to churn probabilities on the rows.
        model: the name of the model among ``probas``.
        baselines: the names of the baselines among ``probas``.
        seed: the bootstrap's seed.
        stage_rule: the ``retain`` subset's rule.

    Returns:
        One row per subset and method: ``subset, method, customers, churn_rate, roc_auc, pr_auc, brier,
        lift_top10``; the model's rows also ``best_baseline``, ``margin_roc_auc``, ``margin_pr_auc`` and
        the intervals ``margin_roc_auc_low/high``, ``margin_pr_auc_low/high`` (against the baseline with
        the best ROC-AUC on the same rows).
    """
    rows: list[dict[str, Any]] = []
    for subset in SUBSETS:
        mask = subset_mask(frame, subset, stage_rule)
        ys = np.asarray(y, dtype=int)[mask]
        if not 0 < ys.sum() < len(ys):
            continue
        found: dict[str, dict[str, Any]] = {}
        for name, proba in probas.items():
            p = np.asarray(proba, dtype=float)[mask]
            found[name] = {
                "subset": subset, "method": name, "customers": int(mask.sum()), "churn_rate": float(ys.mean()),
                "roc_auc": float(roc_auc_score(ys, p)), "pr_auc": float(average_precision_score(ys, p)),
                "brier": float(brier_score_loss(ys, np.clip(p, 0, 1))), "lift_top10": lift_and_capture(ys, p, (0.10,))["lift_top10"],
            }
        present = [b for b in baselines if b in found]
        if model in found and present:
            best = max(present, key=lambda b: found[b]["roc_auc"])
            interval = paired_bootstrap(ys, np.asarray(probas[model])[mask], np.asarray(probas[best])[mask], seed=seed)
            found[model] |= {"best_baseline": best}
            for metric in ("roc_auc", "pr_auc"):
                found[model][f"margin_{metric}"] = found[model][metric] - max(found[b][metric] for b in present)
                found[model][f"margin_{metric}_low"], found[model][f"margin_{metric}_high"] = interval[metric]
        rows.extend(found.values())
    return pd.DataFrame(rows)


def plot_margins(table: pd.DataFrame) -> Figure:
    """The model's margin over the best baseline at each as-of date, per subset, with its 95% interval.

    Args:
        table: a backtest table (``as_of``, ``subset``, ``method``, ``margin_roc_auc``, ``margin_roc_auc_low/high``,
            ``margin_pr_auc`` ...).

    Returns:
        A figure with one panel per metric.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    rows = table[table["method"] == "model"]
    for ax, metric in zip(axes, ("roc_auc", "pr_auc"), strict=True):
        for color, (subset, group) in zip(COLORS, rows.groupby("subset", sort=False), strict=False):
            when = pd.to_datetime(group["as_of"])
            mid = group[f"margin_{metric}"].to_numpy(dtype=float)
            low, high = (group[f"margin_{metric}_{end}"].to_numpy(dtype=float) for end in ("low", "high"))
            # a percentile interval need not contain its point estimate (a skewed bootstrap): draw what it says
            err = np.vstack([np.maximum(mid - low, 0.0), np.maximum(high - mid, 0.0)])
            ax.errorbar(when, mid, yerr=err, marker="o", capsize=3, color=color, label=subset)
        ax.axhline(0.0, color="#7a7a7a", linewidth=1)
        ax.set_title(f"{'ROC-AUC' if metric == 'roc_auc' else 'PR-AUC'} margin over the best baseline")
        ax.set_xlabel("as of")
        ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
