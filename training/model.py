"""The served churn model: one or more scoring components on the same encoded features, a weighted sum
of their margins, and a calibrator.

Every candidate the training compares is a :class:`ChurnModel`, so whichever wins is served the same
way, even a baseline:

- :class:`TreeComponent`: LightGBM trees, optionally boosted from a prior (the BG/NBD chance of no
  order, ``btyd_p_no_order_90d``, whose logit is the starting margin: the trees learn corrections).
- :class:`LinearComponent`: a linear margin on transformed columns (the logistic RFM model, the BG/NBD
  score alone, the recency rule).

A blend is several components with weights. Margins are additive, and so are the per-feature
contributions (TreeSHAP for trees, ``coefficient x standardised value`` for linear parts; the prior's
logit counts for its own column), so every score is explained by its features exactly:
``contributions.sum(1) + base == margin``. The calibrator (Platt scaling of the margin) is monotone,
so the contributions explain the order of the probabilities too.

Categorical features go to LightGBM as pandas ``category`` columns whose category lists are fixed at
training time and stored with the model; a value not seen in training becomes missing. The encoded
matrix (:meth:`ChurnModel.encode`) holds the category codes as floats, the form serving keeps in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

MODEL_FILE = "churn_model.json"
FORMAT_VERSION = 3
PRIOR_CLIP = 1e-6
Transform = Literal["identity", "log", "logit"]


def prior_logit(p: np.ndarray | pd.Series) -> np.ndarray:
    """The starting margin of a booster that starts from probability ``p``: ``logit(clip(p))``, 0 where missing.

    Args:
        p: probabilities (the prior column).

    Returns:
        Log-odds, shape [n].
    """
    values = np.asarray(pd.to_numeric(pd.Series(np.asarray(p, dtype=object).ravel()), errors="coerce"), dtype=float)
    out = logit(np.clip(values, PRIOR_CLIP, 1.0 - PRIOR_CLIP))
    return np.where(np.isfinite(out), out, 0.0)


def transform(values: np.ndarray, how: Transform) -> np.ndarray:
    """A column as a linear part sees it.

    Args:
        values: the raw values.
        how: "identity"; "log": ``sign(x) * log1p(|x|)`` (amounts and counts); "logit": of a probability.

    Returns:
        The transformed values (missing stays missing).
    """
    values = np.asarray(values, dtype=float)
    if how == "log":
        return np.sign(values) * np.log1p(np.abs(values))
    if how == "logit":
        return np.where(np.isnan(values), np.nan, logit(np.clip(values, PRIOR_CLIP, 1.0 - PRIOR_CLIP)))
    return values


@dataclass
class TreeComponent:
    """LightGBM trees on some of the model's columns.

    Attributes:
        booster: the trees (fitted on exactly ``columns``, in order).
        columns: the input columns.
        prior: the column whose logit is the starting margin, or ``None``.
        prior_mean: the mean of that logit on the training rows (the base the prior's contribution is measured from).
    """

    booster: lgb.Booster
    columns: list[str]
    prior: str | None = None
    prior_mean: float = 0.0
    kind: str = "lightgbm"

    def __post_init__(self) -> None:
        if list(self.booster.feature_name()) != list(self.columns):
            raise ValueError(f"the booster's features {self.booster.feature_name()} differ from the component's {self.columns}")
        if self.prior is not None and self.prior not in self.columns:
            raise ValueError(f"the prior column {self.prior} is not an input of the trees")

    def _prior(self, x: np.ndarray) -> np.ndarray:
        return prior_logit(x[:, self.columns.index(self.prior)]) if self.prior is not None else np.zeros(len(x))

    def margin(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        """The trees' margin plus the prior's logit.

        Args:
            x: encoded values of ``columns``, shape [n, len(columns)].
            threads: LightGBM threads (0: its default).

        Returns:
            Shape [n].
        """
        return np.asarray(self.booster.predict(x, raw_score=True, num_threads=threads), dtype=float) + self._prior(x)

    def contributions(self, x: np.ndarray, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """TreeSHAP contributions, the prior's logit (less its mean) added to its own column.

        Args:
            x: encoded values of ``columns``.
            threads: LightGBM threads.

        Returns:
            ``(contrib [n, len(columns)], base [n])`` summing to :meth:`margin`.
        """
        out = np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=threads), dtype=float)
        contrib, base = out[:, :-1], out[:, -1]
        if self.prior is not None:
            contrib[:, self.columns.index(self.prior)] += self._prior(x) - self.prior_mean
            base = base + self.prior_mean
        return contrib, base

    def to_spec(self) -> dict[str, Any]:
        """The component as JSON-ready data (the trees as LightGBM's text format)."""
        return {"kind": self.kind, "columns": self.columns, "prior": self.prior, "prior_mean": self.prior_mean, "trees": self.booster.model_to_string()}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TreeComponent:
        """Read what :meth:`to_spec` wrote."""
        booster = lgb.Booster(model_str=spec["trees"])
        return cls(booster, list(spec["columns"]), spec.get("prior"), float(spec.get("prior_mean", 0.0)))


@dataclass
class LinearComponent:
    """A linear margin: ``intercept + sum_j coef_j * (t_j(x_j, missing -> fill_j) - mean_j) / scale_j``.

    Attributes:
        columns: the input columns (numeric).
        transforms: how each column is transformed (see :func:`transform`).
        fill: the value a missing input takes (its training median).
        mean: the transformed training mean of each column.
        scale: the transformed training standard deviation of each column.
        coef: the weight of each standardised column.
        intercept: the margin of a customer at the training mean.
    """

    columns: list[str]
    transforms: list[Transform]
    fill: list[float]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float = 0.0
    kind: str = "linear"

    def _standardised(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), len(self.columns)))
        for j, how in enumerate(self.transforms):
            column = np.where(np.isnan(x[:, j]), self.fill[j], x[:, j])
            out[:, j] = (transform(column, how) - self.mean[j]) / self.scale[j]
        return out

    def margin(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        """The linear margin.

        Args:
            x: encoded values of ``columns``, shape [n, len(columns)].
            threads: unused.

        Returns:
            Shape [n].
        """
        return self.intercept + self._standardised(x) @ np.asarray(self.coef, dtype=float)

    def contributions(self, x: np.ndarray, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``coef_j x standardised value``: the distance from the average customer, per column.

        Args:
            x: encoded values of ``columns``.
            threads: unused.

        Returns:
            ``(contrib [n, len(columns)], base [n])`` summing to :meth:`margin`.
        """
        return self._standardised(x) * np.asarray(self.coef, dtype=float), np.full(len(x), self.intercept)

    def to_spec(self) -> dict[str, Any]:
        """The component as JSON-ready data."""
        return {
            "kind": self.kind, "columns": self.columns, "transforms": self.transforms, "fill": self.fill,
            "mean": self.mean, "scale": self.scale, "coef": self.coef, "intercept": self.intercept,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> LinearComponent:
        """Read what :meth:`to_spec` wrote."""
        return cls(
            columns=list(spec["columns"]), transforms=list(spec["transforms"]), fill=list(spec["fill"]), mean=list(spec["mean"]),
            scale=list(spec["scale"]), coef=list(spec["coef"]), intercept=float(spec["intercept"]),
        )


Component = TreeComponent | LinearComponent


def fit_linear(
    frame: pd.DataFrame, y: np.ndarray, columns: Sequence[str], transforms: Sequence[Transform], *, penalty: float = 1.0, seed: int = 42
) -> LinearComponent:
    """A logistic regression on standardised, transformed columns, as a :class:`LinearComponent`.

    Args:
        frame: the training rows.
        y: their 0/1 labels.
        columns: the numeric input columns.
        transforms: one per column.
        penalty: the inverse L2 strength (scikit-learn's ``C``).
        seed: random state of the solver.

    Returns:
        The fitted component.
    """
    raw = frame[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    fill = [float(np.nanmedian(raw[:, j])) if np.isfinite(raw[:, j]).any() else 0.0 for j in range(raw.shape[1])]
    filled = np.where(np.isnan(raw), np.asarray(fill), raw)
    moved = np.column_stack([transform(filled[:, j], how) for j, how in enumerate(transforms)])
    mean = moved.mean(axis=0)
    scale = np.where(moved.std(axis=0) > 0, moved.std(axis=0), 1.0)
    fitted = LogisticRegression(C=penalty, max_iter=2000, random_state=seed).fit((moved - mean) / scale, np.asarray(y, dtype=int))
    return LinearComponent(
        list(columns), list(transforms), fill, mean.tolist(), scale.tolist(), fitted.coef_[0].tolist(), float(fitted.intercept_[0])
    )


def score_column(column: str, how: Transform) -> LinearComponent:
    """One column as a score (higher = riskier), unscaled: the recency rule, the BG/NBD chance of no order.

    Args:
        column: the column.
        how: its transform.

    Returns:
        A component whose margin is the transformed column (missing: 0.5 for a probability, else 0).
    """
    fill = 0.5 if how == "logit" else 0.0
    return LinearComponent([column], [how], [fill], [0.0], [1.0], [1.0], 0.0)


@dataclass(frozen=True)
class PlattCalibrator:
    """Platt scaling on the margin: ``p = 1 / (1 + exp(-(slope * margin + intercept)))``.

    Attributes:
        slope: the multiplier of the margin (positive for a useful model).
        intercept: the shift, which sets the base rate of the calibration period.
    """

    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        """Fit slope and intercept by maximum likelihood.

        Args:
            margin: the model's raw scores on the calibration rows.
            y: their 0/1 labels.

        Returns:
            The fitted calibrator.
        """
        margin = np.asarray(margin, dtype=float)
        y = np.asarray(y, dtype=float)

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = w[0] * margin + w[1]
            g = expit(z) - y
            return float(np.sum(np.logaddexp(0.0, z) - y * z)), np.array([np.dot(g, margin), g.sum()])

        res = minimize(loss, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        return cls(slope=float(res.x[0]), intercept=float(res.x[1]))

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for margins."""
        return expit(self.slope * np.asarray(margin, dtype=float) + self.intercept)


class ChurnModel:
    """A churn model as served: the encoded features, its components and weights, and the calibrator.

    Attributes:
        feature_names: the model's input columns, in order (every component reads some of them).
        categorical: categorical feature name to its category list (fixed at training).
        components: the scoring parts.
        weights: the weight of each part's margin.
        calibrator: Platt scaling of the weighted margin.
        metadata: the candidate (``kind``), feature set version, horizon, periods, metrics, dataset.
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        categorical: Mapping[str, Sequence[str]],
        components: Sequence[Component],
        weights: Sequence[float] | None = None,
        calibrator: PlattCalibrator | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.feature_names = list(feature_names)
        self.categorical = {name: list(values) for name, values in categorical.items()}
        self.components = list(components)
        self.weights = [float(w) for w in (weights if weights is not None else [1.0] * len(self.components))]
        self.calibrator = calibrator or PlattCalibrator()
        self.metadata: dict[str, Any] = dict(metadata or {})
        if not self.components or len(self.weights) != len(self.components):
            raise ValueError("a churn model needs at least one component and one weight per component")
        position = {name: j for j, name in enumerate(self.feature_names)}
        unknown = [c for part in self.components for c in part.columns if c not in position]
        if unknown:
            raise ValueError(f"the components read column(s) {', '.join(unknown)}, which are not model features")
        self._index = [np.array([position[c] for c in part.columns], dtype=int) for part in self.components]

    @property
    def kind(self) -> str:
        """The candidate this model is (``lightgbm``, ``lightgbm_bgnbd``, ``logistic_rfm``, ``bgnbd``, ``recency``, ``blend``)."""
        return str(self.metadata.get("kind", "lightgbm"))

    @property
    def trees(self) -> list[lgb.Booster]:
        """The LightGBM boosters among the components."""
        return [part.booster for part in self.components if isinstance(part, TreeComponent)]

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

    def encode(self, df: pd.DataFrame) -> np.ndarray:
        """The encoded matrix: numbers as floats, categories as their codes (NaN when missing or unknown).

        Args:
            df: rows with the feature columns.

        Returns:
            Shape [rows, features] in ``feature_names`` order.
        """
        prepared = self.prepare(df)
        out = np.empty((len(prepared), len(self.feature_names)), dtype=np.float64)
        for j, name in enumerate(self.feature_names):
            column = prepared[name]
            if name in self.categorical:
                codes = column.cat.codes.to_numpy()
                out[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                out[:, j] = column.to_numpy(dtype=np.float64)
        return out

    def margin(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        """The weighted margin (log-odds before calibration) of encoded rows.

        Args:
            x: from :meth:`encode`.
            threads: LightGBM threads (0: its default).

        Returns:
            Shape [rows].
        """
        out = np.zeros(len(x))
        for part, weight, index in zip(self.components, self.weights, self._index, strict=True):
            out += weight * part.margin(x[:, index], threads)
        return out

    def explain(self, x: np.ndarray, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature contributions to the margin of encoded rows.

        Args:
            x: from :meth:`encode`.
            threads: LightGBM threads.

        Returns:
            ``(contrib [rows, features], base [rows])`` with ``contrib.sum(1) + base == margin(x)``.
        """
        contrib = np.zeros((len(x), len(self.feature_names)))
        base = np.zeros(len(x))
        for part, weight, index in zip(self.components, self.weights, self._index, strict=True):
            part_contrib, part_base = part.contributions(x[:, index], threads)
            contrib[:, index] += weight * part_contrib
            base += weight * part_base
        return contrib, base

    def raw_score(self, df: pd.DataFrame) -> np.ndarray:
        """The margin per row of a frame."""
        return self.margin(self.encode(df))

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """The calibrated probability that each customer is lost within the horizon.

        Args:
            df: rows with the feature columns.

        Returns:
            Shape [n], values in (0, 1).
        """
        return self.calibrator(self.raw_score(df))

    def contributions(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature contributions to the margin of a frame's rows (see :meth:`explain`)."""
        return self.explain(self.encode(df))

    def importance(self, df: pd.DataFrame) -> pd.Series:
        """Mean absolute contribution of each feature over ``df``, largest first.

        Args:
            df: rows with the feature columns.

        Returns:
            A series indexed by ``feature_names``.
        """
        contrib, _ = self.contributions(df)
        return pd.Series(np.abs(contrib).mean(axis=0), index=self.feature_names).sort_values(ascending=False, kind="stable")

    def save(self, folder: Path) -> Path:
        """Write the model to ``folder`` as one JSON file (trees in LightGBM's text format inside).

        Args:
            folder: a directory (created when missing).

        Returns:
            The folder.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        spec = {
            "format_version": FORMAT_VERSION,
            "feature_names": self.feature_names,
            "categorical": self.categorical,
            "components": [part.to_spec() for part in self.components],
            "weights": self.weights,
            "calibrator": {"kind": "platt", "slope": self.calibrator.slope, "intercept": self.calibrator.intercept},
            "metadata": self.metadata,
        }
        (folder / MODEL_FILE).write_text(json.dumps(spec, indent=1, sort_keys=True, default=str))
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
        if spec.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{folder} holds a churn model of format {spec.get('format_version')}, this version reads format {FORMAT_VERSION}: retrain it (`churn train`)"
            )
        readers: dict[str, Callable[[Mapping[str, Any]], Component]] = {"lightgbm": TreeComponent.from_spec, "linear": LinearComponent.from_spec}
        cal = spec["calibrator"]
        return cls(
            feature_names=spec["feature_names"],
            categorical=spec["categorical"],
            components=[readers[part["kind"]](part) for part in spec["components"]],
            weights=spec["weights"],
            calibrator=PlattCalibrator(slope=cal["slope"], intercept=cal["intercept"]),
            metadata=spec["metadata"],
        )

    def __repr__(self) -> str:
        parts = " + ".join(f"{w:.2f} {p.kind}" for p, w in zip(self.components, self.weights, strict=True))
        return f"ChurnModel({self.kind}: {parts}; {len(self.feature_names)} features, horizon={self.metadata.get('horizon_days')})"


def prepare_features(df: pd.DataFrame, feature_names: Sequence[str], categorical: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Select and type the feature columns the way the model was trained on them.

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
            codes = categories.get_indexer(pd.Index(col.astype("string").astype(object).where(col.notna(), None)))
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


def category_lists(frame: pd.DataFrame, categorical: Sequence[str]) -> dict[str, list[str]]:
    """The sorted distinct values of each categorical column, as strings (missing values left out).

    Args:
        frame: the training rows.
        categorical: the categorical feature names.

    Returns:
        Column name to its category list.
    """
    return {col: sorted(frame[col].dropna().astype("string").unique().tolist()) for col in categorical}


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


def make_dataset(x: pd.DataFrame, y: np.ndarray, *, seed: int, num_threads: int, init_score: np.ndarray | None = None, reference: lgb.Dataset | None = None) -> lgb.Dataset:
    """A binned LightGBM dataset (binned like ``reference`` when given), constructed.

    Args:
        x: prepared features (categorical columns as pandas categories).
        y: labels.
        seed: binning seed.
        num_threads: threads.
        init_score: starting margins (the prior's logit), or None.
        reference: the training dataset whose bins a validation set must share.

    Returns:
        The dataset.
    """
    data = lgb.Dataset(
        x, label=np.asarray(y, dtype=float), init_score=init_score, reference=reference,
        params=dataset_params(seed=seed, num_threads=num_threads), categorical_feature="auto", free_raw_data=False,
    )
    return data.construct()


def fit_booster(
    train: lgb.Dataset,
    valid: lgb.Dataset,
    params: Mapping[str, Any],
    *,
    num_boost_round: int = 2000,
    early_stopping_rounds: int = 50,
    callbacks: Sequence[Callable[..., None]] = (),
) -> lgb.Booster:
    """Train a booster with early stopping on the validation rows, trimmed to its best iteration.

    Args:
        train: the binned training rows.
        valid: the binned validation rows (binned like ``train``).
        params: LightGBM parameters (see :func:`lgb_params`); the first metric drives early stopping.
        num_boost_round: most trees.
        early_stopping_rounds: stop after this many rounds without improvement.
        callbacks: extra LightGBM callbacks (e.g. the tuner's pruning).

    Returns:
        A booster holding exactly the best iteration's trees (without the starting margins).
    """
    booster = lgb.train(
        dict(params),
        train,
        num_boost_round=num_boost_round,
        valid_sets=[valid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False), *callbacks],
    )
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def fit_rounds(x: pd.DataFrame, y: np.ndarray, params: Mapping[str, Any], rounds: int, *, init_score: np.ndarray | None = None) -> lgb.Booster:
    """Train a booster for a fixed number of rounds, without validation (the refits).

    Args:
        x: prepared features.
        y: labels.
        params: LightGBM parameters.
        rounds: trees to grow (at least 1).
        init_score: starting margins (the prior's logit), or None.

    Returns:
        The booster.
    """
    data = make_dataset(x, y, seed=int(params.get("seed", 42)), num_threads=int(params.get("num_threads", 2)), init_score=init_score)
    return lgb.train(dict(params), data, num_boost_round=max(1, int(rounds)))
