"""What the service holds in memory and how it changes while it runs.

A :class:`ServingState` is one model with the feature snapshot it scored: built completely in the
background, then swapped in by a single reference assignment, so a request sees either the old
state or the new one, never a half-loaded model. A watcher thread checks every few seconds (a
cheap registry lookup) whether the ``champion`` alias points to another version, whether the data
changed, and whether ``churn score`` stored a newer risk list, and rebuilds what changed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from features.contract import TABLES
from features.dataset import location_kind
from features.registry import FEATURES
from features.snapshot import build_snapshot
from serving.actions import ActionDone, ActionRecorded, customer_known, record_action
from serving.groups import GroupList, score_groups
from serving.playbook import PlannedAction, Playbook, load_playbook, registry_groups
from serving.schemas import (
    CustomerError,
    CustomerRisk,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    Reason,
    RiskListRequest,
    RiskListResponse,
)
from serving.scoring import (
    FeatureInputError,
    RiskFilters,
    RiskTable,
    ScoredSnapshot,
    Scorer,
    choose_explained,
    encode_records,
    with_capacity_bands,
)
from serving.store import TryLater, opened_store
from serving.tables import FOLDER_FILE, latest_run, read_run
from training.register import load_group_model, load_model

if TYPE_CHECKING:
    from churn.settings import Settings
    from serving.tables import RunStamp
    from training.model import ChurnModel

logger = logging.getLogger("churn.serving")

DEFAULT_POLL_SECONDS = 30.0
SNAPSHOT_CACHE = 2
WARM_ROWS = 16
# past-as_of snapshot builds running or waiting; the service has API_THREADS threads, so plain calls always find one
MAX_QUEUED_BUILDS = 3
API_THREADS = 8


class StartupError(RuntimeError):
    """The service cannot start; the message says what to run or set."""


class RequestError(ValueError):
    """A request the service cannot answer as asked; ``loc`` names the field."""

    def __init__(self, loc: Sequence[str | int], message: str, kind: str = "value_error") -> None:
        super().__init__(message)
        self.loc = list(loc)
        self.kind = kind


class NotReady(RuntimeError):
    """The model or the features are still loading."""


@dataclass(frozen=True)
class ServingState:
    """One model and the snapshot it scored, complete and immutable once published.

    Attributes:
        scorer: the model with playbook and thresholds.
        snapshot: the features as of the latest data, encoded and scored.
        data_fingerprint: the data's fingerprint when the snapshot was built.
        loaded_at: when this state was published.
        group_model: the champion run's partial-churn model, if it has one.
        groups: the product groups at risk as of the snapshot's date (with a group model and order lines).
    """

    scorer: Scorer
    snapshot: ScoredSnapshot
    data_fingerprint: str | None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    group_model: ChurnModel | None = None
    groups: GroupList | None = None


@dataclass(frozen=True)
class StoredRun:
    """The newest batch risk list from the store, ranked in memory.

    Attributes:
        stamp: which run.
        table: its rows.
        control: the customers it held out as control (no action this cycle).
    """

    stamp: RunStamp
    table: RiskTable
    control: frozenset[str] = frozenset()


def poll_seconds(settings: Settings) -> float:
    """How often the watcher looks for a new champion, new data or a new risk list.

    Args:
        settings: the settings (``model_poll_seconds`` when the settings have it).

    Returns:
        Seconds; ``CHURN_MODEL_POLL_SECONDS`` or 30 by default.
    """
    value = getattr(settings, "model_poll_seconds", None) or os.environ.get("CHURN_MODEL_POLL_SECONDS")
    try:
        return max(0.2, float(value)) if value else DEFAULT_POLL_SECONDS
    except ValueError:
        return DEFAULT_POLL_SECONDS


def champion_version(tracking_uri: str, name: str, alias: str = "champion") -> str | None:
    """The version that holds ``alias`` (a cheap registry lookup), or None.

    Args:
        tracking_uri: MLflow tracking URI.
        name: registered model name.
        alias: the alias.

    Returns:
        The version number as text, or None when no version holds the alias.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def check_startup(settings: Settings) -> str:
    """Refuse to start without an API key, a readable playbook or a champion model.

    Args:
        settings: the settings the service will run with.

    Returns:
        The champion's version.

    Raises:
        StartupError: what is missing and what to run or set.
    """
    if not settings.resolved_api_key():
        blank = settings.api_key is not None or settings.api_key_file is not None
        raise StartupError(
            ("the API key is blank: " if blank else "no API key: ")
            + "set CHURN_API_KEY (or CHURN_API_KEY_FILE to a file holding it) to a non-empty secret before `churn serve`"
        )
    load_playbook(settings.playbook, features=registry_groups())
    version = champion_version(settings.tracking_uri, settings.model_name)
    if version is None:
        raise StartupError(
            f"no champion model {settings.model_name!r} in {settings.tracking_uri}: run `churn train --data {settings.data}` "
            f"(or `churn demo` for a sample model) first"
        )
    return version


