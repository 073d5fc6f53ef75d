"""Scoring shared by the API and the batch: features to probability, band, tier, value at risk, reasons, actions.

The cheap part (probabilities) runs on whole snapshots at once. The costly part, LightGBM's exact
per-feature contributions (TreeSHAP, about a hundred times a plain prediction), runs only for the
customers a person will read: a /predict answer, the page of a risk list, the top of a batch run.

For speed the snapshot is encoded once into the model's numeric matrix (categories as the codes
of the model's fixed category lists, missing as NaN); predictions and contributions on that matrix
equal ``ChurnModel.predict_proba`` / ``ChurnModel.contributions`` on the frame (a test checks it).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from features.stage import WIN_BACK, StageRule, customer_stage
from serving.playbook import PlannedAction, Playbook
from serving.reasons import explain_row, registry_maps
from serving.schemas import CustomerRisk, ModelInfo, Reason

if TYPE_CHECKING:
    from training.model import ChurnModel
    from training.register import LoadedModel

DESCRIPTIVE_OUT = ("region", "segment", "account_manager")
SUMMARY_COLUMNS = (
    "customer_id",
    "churn_probability",
    "risk_band",
    "tier",
    "pyramid",
    "customer_class",
    "revenue_12m",
    "value_at_risk",
    *DESCRIPTIVE_OUT,
    "stage",
    "value_12m",
    "let_go",
)
_MISSING_TEXT = frozenset({"", "None", "nan", "NaN", "<NA>", "NaT"})
PARALLEL_ROWS = 32
EXPLAIN_BUDGET = 50
"""The most customers one /predict request explains in "auto" mode."""
EXPLAINED_CACHE = 20_000
"""Explained answers kept per snapshot (a customer asked about again costs no contributions)."""


class FeatureInputError(ValueError):
    """A customer-supplied feature the model cannot use; ``feature`` names it."""

    def __init__(self, feature: str, message: str) -> None:
        super().__init__(message)
        self.feature = feature


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    text = str(value)
    return None if text in _MISSING_TEXT else text


def _float_or_none(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def capacity_thresholds(probability: np.ndarray, reachable: int) -> tuple[float, float]:
    """Band cut-offs from the team's capacity: the ``reachable`` riskiest customers are high, the next as many medium.

    Args:
        probability: every active customer's calibrated churn probability.
        reachable: how many customers the team can contact within the horizon (at least 1).

    Returns:
        ``(high, medium)`` probabilities (a tie at a cut-off puts every tied customer in the higher band).
    """
    ranked = np.sort(np.asarray(probability, dtype=float))[::-1]
    if len(ranked) == 0:
        return 1.0, 1.0
    k = max(1, int(reachable))
    high = float(ranked[min(k, len(ranked)) - 1])
    medium = float(ranked[min(2 * k, len(ranked)) - 1])
    return high, min(medium, high)


def with_capacity_bands(scorer: Scorer, frame: pd.DataFrame, *, per_manager_week: float, horizon_days: int) -> Scorer:
    """The scorer with band cut-offs set from the team's capacity on this snapshot (see :func:`capacity_thresholds`).

    Args:
        scorer: the scorer with fixed thresholds.
        frame: the snapshot (its ``account_manager`` column counts the team; one manager when absent).
        per_manager_week: customers one account manager can contact per week.
        horizon_days: the churn horizon (the time the team has).

    Returns:
        A scorer whose ``risk_high`` and ``risk_medium`` come from the capacity.
    """
    managers = frame["account_manager"].dropna().astype(str).nunique() if "account_manager" in frame.columns else 0
    reachable = int(np.ceil(max(managers, 1) * per_manager_week * horizon_days / 7.0))
    high, medium = capacity_thresholds(scorer.probabilities(scorer.model.encode(frame)), reachable)
    return replace(scorer, risk_high=high, risk_medium=medium)


def risk_bands(probability: np.ndarray, high: float, medium: float) -> np.ndarray:
    """The risk band of each probability.

    Args:
        probability: calibrated churn probabilities.
        high: from this probability on, "high".
        medium: from this probability on (and below ``high``), "medium".

    Returns:
        An object array of "high", "medium" and "low".
    """
    p = np.asarray(probability, dtype=float)
    return np.where(p >= high, "high", np.where(p >= medium, "medium", "low")).astype(object)


def value_12m(frame: pd.DataFrame, stage: np.ndarray) -> np.ndarray:
    """What keeping each customer is worth over the next 12 months (see :data:`serving.schemas.VALUE_DEFINITION`).

    Args:
        frame: rows with whichever of ``revenue_180d``, ``revenue_365d`` and ``margin_rate_365d`` they have.
        stage: each row's stage (``win_back`` uses the 12-month revenue).

    Returns:
        Non-negative values, NaN where the revenue is unknown.
    """
    n = len(frame)

    def column(name: str) -> np.ndarray:
        return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float) if name in frame.columns else np.full(n, np.nan)

    year, half = column("revenue_365d"), column("revenue_180d")
    recent = np.where(np.isnan(half), year, 2.0 * half)
    revenue = np.where(np.asarray(stage, dtype=object) == WIN_BACK, year, recent)
    margin = column("margin_rate_365d")
    worth = np.where(np.isnan(margin), revenue, revenue * np.clip(margin, 0.0, 1.0))
    return np.where(np.isnan(worth), np.nan, np.maximum(worth, 0.0))


def encode_records(model: ChurnModel, records: Sequence[Mapping[str, Any]], known: Iterable[str] = ()) -> np.ndarray:
    """The model's input matrix for customer-supplied feature objects (the fast path for a few rows).

    Args:
        model: the churn model.
        records: one mapping of feature name to value per customer; absent features are missing.
        known: further names a record may carry without being a model feature (the registry's).

    Returns:
        An array of shape [rows, features].

    Raises:
        FeatureInputError: an unknown feature name, text for a numeric feature or a number for a
            categorical one.
    """
    allowed = set(model.feature_names) | set(known)
    index = {name: j for j, name in enumerate(model.feature_names)}
    categories = {name: {value: code for code, value in enumerate(values)} for name, values in model.categorical.items()}
    out = np.full((len(records), len(model.feature_names)), np.nan, dtype=np.float64)
    for i, record in enumerate(records):
        for name, value in record.items():
            if name not in allowed:
                raise FeatureInputError(name, f"unknown feature {name!r} (see features.registry for the names)")
            j = index.get(name)
            if j is None or value is None:
                continue
            if name in categories:
                if not isinstance(value, str):
                    raise FeatureInputError(name, f"feature {name!r} is categorical: send text, e.g. {next(iter(categories[name]), 'a value')!r}")
                code = categories[name].get(value)
                out[i, j] = np.nan if code is None else float(code)
            else:
                if isinstance(value, str) or not isinstance(value, (int, float)):
                    raise FeatureInputError(name, f"feature {name!r} is numeric: send a number, not {value!r}")
                out[i, j] = float(value)
    return out


@dataclass
class Scorer:
    """A loaded model with the playbook and thresholds: turns encoded features into answers.

    Attributes:
        loaded: the registered model, as loaded from MLflow.
        playbook: the win-back playbook.
        risk_high: probability from which the band is high.
        risk_medium: probability from which the band is medium.
        n_reasons: reasons per explained customer.
        stage_rule: when a customer counts as gone quiet (``win_back``).
    """

    loaded: LoadedModel
    playbook: Playbook
    risk_high: float = 0.5
    risk_medium: float = 0.25
    n_reasons: int = 3
    stage_rule: StageRule = field(default_factory=StageRule)
    groups: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.groups or not self.descriptions:
            self.groups, self.descriptions = registry_maps()
        self._class_cache: dict[tuple[str | None, str | None], str] = {}

    @property
    def model(self) -> ChurnModel:
        """The churn model."""
        return self.loaded.model

    @cached_property
    def model_info(self) -> ModelInfo:
        """Name, version, alias and the headline facts of the model."""
        meta = self.model.metadata
        pr_auc = meta.get("test_pr_auc", self.loaded.metrics.get("test_pr_auc", self.loaded.metrics.get("pr_auc")))
        return ModelInfo(
            name=self.loaded.name,
            version=str(self.loaded.version),
            alias=self.loaded.alias,
            run_id=self.loaded.run_id or None,
            trained_at=str(meta["trained_at"]) if meta.get("trained_at") else None,
            horizon_days=int(meta["horizon_days"]) if meta.get("horizon_days") is not None else None,
            test_pr_auc=_float_or_none(pr_auc),
            kind=meta.get("kind"),
            recipe=meta.get("recipe"),
            train_last=meta.get("train_last"),
        )

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Calibrated churn probabilities.

        Args:
            x: encoded features, shape [rows, features].

        Returns:
            Probabilities, shape [rows].
        """
        if len(x) == 0:
            return np.empty(0)
        return np.asarray(self.model.calibrator(self.raw_scores(x)), dtype=float)

    def raw_scores(self, x: np.ndarray) -> np.ndarray:
        """The model's margin (log-odds before calibration).

        Args:
            x: encoded features.

        Returns:
            Margins, shape [rows].
        """
        threads = 1 if len(x) < PARALLEL_ROWS else 0
        return self.model.margin(x, threads)

    def contributions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact per-feature contributions to the margin (the costly part).

        Args:
            x: encoded features.

        Returns:
            ``(contrib [rows, features], base [rows])`` with ``contrib.sum(1) + base`` = the margin.
        """
        if len(x) == 0:
            k = len(self.model.feature_names)
            return np.empty((0, k)), np.empty(0)
        threads = 1 if len(x) < PARALLEL_ROWS else 0
        return self.model.explain(x, threads)

    def customer_class(self, tier: str | None, pyramid: str | None) -> str:
        """The playbook class of a customer (memoised per tier and pyramid).

        Args:
            tier: ABC class.
            pyramid: pyramid tier.

        Returns:
            The class name.
        """
        key = (tier, pyramid)
        name = self._class_cache.get(key)
        if name is None:
            name = self.playbook.customer_class(tier, pyramid).name
            self._class_cache[key] = name
        return name

    def summarise(self, frame: pd.DataFrame, probability: np.ndarray) -> pd.DataFrame:
        """The per-customer columns of an answer, vectorised (no contributions).

        Args:
            frame: the rows (``customer_id`` and whichever of ``abc_class``, ``pyramid_tier``,
                ``revenue_365d``, region, segment, account_manager they have).
            probability: their churn probabilities.

        Returns:
            A frame with :data:`SUMMARY_COLUMNS`, aligned with ``frame`` (RangeIndex).
        """
        n = len(frame)

        def text(column: str) -> list[str | None]:
            if column not in frame.columns:
                return [None] * n
            return [_text_or_none(v) for v in frame[column].tolist()]

        revenue = pd.to_numeric(frame["revenue_365d"], errors="coerce").to_numpy(dtype=float) if "revenue_365d" in frame.columns else np.full(n, np.nan)
        tier, pyramid = text("abc_class"), text("pyramid_tier")
        stage = customer_stage(frame, self.stage_rule) if "days_since_last_order" in frame.columns else np.full(n, None, dtype=object)
        worth = value_12m(frame, stage)
        out = pd.DataFrame(
            {
                "customer_id": frame["customer_id"].astype(str).to_numpy(),
                "churn_probability": np.asarray(probability, dtype=float),
                "risk_band": risk_bands(probability, self.risk_high, self.risk_medium),
                "tier": pd.array(tier, dtype=object),
                "pyramid": pd.array(pyramid, dtype=object),
                "customer_class": [self.customer_class(t, p) for t, p in zip(tier, pyramid, strict=True)],
                "revenue_12m": revenue,
                "value_at_risk": np.asarray(probability, dtype=float) * worth,
                **{col: pd.array(text(col), dtype=object) for col in DESCRIPTIVE_OUT},
                "stage": list(stage),
                "value_12m": worth,
                "let_go": [self.playbook.let_go_candidate(s, t, p) for s, t, p in zip(stage, tier, pyramid, strict=True)],
            }
        )
        return out

    def reasons(self, contrib: np.ndarray, rows: Sequence[Mapping[str, Any]]) -> list[list[Reason]]:
        """Reasons (with their playbook drivers) for rows whose contributions are known.

        Args:
            contrib: contributions, shape [rows, features].
            rows: each row's feature values (for the sentences).

        Returns:
            One list of reasons per row, strongest first.
        """
        names = self.model.feature_names
        reference = self.model.metadata.get("reference")
        return [
            explain_row(
                contrib[r], names, row, n=self.n_reasons, groups=self.groups, descriptions=self.descriptions,
                driver_of=self.playbook.driver_of, reference=reference,
            )
            for r, row in enumerate(rows)
        ]

    def actions(self, summary: Mapping[str, Any], reasons: Sequence[Reason], as_of: date | None) -> list[PlannedAction]:
        """The playbook's actions for one customer.

        Args:
            summary: the customer's summary row (risk_band, tier, pyramid).
            reasons: its reasons (may be empty when not explained).
            as_of: the scoring date.

        Returns:
            The actions, strongest driver first.
        """
        return self.playbook.plan(
            [(r.driver, r.sentence) for r in reasons],
            abc_class=summary.get("tier"),
            pyramid_tier=summary.get("pyramid"),
            risk_band=summary["risk_band"],
            as_of=as_of,
            stage=summary.get("stage"),
        )

    def answer(self, summary: Mapping[str, Any], reasons: Sequence[Reason] | None, as_of: date | None) -> CustomerRisk:
        """One customer's answer.

        Args:
            summary: its summary row (see :meth:`summarise`).
            reasons: its reasons, or None when it was not explained.
            as_of: the scoring date (for the actions' due dates).

        Returns:
            The answer item.
        """
        return CustomerRisk(
            customer_id=str(summary["customer_id"]),
            churn_probability=round(float(summary["churn_probability"]), 6),
            risk_band=summary["risk_band"],
            tier=_text_or_none(summary.get("tier")),
            pyramid=_text_or_none(summary.get("pyramid")),
            customer_class=summary.get("customer_class"),
            revenue_12m=_round(summary.get("revenue_12m")),
            value_at_risk=_round(summary.get("value_at_risk")),
            value_12m=_round(summary.get("value_12m")),
            stage=summary.get("stage"),
            let_go=bool(summary.get("let_go", False)),
            region=_text_or_none(summary.get("region")),
            segment=_text_or_none(summary.get("segment")),
            account_manager=_text_or_none(summary.get("account_manager")),
            explained=reasons is not None,
            reasons=list(reasons or []),
            actions=self.actions(summary, reasons or [], as_of),
        )


def _round(value: Any, digits: int = 2) -> float | None:
    number = _float_or_none(value)
    return None if number is None else round(number, digits)


@dataclass(frozen=True)
class RiskFilters:
    """The filters and order of a risk list request.

    Attributes:
        tier: ABC classes to keep.
        pyramid: pyramid tiers to keep.
        region: regions to keep.
        account_manager: account managers to keep.
        risk_band: bands to keep.
        stage: stages to keep (``retain``, ``win_back``).
        min_probability: lowest churn probability kept.
        sort: "value_at_risk" or "probability".
    """

    tier: Sequence[str] | None = None
    pyramid: Sequence[str] | None = None
    region: Sequence[str] | None = None
    account_manager: Sequence[str] | None = None
    risk_band: Sequence[str] | None = None
    stage: Sequence[str] | None = None
    min_probability: float | None = None
    sort: str = "value_at_risk"


class RiskTable:
    """A ranked table of scored customers that filters and pages fast (both orders sorted once).

    Attributes:
        frame: one row per customer with :data:`SUMMARY_COLUMNS` (and any extra columns).
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame.reset_index(drop=True)
        var = self.frame["value_at_risk"].to_numpy(dtype=float)
        proba = self.frame["churn_probability"].to_numpy(dtype=float)
        ids = self.frame["customer_id"].astype(str).to_numpy()
        var_key = np.where(np.isnan(var), -np.inf, var)
        self._orders = {
            "value_at_risk": np.lexsort((ids, -proba, -var_key)),
            "probability": np.lexsort((ids, -var_key, -proba)),
        }
        self.positions = {cid: i for i, cid in enumerate(ids)}
        self._columns = {col: self.frame[col].to_numpy() for col in self.frame.columns}

    def record(self, position: int) -> dict[str, Any]:
        """One row as a dict (fast: no pandas indexing).

        Args:
            position: the row position.

        Returns:
            Column name to value.
        """
        return {col: values[position] for col, values in self._columns.items()}

    def column_values(self, column: str, positions: Sequence[int]) -> list[Any]:
        """One column's values at some rows (fast: no pandas indexing).

        Args:
            column: the column name.
            positions: the rows.

        Returns:
            The values, in order.
        """
        values = self._columns[column]
        return [values[p] for p in positions]

    def records(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        """Several rows as dicts, in order."""
        if len(positions) > 64:
            return cast(list[dict[str, Any]], self.frame.iloc[list(positions)].to_dict("records"))
        return [self.record(p) for p in positions]

    def __len__(self) -> int:
        return len(self.frame)

    def ranked(self, sort: str = "value_at_risk") -> np.ndarray:
        """Every row position, ranked by ``sort`` ("value_at_risk" or "probability"), largest first."""
        return self._orders.get(sort, self._orders["value_at_risk"])

    def _mask(self, filters: RiskFilters) -> np.ndarray:
        f = self.frame
        mask = np.ones(len(f), dtype=bool)
        for column, wanted in (
            ("tier", filters.tier),
            ("pyramid", filters.pyramid),
            ("region", filters.region),
            ("account_manager", filters.account_manager),
            ("risk_band", filters.risk_band),
            ("stage", filters.stage),
        ):
            if wanted:
                mask &= f[column].isin(list(wanted)).to_numpy()
        if filters.min_probability is not None:
            mask &= f["churn_probability"].to_numpy(dtype=float) >= filters.min_probability
        return mask

    def page(self, filters: RiskFilters, limit: int, offset: int) -> tuple[int, np.ndarray]:
        """The ranked, filtered rows of one page.

        Args:
            filters: filters and sort order.
            limit: rows to return.
            offset: rows to skip.

        Returns:
            ``(total matching, row positions of the page)``.
        """
        order = self.ranked(filters.sort)
        mask = self._mask(filters)
        ranked = order[mask[order]]
        return int(len(ranked)), ranked[offset : offset + limit]


@dataclass
class ScoredSnapshot:
    """A feature snapshot held in memory with its encoding and scores for one model.

    Attributes:
        as_of: the snapshot's as-of date.
        frame: the snapshot (one row per active customer).
        x: its encoding for the model.
        table: the scored, ranked customers.
    """

    as_of: date
    frame: pd.DataFrame
    x: np.ndarray
    table: RiskTable
    _columns: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _explained: OrderedDict[int, CustomerRisk] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self._columns:
            self._columns = {col: self.frame[col].to_numpy() for col in self.frame.columns}

    @classmethod
    def build(cls, scorer: Scorer, snapshot: pd.DataFrame, as_of: date) -> ScoredSnapshot:
        """Encode and score a whole snapshot (probabilities only).

        Args:
            scorer: the scorer of the model in use.
            snapshot: from ``features.snapshot.build_snapshot``.
            as_of: its as-of date.

        Returns:
            The scored snapshot.
        """
        frame = snapshot.reset_index(drop=True)
        x = scorer.model.encode(frame)
        summary = scorer.summarise(frame, scorer.probabilities(x))
        return cls(as_of=as_of, frame=frame, x=x, table=RiskTable(summary))

    def position(self, customer_id: str) -> int | None:
        """The row of a customer, or None when it is not an active customer in the snapshot."""
        return self.table.positions.get(customer_id)

    def row(self, position: int) -> dict[str, Any]:
        """One customer's snapshot values."""
        return {col: values[position] for col, values in self._columns.items()}

    def answers(self, scorer: Scorer, positions: Sequence[int], explain: Sequence[bool]) -> list[CustomerRisk]:
        """Answers for snapshot rows, with exact reasons where ``explain`` says so.

        Args:
            scorer: the scorer whose model scored this snapshot.
            positions: snapshot rows.
            explain: per row, whether to compute its reasons.

        Returns:
            One answer per row, in order.
        """
        with self._lock:
            cached = {p: self._explained[p] for p, e in zip(positions, explain, strict=True) if e and p in self._explained}
        todo = [p for p, e in zip(positions, explain, strict=True) if not (e and p in cached)]
        summaries = dict(zip(todo, self.table.records(todo), strict=True))
        wanted = sorted({p for p, e in zip(positions, explain, strict=True) if e and p not in cached})
        reasons_by_pos: dict[int, list[Reason]] = {}
        if wanted:
            contrib, _ = scorer.contributions(self.x[wanted])
            rows = [self.row(p) for p in wanted]
            for p, found in zip(wanted, scorer.reasons(contrib, rows), strict=True):
                reasons_by_pos[p] = found
        out: list[CustomerRisk] = []
        fresh: dict[int, CustomerRisk] = {}
        for p, e in zip(positions, explain, strict=True):
            if e and p in cached:
                out.append(cached[p])
            elif e:
                answer = fresh.get(p) or scorer.answer(summaries[p], reasons_by_pos[p], self.as_of)
                fresh[p] = answer
                out.append(answer)
            else:
                out.append(scorer.answer(summaries[p], None, self.as_of))
        if fresh:
            with self._lock:
                self._explained.update(fresh)
                while len(self._explained) > EXPLAINED_CACHE:
                    self._explained.popitem(last=False)
        return out


def choose_explained(
    bands: Sequence[str],
    values: Sequence[float | None],
    mode: str,
    *,
    at_risk_bands: Sequence[str] = ("high", "medium"),
    budget: int = EXPLAIN_BUDGET,
) -> list[bool]:
    """Which customers of a request get exact reasons (the costly part).

    Args:
        bands: each customer's risk band.
        values: each customer's value at risk (to pick the largest first).
        mode: "all", "none" or "auto": the at-risk customers (the bands that get win-back
            actions), the ``budget`` largest values at risk first.
        at_risk_bands: the bands "auto" explains (the playbook's ``act_on_bands``).
        budget: the most customers "auto" explains in one request.

    Returns:
        One flag per customer.
    """
    n = len(bands)
    if mode == "all":
        return [True] * n
    if mode == "none":
        return [False] * n
    at_risk = [i for i in range(n) if bands[i] in at_risk_bands]
    if len(at_risk) > budget:

        def largest_first(i: int) -> float:
            value = values[i]
            return -(value if value is not None and not np.isnan(value) else -1.0)

        at_risk.sort(key=largest_first)
        at_risk = at_risk[:budget]
    chosen = set(at_risk)
    return [i in chosen for i in range(n)]


def reasons_json(reasons: Sequence[Reason]) -> str:
    """Reasons as JSON text (for the risk_scores table)."""
    return json.dumps([r.model_dump(mode="json") for r in reasons], ensure_ascii=False)


def actions_json(actions: Sequence[PlannedAction]) -> str:
    """Actions as JSON text (for the risk_scores table)."""
    return json.dumps([a.model_dump(mode="json") for a in actions], ensure_ascii=False)
