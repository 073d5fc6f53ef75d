"""The candidates a training run compares on the validation period, and the recipe of each.

A candidate is built from parts (:data:`PARTS`): the three simple baselines a retention analyst would
build in an afternoon, and LightGBM with and without the BG/NBD starting score. ``blend`` averages the
better LightGBM (on validation) with the logistic RFM model and BG/NBD: the mean of their margins,
each scaled to unit spread on the validation period (equal votes: weights fitted on a few hundred
validation rows, and a blend of both LightGBM models, were measured to do worse on the backtest). Whichever candidate scores best on the validation period wins,
a baseline too.

A :class:`Recipe` is what the validation period chose (parts, blend weights, LightGBM parameters and
trees per training row), so the same candidate can be fitted again on more rows: on everything
known before the test period to be tested, then on every matured snapshot to be served.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from features.registry import BTYD_PRIOR_FEATURE
from training.dataset import LABEL, TimeSplit
from training.model import (
    ChurnModel,
    Component,
    PlattCalibrator,
    TreeComponent,
    fit_booster,
    fit_linear,
    fit_rounds,
    lgb_params,
    make_dataset,
    prepare_features,
    prior_logit,
    score_column,
)
from training.tune import TuneResult, tune

Progress = Callable[[str], None]
RECENCY_COLUMN = "days_since_last_order"
RFM_RAW = ("days_since_last_order", "orders_365d", "revenue_365d")
BASELINES = ("recency", "bgnbd", "logistic_rfm")
"""The simple methods every model is measured against (and served instead of it when one wins)."""
TREES = ("lightgbm", "lightgbm_bgnbd")
CANDIDATES = (*BASELINES, *TREES, "blend")
SE_ROWS = 20_000
SIGNIFICANT = 1.645
"""A lead over the blend counts when it exceeds this many standard errors (5%, one-sided)."""
"""Every candidate, simplest first: on equal validation scores the simpler one wins."""
DESCRIPTIONS = {
    "recency": "the recency rule: the longer since the last order, the likelier lost",
    "bgnbd": "BG/NBD (modified, buy-till-you-die): the chance of no order in the next 90 days",
    "logistic_rfm": "logistic regression on recency, frequency and value (and their RFM scores)",
    "lightgbm": "LightGBM on every feature",
    "lightgbm_bgnbd": "LightGBM on every feature, boosted from the BG/NBD chance of no order",
    "blend": "the mean of LightGBM, the logistic RFM model and BG/NBD (equal votes)",
}


@dataclass(frozen=True)
class Context:
    """What every fit shares: the model's features, their categories, the seed and threads."""

    feature_names: list[str]
    categories: dict[str, list[str]]
    seed: int = 42
    threads: int = 2

    def prepare(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The rows' features typed for LightGBM."""
        return prepare_features(rows, self.feature_names, self.categories)


@dataclass
class Recipe:
    """How to fit one candidate on any rows.

    Attributes:
        kind: the candidate's name (see :data:`CANDIDATES`).
        parts: the parts it is made of.
        weights: the weight of each part's margin.
        params: LightGBM parameters of its tree parts (chosen by the search).
        trees_per_row: trees of each tree part per training row (early-stopped on the validation period).
    """

    kind: str
    parts: list[str]
    weights: list[float] = field(default_factory=lambda: [1.0])
    params: dict[str, Any] = field(default_factory=dict)
    trees_per_row: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for reports."""
        if self.kind != "blend":
            return DESCRIPTIONS[self.kind]
        return "blend: " + " + ".join(f"{w:.2f} x {p}" for p, w in zip(self.parts, self.weights, strict=True))


@dataclass
class Selection:
    """What the validation period decided.

    Attributes:
        chosen: the winning candidate's recipe.
        recipes: every candidate's recipe, the baselines included.
        metrics: candidate to its validation ``roc_auc``, ``pr_auc`` and ``score`` (their mean).
        margins: candidate to its margins on the validation rows (the blend's out of fold).
        tuning: the LightGBM search (parameters, trees, trials).
    """

    chosen: Recipe
    recipes: dict[str, Recipe]
    metrics: dict[str, dict[str, float]]
    margins: dict[str, np.ndarray]
    tuning: dict[str, Any]


def available(feature_names: Sequence[str]) -> list[str]:
    """The candidates the features allow (BG/NBD needs its feature, the rules their columns).

    Args:
        feature_names: the model's features.

    Returns:
        Candidate names in :data:`CANDIDATES` order.
    """
    names = set(feature_names)
    out = []
    for kind in CANDIDATES:
        if kind in ("bgnbd", "lightgbm_bgnbd") and BTYD_PRIOR_FEATURE not in names:
            continue
        if kind == "recency" and RECENCY_COLUMN not in names:
            continue
        if kind == "logistic_rfm" and not rfm_columns(feature_names):
            continue
        out.append(kind)
    if sum(k in out for k in ("logistic_rfm", "bgnbd", "lightgbm", "lightgbm_bgnbd")) < 3:
        out = [k for k in out if k != "blend"]
    return out


def rfm_columns(columns: Sequence[str]) -> list[str]:
    """The inputs of the logistic RFM model: raw recency, frequency and value plus the ``rfm_*_score`` columns present.

    Args:
        columns: the available columns.

    Returns:
        The column names, in a fixed order.
    """
    scores = sorted(c for c in columns if c.startswith("rfm_") and c.endswith("_score"))
    return [c for c in RFM_RAW if c in columns] + scores


def fit_part(part: str, rows: pd.DataFrame, ctx: Context, *, params: Mapping[str, Any] | None = None, rounds: int = 1) -> Component:
    """Fit one part on ``rows`` (trees: for a fixed number of rounds).

    Args:
        part: a name of :data:`BASELINES` or :data:`TREES`.
        rows: labelled snapshots.
        ctx: the shared features and seed.
        params: LightGBM parameters of a tree part.
        rounds: trees of a tree part.

    Returns:
        The fitted component.
    """
    if part == "recency":
        return score_column(RECENCY_COLUMN, "log")
    if part == "bgnbd":
        return score_column(BTYD_PRIOR_FEATURE, "logit")
    y = rows[LABEL].to_numpy(dtype=int)
    if part == "logistic_rfm":
        columns = rfm_columns(ctx.feature_names)
        return fit_linear(rows, y, columns, ["log" if c in RFM_RAW else "identity" for c in columns], seed=ctx.seed)
    x = ctx.prepare(rows)
    prior = BTYD_PRIOR_FEATURE if part == "lightgbm_bgnbd" else None
    init = prior_logit(x[prior]) if prior else None
    booster = fit_rounds(x, y, lgb_params(params, seed=ctx.seed, num_threads=ctx.threads), rounds, init_score=init)
    return TreeComponent(booster, ctx.feature_names, prior, float(init.mean()) if init is not None else 0.0)


def fit_recipe(recipe: Recipe, rows: pd.DataFrame, ctx: Context) -> list[Component]:
    """Fit every part of a recipe on ``rows``, trees in proportion to the rows.

    Args:
        recipe: what the validation period chose.
        rows: labelled snapshots.
        ctx: the shared features and seed.

    Returns:
        The components, in ``recipe.parts`` order.
    """
    return [
        fit_part(part, rows, ctx, params=recipe.params, rounds=max(1, int(round(recipe.trees_per_row.get(part, 0.0) * len(rows)))))
        for part in recipe.parts
    ]


def build_model(recipe: Recipe, components: Sequence[Component], ctx: Context, calibrator: PlattCalibrator, metadata: Mapping[str, Any]) -> ChurnModel:
    """A :class:`ChurnModel` of fitted components with the recipe's weights.

    Args:
        recipe: the candidate.
        components: from :func:`fit_recipe`.
        ctx: the shared features.
        calibrator: Platt scaling of the weighted margin.
        metadata: what to record with the model (``kind`` is added).

    Returns:
        The model.
    """
    return ChurnModel(ctx.feature_names, ctx.categories, components, recipe.weights, calibrator, {**metadata, "kind": recipe.kind})


def ranking(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC (churn positive) and their mean, the selection ``score``.

    Args:
        y: 0/1 labels.
        score: higher = riskier.

    Returns:
        ``roc_auc``, ``pr_auc``, ``score``.
    """
    roc, pr = float(roc_auc_score(y, score)), float(average_precision_score(y, score))
    return {"roc_auc": roc, "pr_auc": pr, "score": (roc + pr) / 2}


def select(split: TimeSplit, ctx: Context, *, trials: int, timeout_s: float | None, progress: Progress) -> Selection:
    """Fit every candidate on the training period and pick the best on the validation period.

    Args:
        split: the time split.
        ctx: the shared features and seed.
        trials: Optuna trial budget for LightGBM.
        timeout_s: Optuna time budget.
        progress: one-line status messages.

    Returns:
        The chosen recipe, every recipe and their validation figures.
    """
    kinds = available(ctx.feature_names)
    y_valid = split.valid[LABEL].to_numpy(dtype=int)
    recipes: dict[str, Recipe] = {}
    margins: dict[str, np.ndarray] = {}
    for part in (k for k in kinds if k in BASELINES):
        component = fit_part(part, split.train, ctx)
        recipes[part] = Recipe(part, [part])
        margins[part] = ChurnModel(ctx.feature_names, ctx.categories, [component]).raw_score(split.valid)
    tuning: dict[str, Any] = {}
    trees = [k for k in kinds if k in TREES]
    if trees:
        tuning = _fit_trees(split, ctx, trees, recipes, margins, trials=trials, timeout_s=timeout_s, progress=progress)
    if "blend" in kinds:
        best_tree = max(trees, key=lambda k: ranking(y_valid, margins[k])["score"])
        parts = [best_tree, *(p for p in ("logistic_rfm", "bgnbd") if p in recipes)]
        weights = [1.0 / max(float(np.std(margins[p])), 1e-9) / len(parts) for p in parts]
        margins["blend"] = np.column_stack([margins[p] for p in parts]) @ np.asarray(weights)
        recipes["blend"] = Recipe("blend", parts, weights, recipes[best_tree].params, dict(recipes[best_tree].trees_per_row))
    metrics = {kind: ranking(y_valid, margins[kind]) for kind in recipes}
    chosen = choose(metrics, margins, y_valid, seed=ctx.seed)
    progress(f"chosen on the validation period: {chosen} ({recipes[chosen].describe()})")
    return Selection(recipes[chosen], recipes, metrics, margins, tuning)


def choose(metrics: Mapping[str, Mapping[str, float]], margins: Mapping[str, np.ndarray], y: np.ndarray, *, seed: int) -> str:
    """The candidate to serve: the best validation score, unless its lead over the blend is within the noise.

    A validation period of a few hundred customers cannot tell apart candidates a few thousandths
    apart, and the period the model will serve lies further ahead still. The blend, which averages
    different kinds of model, is the safer choice there (measured on the rolling backtest), so a
    single candidate replaces it only when its lead is significant at 5% (one-sided, paired bootstrap
    over the validation customers). On equal scores the simpler candidate wins.

    Args:
        metrics: candidate to its validation figures (``score``).
        margins: candidate to its validation margins.
        y: the validation labels.
        seed: the bootstrap's seed.

    Returns:
        The candidate's name.
    """
    best = max(metrics, key=lambda k: (metrics[k]["score"], -CANDIDATES.index(k)))
    if best == "blend" or "blend" not in metrics:
        return best
    gap = metrics[best]["score"] - metrics["blend"]["score"]
    return "blend" if gap <= SIGNIFICANT * _score_gap_se(y, margins[best], margins["blend"], seed=seed) else best


def _score_gap_se(y: np.ndarray, ours: np.ndarray, theirs: np.ndarray, *, seed: int, draws: int = 200) -> float:
    """The bootstrap standard error of the difference of two validation scores (customers resampled, at most 20,000 rows)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(y), size=min(len(y), SE_ROWS), replace=False)
    y, ours, theirs = y[rows], ours[rows], theirs[rows]
    gaps = []
    for _ in range(draws):
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(idx):
            gaps.append(ranking(y[idx], ours[idx])["score"] - ranking(y[idx], theirs[idx])["score"])
    return float(np.std(gaps)) if gaps else float("inf")


def _fit_trees(
    split: TimeSplit,
    ctx: Context,
    trees: Sequence[str],
    recipes: dict[str, Recipe],
    margins: dict[str, np.ndarray],
    *,
    trials: int,
    timeout_s: float | None,
    progress: Progress,
) -> dict[str, Any]:
    """Tune LightGBM once (the first tree candidate), early-stop each tree candidate with those parameters."""
    train_x, valid_x = ctx.prepare(split.train), ctx.prepare(split.valid)
    train_y, valid_y = (p[LABEL].to_numpy(dtype=int) for p in (split.train, split.valid))
    inits = {
        kind: (prior_logit(train_x[BTYD_PRIOR_FEATURE]), prior_logit(valid_x[BTYD_PRIOR_FEATURE])) if kind == "lightgbm_bgnbd" else None
        for kind in trees
    }
    searched = trees[-1]
    progress(f"tuning {searched}: up to {trials} trials, {timeout_s or 'no'} s budget")
    result = tune(
        train_x, train_y, valid_x, valid_y, trials=trials, timeout_s=timeout_s, seed=ctx.seed, num_threads=ctx.threads,
        progress=progress, init_scores=inits[searched], short_history=split.short,
    )
    for kind in trees:
        booster = result.booster if kind == searched else _early_stopped(train_x, train_y, valid_x, valid_y, result, inits[kind], ctx)
        init = inits[kind]
        component = TreeComponent(booster, ctx.feature_names, BTYD_PRIOR_FEATURE if init else None, float(init[0].mean()) if init else 0.0)
        margins[kind] = component.margin(ChurnModel(ctx.feature_names, ctx.categories, [component]).encode(split.valid))
        recipes[kind] = Recipe(kind, [kind], params=dict(result.tuned), trees_per_row={kind: booster.num_trees() / len(split.train)})
    return {
        "searched": searched,
        "params": result.tuned,
        "valid_pr_auc": result.valid_pr_auc,
        "trees": {kind: int(round(recipes[kind].trees_per_row[kind] * len(split.train))) for kind in trees},
        "trials": len(result.trials),
        "trials_complete": result.n_complete,
        "trials_pruned": result.n_pruned,
        "seconds": round(result.seconds, 2),
        "history": result.trials,
    }


def _early_stopped(
    train_x: pd.DataFrame, train_y: np.ndarray, valid_x: pd.DataFrame, valid_y: np.ndarray, result: TuneResult, init: tuple[np.ndarray, np.ndarray] | None, ctx: Context
) -> Any:
    train_set = make_dataset(train_x, train_y, seed=ctx.seed, num_threads=ctx.threads, init_score=init[0] if init else None)
    valid_set = make_dataset(valid_x, valid_y, seed=ctx.seed, num_threads=ctx.threads, init_score=init[1] if init else None, reference=train_set)
    return fit_booster(train_set, valid_set, result.params)
