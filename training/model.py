"""The churn model: a LightGBM booster on the raw features plus a calibrator fitted on the validation period.

Categorical features go to LightGBM as pandas ``category`` columns whose category lists are fixed
at training time and stored with the model; a value not seen in training becomes missing. The
calibrator is Platt scaling on the booster's margin, which is monotone: the per-feature
contributions of the margin explain the order of the calibrated probabilities.

A model may start from a prior: the booster is trained with ``init_score = logit(p)`` of one input
column (the BG/NBD chance of no order, ``btyd_p_no_order_90d``) and learns corrections to it. Its
margin is then the trees' margin plus that logit; :class:`PriorBooster` adds it wherever the booster
predicts (so code that calls ``model.booster.predict`` gets the full margin), and
:meth:`ChurnModel.contributions` reports it as one more column, ``btyd_prior``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, logit

BOOSTER_FILE = "booster.txt"
MODEL_FILE = "churn_model.json"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
PRIOR_NAME = "btyd_prior"
"""The contribution column of the prior (the BG/NBD starting point of the margin)."""
PRIOR_CLIP = 1e-6


def prior_logit(p: np.ndarray | pd.Series) -> np.ndarray:
    """The initial score of a booster that starts from probability ``p``: ``logit(clip(p))``, 0 where missing.

    Args:
        p: probabilities (the prior column).

    Returns:
        Log-odds, shape [n].
    """
    values = np.asarray(pd.to_numeric(pd.Series(np.asarray(p, dtype=object).ravel()), errors="coerce"), dtype=float)
    out = logit(np.clip(values, PRIOR_CLIP, 1.0 - PRIOR_CLIP))
    return np.where(np.isfinite(out), out, 0.0)


class PriorBooster:
    """A LightGBM booster trained from ``init_score = logit(x[prior])``, predicting as if the prior were in it.

    ``predict`` accepts what :meth:`lightgbm.Booster.predict` accepts (a prepared frame or the encoded
    matrix in ``feature_name()`` order): ``raw_score`` is the trees' margin plus the prior logit,
    probabilities are its sigmoid, and ``pred_contrib`` keeps LightGBM's shape (one column per
    feature, then the base value) with the prior folded into the base value, so that each row
    still sums to the margin. Everything else is the wrapped booster's.

    Args:
        booster: the trees.
        prior_feature: the input column holding the prior probability.
    """

    def __init__(self, booster: lgb.Booster, prior_feature: str) -> None:
        names = list(booster.feature_name())
        if prior_feature not in names:
            raise ValueError(f"the prior column {prior_feature} is not an input of the booster")
        self.inner = booster
        self.prior_feature = prior_feature
        self.prior_index = names.index(prior_feature)

    def prior(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The prior logit of each row.

        Args:
            data: the booster's input.

        Returns:
            Shape [n].
        """
        column = data[self.prior_feature] if isinstance(data, pd.DataFrame) else np.asarray(data)[:, self.prior_index]
        return prior_logit(column)

    def predict(self, data: pd.DataFrame | np.ndarray, *args: Any, raw_score: bool = False, pred_contrib: bool = False, **kwargs: Any) -> np.ndarray:
        """Like :meth:`lightgbm.Booster.predict`, with the prior added to the margin.

        Args:
            data: the booster's input.
            *args: passed on.
            raw_score: return the margin.
            pred_contrib: return contributions (prior in the base value column).
            **kwargs: passed on.

        Returns:
            Margins, probabilities or contributions.
        """
        prior = self.prior(data)
        if pred_contrib:
            out = np.array(self.inner.predict(data, *args, pred_contrib=True, **kwargs), dtype=float)
            out[:, -1] += prior
            return out
        margin = np.asarray(self.inner.predict(data, *args, raw_score=True, **kwargs), dtype=float) + prior
        return margin if raw_score else expit(margin)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def lgb_params(overrides: Mapping[str, Any] | None = None, *, seed: int = 42, num_threads: int = 2) -> dict[str, Any]:
    """LightGBM parameters for a deterministic binary churn model.

    Args:
        overrides: tuned parameters that replace the defaults.
        seed: the seed of every random choice LightGBM makes.
        num_threads: threads to use (fixed, so that runs are reproducible).

    Returns:
        The parameter dict for :func:`lightgbm.train`.
    """
    params: dict[str, Any] = {
        "objective": "binary",
        "metric": ["average_precision"],
        "learning_rate": 0.1,
        "num_leaves": 31,
        "min_child_samples": 40,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "cat_smooth": 10.0,
        "min_data_per_group": 50,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
        "seed": seed,
        "verbosity": -1,
    }
    params.update(overrides or {})
    return params