class Runtime:
    """The service's model, features and risk list, kept current by a watcher thread.

    Attributes:
        settings: what the service runs with.
        playbook: the validated win-back playbook.
    """

    def __init__(self, settings: Settings, *, poll: float | None = None) -> None:
        self.settings = settings
        self.playbook: Playbook = load_playbook(settings.playbook, features=registry_groups())
        self.poll = poll if poll is not None else poll_seconds(settings)
        self._state: ServingState | None = None
        self._stored: StoredRun | None = None
        self._stored_checked: tuple[Any, ...] | None = None
        self._data_signature: tuple[Any, ...] | None = None
        self._cache: OrderedDict[tuple[date, str], ScoredSnapshot] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._builds_admitted = threading.BoundedSemaphore(MAX_QUEUED_BUILDS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.on_refresh: Callable[[Runtime], None] | None = None

    # ---- lifecycle

    @property
    def state(self) -> ServingState | None:
        """The published state (None while loading)."""
        return self._state

    @property
    def ready(self) -> bool:
        """Whether a model and its features are loaded."""
        return self._state is not None

    def start(self) -> None:
        """Load in the background and keep watching for changes."""
        self._thread = threading.Thread(target=self._run, name="churn-model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watcher."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
                if self.on_refresh is not None:
                    self.on_refresh(self)
                self.last_error = None
            except Exception as err:  # the watcher must survive and retry
                self.last_error = str(err)
                logger.exception("refreshing the model or the features failed; retrying in %.0f s", self.poll)
            self._stop.wait(self.poll)

    def refresh(self) -> bool:
        """Publish a new state when the champion or the data changed, and pick up a newer risk list.

        Returns:
            True when a new state was published.
        """
        published = False
        current = self._state
        version = champion_version(self.settings.tracking_uri, self.settings.model_name)
        if version is None:
            if current is None:
                raise StartupError(f"no champion model {self.settings.model_name!r}: run `churn train`")
            logger.warning("no version of %s holds the champion alias any more; keeping version %s", self.settings.model_name, current.scorer.loaded.version)
        signature = data_signature(self.settings.data)
        model_changed = current is None or (version is not None and version != current.scorer.loaded.version)
        data_changed = current is not None and signature != self._data_signature
        if model_changed or data_changed:
            published = self._publish(current, load_new_model=model_changed, signature=signature)
        self._refresh_stored()
        return published

    def _publish(self, current: ServingState | None, *, load_new_model: bool, signature: tuple[Any, ...] | None) -> bool:
        started = time.perf_counter()
        if load_new_model or current is None:
            loaded = load_model(self.settings.tracking_uri, self.settings.model_name)
            scorer = Scorer(
                loaded, self.playbook, risk_high=self.settings.risk_high, risk_medium=self.settings.risk_medium, stage_rule=self.settings.stage_rule()
            )
            group_model = load_group_model(self.settings.tracking_uri, loaded.run_id)
        else:
            scorer, group_model = current.scorer, current.group_model
        with opened_store(self.settings.data) as data:
            fingerprint = data.fingerprint()
            as_of = data.end_date()
            same_data = current is not None and fingerprint == current.data_fingerprint and current.snapshot.as_of == as_of
            if same_data and current is not None and scorer is current.scorer:
                self._data_signature = signature
                return False
            frame = current.snapshot.frame if same_data and current is not None else build_snapshot(data, as_of, self.settings.active_days)
            groups = GroupList(score_groups(group_model, data, as_of, self.settings.active_days)) if group_model is not None and data.has("order_lines") else None
        if self.settings.capacity_per_manager_week is not None:
            scorer = with_capacity_bands(scorer, frame, per_manager_week=self.settings.capacity_per_manager_week, horizon_days=self.settings.horizon_days)
        snapshot = ScoredSnapshot.build(scorer, frame, as_of)
        state = ServingState(scorer=scorer, snapshot=snapshot, data_fingerprint=fingerprint, group_model=group_model, groups=groups)
        warm(state)
        self._state = state
        self._data_signature = signature
        with self._cache_lock:
            self._cache.clear()
        logger.info(
            "serving %s version %s on %d customers as of %s (loaded in %.1f s)",
            scorer.loaded.name, scorer.loaded.version, len(frame), as_of, time.perf_counter() - started,
        )
        return True

    def _refresh_stored(self) -> None:
        marker = store_marker(self.settings.data)
        if marker is not None and marker == self._stored_checked:
            return
        try:
            stamp = latest_run(self.settings.data)
        except Exception as err:  # noqa: BLE001 - a busy store is read next time
            logger.info("risk_scores not readable now (%s); trying again later", err)
            return
        self._stored_checked = marker
        if stamp is None:
            self._stored = None
            return
        if self._stored is not None and self._stored.stamp == stamp:
            return
        frame = read_run(self.settings.data, stamp)
        if frame is not None:
            held_out: list[str] = frame.loc[frame["control"].fillna(False).astype(bool), "customer_id"].astype(str).tolist() if "control" in frame.columns else []
            self._stored = StoredRun(stamp=stamp, table=RiskTable(frame), control=frozenset(held_out))
            logger.info("risk list of %s (model %s, as of %s, %d customers) loaded", stamp.scored_at, stamp.model_version, stamp.as_of, len(frame))

    # ---- answers

    def require_state(self) -> ServingState:
        """The published state.

        Raises:
            NotReady: still loading.
        """
        state = self._state
        if state is None:
            raise NotReady("the service is loading the model and the features; try again shortly (GET /readyz says when)")
        return state

    def snapshot_for(self, state: ServingState, as_of: date | None) -> ScoredSnapshot:
        """The scored snapshot for an as-of date: the one in memory, or built once and cached.

        Args:
            state: the state in use.
            as_of: the requested date, or None for the latest.

        Returns:
            The snapshot.

        Raises:
            RequestError: the date is after the data or before any order.
            TryLater: :data:`MAX_QUEUED_BUILDS` builds are already running or waiting.
        """
        if as_of is None or as_of == state.snapshot.as_of:
            return state.snapshot
        if as_of > state.snapshot.as_of:
            raise RequestError(["as_of"], f"as_of {as_of} is after the end of the data ({state.snapshot.as_of}): nothing is known about it yet")
        key = (as_of, state.scorer.loaded.version)
        cached = self._cached(key)
        if cached is not None:
            return cached
        if not self._builds_admitted.acquire(blocking=False):
            raise TryLater(
                f"{MAX_QUEUED_BUILDS} snapshots for past as_of dates are being built or waiting: try again shortly, "
                f"or score past dates with `churn score --as-of`"
            )
        try:
            with self._build_lock:  # one build at a time: the others wait here, not in the API's threads
                cached = self._cached(key)
                if cached is not None:
                    return cached
                logger.info("building the snapshot as of %s", as_of)
                built = self._build_past(state, as_of)
        finally:
            self._builds_admitted.release()
        with self._cache_lock:
            self._cache[key] = built
            while len(self._cache) > SNAPSHOT_CACHE:
                self._cache.popitem(last=False)
        return built

    def _cached(self, key: tuple[date, str]) -> ScoredSnapshot | None:
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
            return cached

    def _build_past(self, state: ServingState, as_of: date) -> ScoredSnapshot:
        with opened_store(self.settings.data) as data:
            if as_of <= data.start_date():
                raise RequestError(["as_of"], f"as_of {as_of} is not after the first order ({data.start_date()}): there is no history to score")
            frame = build_snapshot(data, as_of, self.settings.active_days)
        return ScoredSnapshot.build(state.scorer, frame, as_of)

    def predict(self, request: PredictRequest) -> PredictResponse:
        """Score the customers of a /predict request.

        Args:
            request: the validated request.

        Returns:
            One item per customer in request order; unknown customers get an error item.

        Raises:
            RequestError: an oversized batch, a bad feature or an impossible as_of (names the field).
            NotReady: still loading.
        """
        if len(request.customers) > self.settings.max_batch:
            raise RequestError(
                ["customers"], f"{len(request.customers)} customers in one request; the limit is {self.settings.max_batch} (CHURN_MAX_BATCH)", "too_long"
            )
        state = self.require_state()
        scorer = state.scorer
        by_features = [i for i, c in enumerate(request.customers) if c.features is not None]
        by_id = [i for i, c in enumerate(request.customers) if c.features is None]
        snapshot = self.snapshot_for(state, request.as_of) if by_id else state.snapshot
        results: list[CustomerRisk | CustomerError | None] = [None] * len(request.customers)

        positions: list[int] = []
        slots: list[int] = []
        for i in by_id:
            cid = request.customers[i].customer_id
            pos = snapshot.position(cid)
            if pos is None:
                results[i] = CustomerError(
                    customer_id=cid,
                    error=f"unknown customer {cid!r}: not an active customer (no order in the {self.settings.active_days} days before {snapshot.as_of}); send its features to score it anyway",
                )
            else:
                positions.append(pos)
                slots.append(i)
        if positions:
            table = snapshot.table
            explain = choose_explained(
                table.column_values("risk_band", positions),
                table.column_values("value_at_risk", positions),
                request.explain,
                at_risk_bands=self.playbook.act_on_bands,
            )
            for i, answer in zip(slots, snapshot.answers(scorer, positions, explain), strict=True):
                if state.groups is not None and snapshot is state.snapshot:
                    answer.groups_at_risk = state.groups.of(answer.customer_id)
                results[i] = answer

        as_of = snapshot.as_of if by_id else (request.as_of or snapshot.as_of)
        if by_features:
            for i, answer in zip(by_features, self._answer_features(scorer, request, by_features, as_of), strict=True):
                results[i] = answer
        held_out = self._stored.control if self._stored is not None else frozenset()
        for item in results:
            if isinstance(item, CustomerRisk) and item.customer_id in held_out:
                item.control, item.actions = True, []
        return PredictResponse(model=scorer.model_info, as_of=as_of, results=[r for r in results if r is not None])

    def _answer_features(self, scorer: Scorer, request: PredictRequest, indices: list[int], as_of: date) -> list[CustomerRisk]:
        records = [request.customers[i].features or {} for i in indices]
        try:
            x = encode_records(scorer.model, records, known=FEATURES)
        except FeatureInputError as err:
            for n, record in zip(indices, records, strict=True):
                if err.feature in record:
                    raise RequestError(["customers", n, "features", err.feature], str(err)) from None
            raise RequestError(["customers"], str(err)) from None
        rows = [{"customer_id": request.customers[i].customer_id, **rec} for i, rec in zip(indices, records, strict=True)]
        frame = pd.DataFrame(rows)
        summary = cast(list[dict[str, Any]], scorer.summarise(frame, scorer.probabilities(x)).to_dict("records"))
        explain = choose_explained(
            [s["risk_band"] for s in summary], [s["value_at_risk"] for s in summary], request.explain, at_risk_bands=self.playbook.act_on_bands
        )
        wanted = [k for k, e in enumerate(explain) if e]
        reasons: dict[int, list[Reason]] = {}
        if wanted:
            contrib, _ = scorer.contributions(x[wanted])
            for k, found in zip(wanted, scorer.reasons(contrib, [rows[k] for k in wanted]), strict=True):
                reasons[k] = found
        return [scorer.answer(s, reasons.get(k) if explain[k] else None, as_of) for k, s in enumerate(summary)]

    def record_action(self, action: ActionDone) -> ActionRecorded:
        """Store a done action (POST /actions), once per client id.

        Args:
            action: the validated record.

        Returns:
            Whether it was stored now or before.

        Raises:
            RequestError: an unknown action key or customer (names the field).
            ActionConflict: the id was stored before with another body.
        """
        keys = self.playbook.action_keys()
        if action.action not in keys:
            raise RequestError(
                ["action"], f"unknown action {action.action!r}: send the `key` of a playbook action (as in the actions of /predict answers)"
            )
        state = self._state
        known = state is not None and state.snapshot.position(action.customer_id) is not None
        if not known and not customer_known(self.settings.data, action.customer_id):
            raise RequestError(["customer_id"], f"unknown customer {action.customer_id!r}: no customer with this id in {self.settings.data}")
        return record_action(self.settings.data, action)

    def risk_list(self, request: RiskListRequest) -> RiskListResponse:
        """The ranked risk list: the newest stored batch run, or the in-memory snapshot when none exists.

        Args:
            request: filters, sort and paging.

        Returns:
            The page and the total count.

        Raises:
            NotReady: still loading.
        """
        state = self.require_state()
        stored = self._stored
        filters = RiskFilters(
            tier=request.tier,
            pyramid=request.pyramid,
            region=request.region,
            account_manager=request.account_manager,
            risk_band=request.risk_band,
            stage=request.stage,
            min_probability=request.min_probability,
            sort=request.sort,
        )
        if stored is None:
            snapshot = state.snapshot
            total, page = snapshot.table.page(filters, request.limit, request.offset)
            items = snapshot.answers(state.scorer, page.tolist(), [request.explain] * len(page))
            return RiskListResponse(
                model=state.scorer.model_info, as_of=snapshot.as_of, source="snapshot", total=total,
                offset=request.offset, limit=request.limit, items=items,
            )
        total, page = stored.table.page(filters, request.limit, request.offset)
        rows = cast(list[dict[str, Any]], stored.table.frame.iloc[page].to_dict("records")) if len(page) else []
        live = state.snapshot if (
            stored.stamp.as_of == state.snapshot.as_of and stored.stamp.model_version == state.scorer.loaded.version
        ) else None
        items = [self._stored_item(state, live, row, request.explain) for row in rows]
        alias = state.scorer.loaded.alias if stored.stamp.model_version == state.scorer.loaded.version else None
        info = state.scorer.model_info if alias else ModelInfo(name=stored.stamp.model_name, version=stored.stamp.model_version)
        return RiskListResponse(
            model=info, as_of=stored.stamp.as_of, source="risk_scores", scored_at=stored.stamp.scored_at, total=total,
            offset=request.offset, limit=request.limit, items=items,
        )

    def _stored_item(self, state: ServingState, live: ScoredSnapshot | None, row: dict[str, Any], explain: bool) -> CustomerRisk:
        reasons: list[Reason] | None = None
        actions: list[PlannedAction] | None = None
        control = bool(row.get("control") or False)
        if explain and isinstance(row.get("reasons_json"), str):
            reasons = [Reason.model_validate(r) for r in json.loads(row["reasons_json"])]
        pos = live.position(str(row["customer_id"])) if explain and reasons is None and live is not None else None
        if live is not None and pos is not None:
            item = live.answers(state.scorer, [pos], [True])[0]
        else:
            if isinstance(row.get("actions_json"), str):
                actions = [PlannedAction.model_validate(a) for a in json.loads(row["actions_json"])]
            stage = _text(row.get("stage"))
            item = CustomerRisk(
                customer_id=str(row["customer_id"]),
                churn_probability=round(float(row["churn_probability"]), 6),
                risk_band=row["risk_band"],
                tier=_text(row.get("tier")),
                pyramid=_text(row.get("pyramid")),
                customer_class=_text(row.get("customer_class")),
                revenue_12m=_number(row.get("revenue_12m")),
                value_at_risk=_number(row.get("value_at_risk")),
                value_12m=_number(row.get("value_12m")),
                stage="win_back" if stage == "win_back" else ("retain" if stage == "retain" else None),
                let_go=bool(row.get("let_go") or False),
                region=_text(row.get("region")),
                segment=_text(row.get("segment")),
                account_manager=_text(row.get("account_manager")),
                explained=reasons is not None,
                reasons=reasons or [],
                actions=(actions or []) if explain else [],
            )
        if control:
            item.control, item.actions = True, []
        return item


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return round(number, 2) if np.isfinite(number) else None


def warm(state: ServingState, rows: int = WARM_ROWS) -> None:
    """Explain and answer a few customers once, so that the first requests after /readyz are not the slow ones.

    The explainer, the reason sentences and the answer's serialisation each pay a one-off cost on
    first use; this pays it before the state is published (and so before the service is ready).
    The rows are not cached as answers.

    Args:
        state: the state about to be published.
        rows: how many customers to run through.
    """
    snapshot, scorer = state.snapshot, state.scorer
    positions = list(range(min(rows, len(snapshot.frame))))
    if not positions:
        return
    started = time.perf_counter()
    contrib, _ = scorer.contributions(snapshot.x[positions])
    reasons = scorer.reasons(contrib, [snapshot.row(p) for p in positions])
    answers = [scorer.answer(s, r, snapshot.as_of) for s, r in zip(snapshot.table.records(positions), reasons, strict=True)]
    PredictResponse(model=scorer.model_info, as_of=snapshot.as_of, results=list(answers)).model_dump_json()
    logger.info("warmed the explainer on %d customers in %.0f ms", len(positions), (time.perf_counter() - started) * 1000)


def data_signature(location: str) -> tuple[Any, ...] | None:
    """A cheap marker that changes when the data files change (None for a database server).

    Args:
        location: the dataset location.

    Returns:
        Names, sizes and modification times of the data files, or None for PostgreSQL.
    """

    kind = location_kind(location)
    if kind == "postgres":
        return None
    path = Path(location)
    if kind == "folder":
        files = [path / f"{name}{ext}" for name in TABLES for ext in (".csv", ".parquet")]
    else:
        files = [path]
    return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists())


def store_marker(location: str) -> tuple[Any, ...] | None:
    """A cheap marker that changes when a batch run may have been stored (None: always look).

    Args:
        location: the dataset location.

    Returns:
        Size and modification time of the store file, or None for PostgreSQL.
    """

    kind = location_kind(location)
    if kind == "postgres":
        return None
    path = Path(location) / FOLDER_FILE if kind == "folder" else Path(location)
    wal = path.with_name(path.name + ".wal")
    parts = [path, wal] if kind == "duckdb" else [path]
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else (p.name,) for p in parts)