def dataset_params(*, seed: int = 42, num_threads: int = 2) -> dict[str, Any]:
    """Parameters of the binned LightGBM datasets, shared by every trial of a search.

    Args:
        seed: the seed of the binning.
        num_threads: threads to use.

    Returns:
        Parameters for :class:`lightgbm.Dataset`.
    """
    return {
        "max_bin": 255,
        "feature_pre_filter": False,
        "data_random_seed": seed,
        "num_threads": num_threads,
        "verbosity": -1,
        "deterministic": True,
        "force_row_wise": True,
    }


def category_lists(frame: pd.DataFrame, categorical: Sequence[str]) -> dict[str, list[str]]:
    """The sorted distinct values of each categorical column, as strings (missing values left out).

    Args:
        frame: the training rows.
        categorical: the categorical feature names.

    Returns:
        Column name to its category list.
    """
    out: dict[str, list[str]] = {}
    for col in categorical:
        values = frame[col].dropna().astype("string")
        out[col] = sorted(values.unique().tolist())
    return out


@dataclass(frozen=True)
class PlattCalibrator:
    """Platt scaling on the LightGBM margin: ``p = 1 / (1 + exp(-(slope * margin + intercept)))``.

    Attributes:
        slope: the multiplier of the margin (positive for a useful model).
        intercept: the shift, which corrects the base rate of the validation period.
    """

    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        """Fit slope and intercept by maximum likelihood.

        Args:
            margin: the booster's raw scores on the calibration rows.
            y: their 0/1 labels.

        Returns:
            The fitted calibrator.
        """
        margin = np.asarray(margin, dtype=float)
        y = np.asarray(y, dtype=float)

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = w[0] * margin + w[1]
            p = expit(z)
            nll = np.sum(np.logaddexp(0.0, z) - y * z)
            g = p - y
            return float(nll), np.array([np.dot(g, margin), g.sum()])

        res = minimize(loss, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        return cls(slope=float(res.x[0]), intercept=float(res.x[1]))

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for margins.

        Args:
            margin: raw scores.

        Returns:
            Probabilities in (0, 1).
        """
        return expit(self.slope * np.asarray(margin, dtype=float) + self.intercept)


class ChurnModel:
    """A trained churn model: booster, calibrator, the feature list and what it was trained on.

    Attributes:
        booster: the LightGBM booster (trees on the raw features).
        feature_names: the model's input columns, in order.
        categorical: categorical feature name to its category list (fixed at training).
        calibrator: Platt scaling of the margin, fitted on the validation period.
        metadata: feature set version, horizon, training date, periods, test metrics, dataset.
        prior_feature: the input column whose logit the booster started from (``None``: no prior).
        booster: the trees, wrapped in :class:`PriorBooster` when there is a prior.
    """

    def __init__(
        self,
        booster: lgb.Booster | PriorBooster,
        feature_names: Sequence[str],
        categorical: Mapping[str, Sequence[str]],
        calibrator: PlattCalibrator | None = None,
        metadata: Mapping[str, Any] | None = None,
        prior_feature: str | None = None,
    ) -> None:
        if isinstance(booster, PriorBooster):
            prior_feature = prior_feature or booster.prior_feature
            booster = booster.inner
        self.prior_feature = prior_feature
        self.booster: lgb.Booster | PriorBooster = PriorBooster(booster, prior_feature) if prior_feature else booster
        self.feature_names = list(feature_names)
        self.categorical = {name: list(values) for name, values in categorical.items()}
        self.calibrator = calibrator or PlattCalibrator()
        self.metadata: dict[str, Any] = dict(metadata or {})
        if list(booster.feature_name()) != self.feature_names:
            raise ValueError(
                f"the booster's features {booster.feature_name()} differ from the model's {self.feature_names}"
            )

    @property
    def trees(self) -> lgb.Booster:
        """The LightGBM booster itself (without the prior)."""
        return self.booster.inner if isinstance(self.booster, PriorBooster) else self.booster

    @property
    def contribution_names(self) -> list[str]:
        """The columns of :meth:`contributions`: the features, then ``btyd_prior`` when the model has a prior."""
        return [*self.feature_names, PRIOR_NAME] if self.prior_feature else list(self.feature_names)

    def prepare(self, df: pd.DataFrame) -> pd.DataFrame:
        """The model's input frame: its columns in order, categories fixed, everything else float.

        Args:
            df: rows with (at least) every feature column; extra columns are ignored.

        Returns:
            A new frame with exactly ``feature_names``.

        Raises:
            ValueError: a feature column is missing, or a numeric feature holds text.
        """
        return prepare_features(df, self.feature_names, self.categorical)

    def raw_score(self, df: pd.DataFrame) -> np.ndarray:
        """The booster's margin (log-odds before calibration) per row, the prior's logit included.

        Args:
            df: rows with the feature columns.

        Returns:
            An array of shape [n].
        """
        return np.asarray(self.booster.predict(self.prepare(df), raw_score=True), dtype=float)

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """The calibrated probability that each customer is lost within the horizon.

        Args:
            df: rows with the feature columns.

        Returns:
            An array of shape [n] with values in (0, 1).
        """
        return self.calibrator(self.raw_score(df))

    def uncalibrated_proba(self, df: pd.DataFrame) -> np.ndarray:
        """The booster's own probability (sigmoid of the margin), for calibration reports.

        Args:
            df: rows with the feature columns.

        Returns:
            An array of shape [n].
        """
        return expit(self.raw_score(df))

    def contributions(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature contributions to the margin (TreeSHAP) and the base value.

        Args:
            df: rows with the feature columns.

        Returns:
            ``(contrib [n, k], base [n])`` with ``contrib.sum(1) + base == raw_score(df)``;
            column ``j`` of ``contrib`` belongs to ``contribution_names[j]``: the features and,
            with a prior, a last column holding the prior's logit (the trees' base value stays the base).
        """
        prepared = self.prepare(df)
        out = np.asarray(self.trees.predict(prepared, pred_contrib=True), dtype=float)
        contrib, base = out[:, :-1], out[:, -1]
        if isinstance(self.booster, PriorBooster):
            contrib = np.column_stack([contrib, self.booster.prior(prepared)])
        return contrib, base

    def importance(self, df: pd.DataFrame) -> pd.Series:
        """Mean absolute contribution of each feature over ``df``, largest first.

        Args:
            df: rows with the feature columns.

        Returns:
            A series indexed by :attr:`contribution_names`.
        """
        contrib, _ = self.contributions(df)
        return pd.Series(np.abs(contrib).mean(axis=0), index=self.contribution_names).sort_values(ascending=False, kind="stable")

    def save(self, folder: Path) -> Path:
        """Write the model to ``folder`` (the booster as LightGBM text, the rest as JSON).

        Args:
            folder: a directory (created when missing).

        Returns:
            The folder.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / BOOSTER_FILE).write_text(self.trees.model_to_string())
        spec = {
            "format_version": FORMAT_VERSION,
            "prior_feature": self.prior_feature,
            "feature_names": self.feature_names,
            "categorical": self.categorical,
            "calibrator": {"kind": "platt", "slope": self.calibrator.slope, "intercept": self.calibrator.intercept},
            "metadata": self.metadata,
        }
        (folder / MODEL_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path) -> ChurnModel:
        """Read a model written by :meth:`save`.

        Args:
            folder: the directory.

        Returns:
            The model.
        """
        folder = Path(folder)
        spec = json.loads((folder / MODEL_FILE).read_text())
        if spec.get("format_version") not in READABLE_FORMATS:
            raise ValueError(f"{folder} holds a churn model of format {spec.get('format_version')}, expected one of {READABLE_FORMATS}")
        booster = lgb.Booster(model_str=(folder / BOOSTER_FILE).read_text())
        cal = spec["calibrator"]
        return cls(
            booster=booster,
            feature_names=spec["feature_names"],
            categorical=spec["categorical"],
            calibrator=PlattCalibrator(slope=cal["slope"], intercept=cal["intercept"]),
            metadata=spec["metadata"],
            prior_feature=spec.get("prior_feature"),
        )

    def __repr__(self) -> str:
        prior = f", prior={self.prior_feature}" if self.prior_feature else ""
        return (
            f"ChurnModel({len(self.feature_names)} features{prior}, {self.trees.num_trees()} trees, "
            f"horizon={self.metadata.get('horizon_days')}, features={self.metadata.get('feature_set_version')})"
        )


def prepare_features(df: pd.DataFrame, feature_names: Sequence[str], categorical: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Select and type the feature columns the way the booster was trained on them.

    Args:
        df: rows with the feature columns.
        feature_names: the columns to keep, in order.
        categorical: categorical column to its fixed category list (other values become missing).

    Returns:
        A new frame: categorical columns as pandas ``category`` with the given categories, the rest float64.

    Raises:
        ValueError: a feature column is missing, or a numeric feature holds text.
    """
    missing = [name for name in feature_names if name not in df.columns]
    if missing:
        raise ValueError(f"missing feature column(s) {', '.join(missing)}: the model needs {len(feature_names)} features")
    columns: dict[str, pd.Series] = {}
    for name in feature_names:
        col = df[name]
        if name in categorical:
            categories = pd.Index(list(categorical[name]), dtype=object)
            codes = categories.get_indexer(col.astype("string").astype(object).where(col.notna(), None))
            columns[name] = pd.Series(pd.Categorical.from_codes(codes, categories=categories), index=df.index, name=name)
        else:
            if col.dtype == bool:
                col = col.astype("float64")
            numbers = pd.to_numeric(col, errors="coerce").astype("float64")
            bad = col.notna() & numbers.isna()
            if bad.any():
                raise ValueError(f"feature column {name} must be numeric, got values like {col[bad].head(3).tolist()}")
            columns[name] = numbers
    return pd.DataFrame(columns, index=df.index)


def fit_booster(
    train_x: pd.DataFrame,
    train_y: np.ndarray,
    valid_x: pd.DataFrame,
    valid_y: np.ndarray,
    params: Mapping[str, Any],
    *,
    num_boost_round: int = 1000,
    early_stopping_rounds: int = 30,
    callbacks: Sequence[Callable[..., None]] = (),
    datasets: tuple[lgb.Dataset, lgb.Dataset] | None = None,
    init_scores: tuple[np.ndarray, np.ndarray] | None = None,
) -> lgb.Booster:
    """Train a booster with early stopping on the validation rows, trimmed to its best iteration.

    Args:
        train_x: prepared training features.
        train_y: training labels.
        valid_x: prepared validation features.
        valid_y: validation labels.
        params: LightGBM parameters (see :func:`lgb_params`); the first metric (validation PR-AUC)
            drives early stopping.
        num_boost_round: most trees.
        early_stopping_rounds: stop after this many rounds without improvement.
        callbacks: extra LightGBM callbacks (e.g. the tuner's pruning).
        datasets: already-binned ``(train, valid)`` datasets to reuse instead of building new ones.
        init_scores: ``(train, valid)`` initial margins (the prior's logit) when ``datasets`` is not given.

    Returns:
        A booster holding exactly the best iteration's trees (without the initial margins).
    """
    seed = int(params.get("seed", 42))
    threads = int(params.get("num_threads", 2))
    if datasets is None:
        datasets = make_datasets(train_x, train_y, valid_x, valid_y, seed=seed, num_threads=threads, init_scores=init_scores)
    train_set, valid_set = datasets
    booster = lgb.train(
        dict(params),
        train_set,
        num_boost_round=num_boost_round,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False), *callbacks],
    )
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def make_datasets(
    train_x: pd.DataFrame,
    train_y: np.ndarray,
    valid_x: pd.DataFrame,
    valid_y: np.ndarray,
    *,
    seed: int,
    num_threads: int,
    init_scores: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[lgb.Dataset, lgb.Dataset]:
    """Binned LightGBM datasets for training and validation (validation binned like training).

    Args:
        train_x: prepared training features (categorical columns as pandas categories).
        train_y: training labels.
        valid_x: prepared validation features.
        valid_y: validation labels.
        seed: binning seed.
        num_threads: threads.
        init_scores: ``(train, valid)`` initial margins (the prior's logit); the boosters learn on top of them.

    Returns:
        ``(train_set, valid_set)``, constructed.
    """
    params = dataset_params(seed=seed, num_threads=num_threads)
    train_init, valid_init = init_scores if init_scores is not None else (None, None)
    train_set = lgb.Dataset(
        train_x, label=np.asarray(train_y, dtype=float), init_score=train_init, params=params, categorical_feature="auto", free_raw_data=False
    )
    valid_set = lgb.Dataset(
        valid_x, label=np.asarray(valid_y, dtype=float), init_score=valid_init, reference=train_set, params=params, free_raw_data=False
    )
    train_set.construct()
    valid_set.construct()
    return train_set, valid_set


def fit_rounds(
    train_x: pd.DataFrame, train_y: np.ndarray, params: Mapping[str, Any], rounds: int, *, init_score: np.ndarray | None = None
) -> lgb.Booster:
    """Train a booster for a fixed number of rounds, without validation (the refit after cross-validation).

    Args:
        train_x: prepared features.
        train_y: labels.
        params: LightGBM parameters.
        rounds: trees to grow (at least 1).
        init_score: initial margins (the prior's logit), or None.

    Returns:
        The booster.
    """
    seed = int(params.get("seed", 42))
    threads = int(params.get("num_threads", 2))
    train_set = lgb.Dataset(
        train_x, label=np.asarray(train_y, dtype=float), init_score=init_score,
        params=dataset_params(seed=seed, num_threads=threads), categorical_feature="auto", free_raw_data=False,
    )
    return lgb.train(dict(params), train_set, num_boost_round=max(1, int(rounds)))
