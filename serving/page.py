"""The retention team's page, mounted into the BentoML service at ``/ui``.

The page itself is static (``serving/page/static``: plain HTML, JavaScript and CSS, Chart.js
vendored, no build step). It reads the risk list from ``POST /risk_list`` and a customer's reasons
and actions from ``POST /predict``; this module adds only the JSON those verbs do not give:

- ``GET /ui/api/model``: the model in use (name, version, alias, trained when, test-period PR-AUC);
- ``GET /ui/api/filters``: the values the risk-list filters offer (regions, account managers ...);
- ``GET /ui/api/names?ids=C1,C2``: customer names for the rows of a risk-list page;
- ``GET /ui/api/customers/{customer_id}``: recent orders, complaints, open invoices with days past
  due and aging bucket, contacts, read from the CRM store as it was known on the as-of date;
- ``GET /ui/api/outcomes``: the newest ``churn outcomes`` report of every scoring run (calibration,
  realised ROC-AUC and PR-AUC, treated vs control retention, drift, retrain advice);
- ``GET /ui/api/overview``: churn rate and retention rate per period and ABC class (the retention
  team's definitions, see :func:`churn_by_period`), churn rate by account manager for the latest
  period, the current risk distribution by ABC class and value at risk by account manager.

Every ``/ui/api`` endpoint asks for the service's API key, sent the same way as to the API.
The page reuses what the service has loaded (model, scored snapshot, store) through
:func:`service_context`; nothing is loaded twice.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar, cast

import bentoml
import ibis
import ibis.expr.datatypes as dt
import pandas as pd
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from features.dataset import CRMDataset
from features.labels import churned
from features.orders import active_customers, revenue_365d
from features.registry import PointInTime, attach
from features.tiers import abc_class
from serving.middleware import key_matches
from serving.outcomes import latest_reports
from serving.runtime import NotReady
from serving.store import TryLater, opened_store

STATIC_DIR = Path(__file__).resolve().parent / "page" / "static"
TIERS = ("A", "B", "C")
BANDS = ("high", "medium", "low")
PYRAMID = ("platinum", "gold", "iron", "lead")
AGING_BUCKETS = ((0, "not due"), (30, "0–30 days"), (90, "31–90 days"), (180, "91–180 days"))
RECENT_ROWS = 10
OPEN_INVOICE_ROWS = 50
MAX_NAMES = 1000
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)


@dataclass
class PageContext:
    """What the page needs from the running service.

    Attributes:
        open_data: opens the CRM store for one read (a context manager that closes it afterwards,
            so that the page never holds a DuckDB file that ``churn score`` wants to write).
        as_of: the date the current scores are for (nothing on or after it is read).
        scores: one row per active customer: ``customer_id``, ``churn_probability``, ``risk_band``,
            ``tier``, ``pyramid``, ``revenue_12m``, ``value_at_risk`` and, where the store has them,
            ``region`` and ``account_manager``.
        model: the model in use: ``name``, ``version``, ``alias``, ``trained_at``, ``test_pr_auc``
            (and anything else worth showing).
        horizon_days: H, the churn horizon (lost = no order in H days).
        active_days: active = an order in this many days before the period start.
        authorized: tells whether a request carries the service's API key.
        key: identifies the state (model version, data) for the caches.
        outcomes: reads the newest ``churn outcomes`` report of every scoring run.
    """

    open_data: Callable[[], AbstractContextManager[CRMDataset]]
    as_of: date
    scores: pd.DataFrame
    model: dict[str, Any]
    horizon_days: int
    active_days: int
    authorized: Callable[[Request], bool]
    key: tuple[Any, ...] = field(default=())
    outcomes: Callable[[], list[dict[str, Any]]] = field(default=list)


_HELD = threading.RLock()


@contextmanager
def held(data: CRMDataset) -> Iterator[CRMDataset]:
    """An already open dataset as a :attr:`PageContext.open_data` context (left open; for tests).

    One connection serves one query at a time, so the reads through it take turns.
    """
    with _HELD:
        yield data


# ---------------------------------------------------------------------------------------------
# churn and retention per period


def period_starts(start: date, end: date, horizon_days: int, active_days: int) -> list[date]:
    """Calendar-quarter starts T whose churn outcome is known: T + H no later than ``end``.

    The first period leaves ``active_days`` of history before T so that "active" and the ABC class
    see a full year; on a shorter history it starts a quarter after the first order instead.

    Args:
        start: the day of the oldest order.
        end: the end of the data (exclusive): the as-of date of the current scores.
        horizon_days: H.
        active_days: the activity window.

    Returns:
        The period starts, oldest first (empty when the history is shorter than a quarter plus H).
    """

    def quarter_on_or_after(day: date) -> date:
        q = pd.Timestamp(day).to_period("Q")
        first = q.start_time.date()
        return first if first >= day else (q + 1).start_time.date()

    latest = end - timedelta(days=horizon_days)
    first = quarter_on_or_after(start + timedelta(days=active_days))
    if first > latest:
        first = quarter_on_or_after(start + timedelta(days=90))
    out = []
    t = first
    while t <= latest:
        out.append(t)
        t = (pd.Timestamp(t) + pd.DateOffset(months=3)).date()
    return out


def _period_expr(data: CRMDataset, t: date, horizon_days: int, active_days: int) -> ibis.Table:
    """Active and lost customers at T per ABC class (and account manager), as one expression."""
    at = PointInTime(t)
    known = data.cut(t)
    # only the last year (or activity window) before T matters here: scan that, not the whole history
    orders = known.table("orders")
    orders = orders.filter(at.within(orders.order_date, max(365, active_days)))
    population = active_customers(orders, at, active_days)
    revenue = orders.group_by("customer_id").aggregate(revenue_365d=revenue_365d(orders, at))
    s = attach(population, revenue)
    s = s.mutate(revenue_365d=s.revenue_365d.coalesce(0.0))
    s = s.mutate(tier=abc_class(s))
    if known.has("customers") and "account_manager" in known.table("customers").columns:
        s = attach(s, known.table("customers").select("customer_id", "account_manager"))
    else:
        s = s.mutate(account_manager=ibis.null(dt.string))
    s = s.mutate(account_manager=s.account_manager.fill_null("(none)"))
    labelled = churned(data, t, horizon_days, s)
    return labelled.group_by("tier", "account_manager").aggregate(
        active=labelled.count(),
        lost=labelled.churned.sum(),
        revenue_active=labelled.revenue_365d.sum(),
        revenue_lost=labelled.revenue_365d.sum(where=labelled.churned == 1),
    ).mutate(period_start=ibis.literal(t, type=dt.date))


def churn_by_period(data: CRMDataset, end: date, horizon_days: int = 90, active_days: int = 365) -> pd.DataFrame:
    """Churn and retention rate per period, per ABC class and per account manager, computed in the engine.

    Churn rate = customers lost / customers active at the period start; retention rate = 1 − churn
    rate. Active at T: an order in the ``active_days`` before T; lost: no order in [T, T + H) (the
    training label's definition); ABC class at T from the 12-month revenue before T (the snapshot's
    definition, :func:`features.tiers.abc_class`). Periods start on calendar quarters.

    Args:
        data: the CRM dataset.
        end: the end of the data (exclusive), normally the as-of date of the current scores.
        horizon_days: H.
        active_days: the activity window.

    Returns:
        One row per period start, ABC class and account manager: ``period_start``, ``tier``,
        ``account_manager``, ``active``, ``lost``, ``revenue_active``, ``revenue_lost`` (empty
        frame when the history holds no complete period).
    """
    columns = ["period_start", "tier", "account_manager", "active", "lost", "revenue_active", "revenue_lost"]
    data = data.cut(end)
    starts = period_starts(data.start_date(), end, horizon_days, active_days)
    if not starts:
        return pd.DataFrame(columns=columns)
    exprs = [_period_expr(data, t, horizon_days, active_days) for t in starts]
    frame = ibis.union(*exprs).to_pandas() if len(exprs) > 1 else exprs[0].to_pandas()
    frame["period_start"] = pd.to_datetime(frame["period_start"]).dt.date
    for col in ("active", "lost"):
        frame[col] = frame[col].fillna(0).astype("int64")
    for col in ("revenue_active", "revenue_lost"):
        frame[col] = frame[col].fillna(0.0).astype("float64")
    return frame[columns].sort_values(["period_start", "tier", "account_manager"], ignore_index=True)


def _rates(group: pd.DataFrame) -> dict[str, Any]:
    active = int(group["active"].sum())
    lost = int(group["lost"].sum())
    churn = lost / active if active else None
    return {
        "active": active,
        "lost": lost,
        "churn_rate": churn,
        "retention_rate": None if churn is None else 1.0 - churn,
        "revenue_lost": float(group["revenue_lost"].sum()),
    }


def summarise_periods(frame: pd.DataFrame) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rates per period and ABC class (plus "all"), and per account manager for the latest period.

    Args:
        frame: the result of :func:`churn_by_period`.

    Returns:
        ``(by_period, by_manager)``: lists of JSON-ready rows.
    """
    by_period: list[dict[str, Any]] = []
    by_manager: list[dict[str, Any]] = []
    if frame.empty:
        return by_period, by_manager
    for key, rows in frame.groupby("period_start", sort=True):
        start = cast(date, key)  # period_start holds dates
        q = pd.Timestamp(start).to_period("Q")
        label = f"{q.year} Q{q.quarter}"
        for tier, part in [*rows.groupby("tier", sort=True), ("all", rows)]:
            by_period.append({"period_start": start.isoformat(), "period_label": label, "tier": tier, **_rates(part)})
    latest = frame[frame["period_start"] == frame["period_start"].max()]
    for manager, part in latest.groupby("account_manager", sort=True):
        by_manager.append({"account_manager": manager, "period_start": latest["period_start"].iloc[0].isoformat(), **_rates(part)})
    by_manager.sort(key=lambda r: -(r["churn_rate"] or 0.0))
    return by_period, by_manager


# ---------------------------------------------------------------------------------------------
# the current risk picture (from the service's scores)


def risk_by_tier(scores: pd.DataFrame) -> list[dict[str, Any]]:
    """Customers and value at risk per ABC class and risk band.

    Args:
        scores: the service's scored customers.

    Returns:
        One row per (tier, risk_band) present: ``customers``, ``value_at_risk``.
    """
    if scores.empty:
        return []
    grouped = scores.groupby(["tier", "risk_band"], observed=True).agg(customers=("customer_id", "size"), value_at_risk=("value_at_risk", "sum"))
    rows = []
    for key, r in grouped.iterrows():
        tier, band_ = cast(tuple[Any, Any], key)  # the (tier, risk_band) index
        rows.append({"tier": str(tier), "risk_band": str(band_), "customers": int(r.customers), "value_at_risk": float(r.value_at_risk)})
    return rows


def value_at_risk_by_manager(scores: pd.DataFrame) -> list[dict[str, Any]]:
    """Value at risk per account manager, largest first.

    Args:
        scores: the service's scored customers.

    Returns:
        One row per account manager: ``value_at_risk``, ``customers``, ``high_risk`` (customers in
        the high band).
    """
    if scores.empty or "account_manager" not in scores.columns:
        return []
    s = scores.assign(account_manager=scores["account_manager"].fillna("(none)").astype(str), high=(scores["risk_band"] == "high"))
    grouped = s.groupby("account_manager").agg(value_at_risk=("value_at_risk", "sum"), customers=("customer_id", "size"), high_risk=("high", "sum"))
    grouped = grouped.sort_values("value_at_risk", ascending=False)
    return [
        {"account_manager": str(m), "value_at_risk": float(r.value_at_risk), "customers": int(r.customers), "high_risk": int(r.high_risk)}
        for m, r in grouped.iterrows()
    ]


# ---------------------------------------------------------------------------------------------
# one customer's history


def _json_value(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is pd.NaT or (not isinstance(v, (str, bytes)) and pd.isna(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if hasattr(v, "item"):
        return v.item()
    return v


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _json_value(v) for k, v in row.items()} for row in cast(list[dict[str, Any]], frame.to_dict(orient="records"))]


def _float(v: Any) -> float:
    v = _json_value(v)
    return float(v) if v is not None else 0.0


def _days(later: date, earlier: Any) -> int | None:
    if earlier is None or pd.isna(earlier):
        return None
    return (later - pd.Timestamp(earlier).date()).days


def aging_bucket(days_past_due: int) -> str:
    """The receivable aging bucket (应收账款账龄) of an unpaid invoice.

    Args:
        days_past_due: days since the due date (0 or less = not due yet).

    Returns:
        "not due", "0–30 days", "31–90 days", "91–180 days" or "over 180 days (bad debt)".
    """
    for limit, name in AGING_BUCKETS:
        if days_past_due <= limit:
            return name
    return "over 180 days (bad debt)"


def customer_detail(data: CRMDataset, customer_id: str, as_of: date) -> dict[str, Any] | None:
    """A customer's master data and recent history as known on ``as_of``, read from the store.

    Args:
        data: the CRM dataset.
        customer_id: the customer.
        as_of: nothing dated on or after it is shown; later payments and resolutions look open.

    Returns:
        ``customer`` (master data), ``orders`` (latest first), ``complaints`` (open ones first, then
        latest), ``invoices`` (unpaid, most overdue first, each with ``days_past_due`` and
        ``aging_bucket``), ``contacts`` (latest first) and ``totals``; None for an unknown customer.
    """
    known = data.cut(as_of)
    cid = ibis.literal(str(customer_id), type=dt.string)
    master: dict[str, Any] = {"customer_id": str(customer_id)}
    if known.has("customers"):
        c = known.table("customers")
        found = _records(c.filter(c.customer_id == cid).limit(1).to_pandas())
        if found:
            master.update(found[0])
    o = known.table("orders")
    mine = o.filter(o.customer_id == cid)
    summary = mine.aggregate(
        n=mine.count(),
        revenue_365d=mine.amount.sum(where=mine.order_date >= ibis.literal(as_of - timedelta(days=365), type=dt.date)),
        first=mine.order_date.min(),
        last=mine.order_date.max(),
    ).to_pandas().iloc[0]
    if int(summary["n"]) == 0 and len(master) == 1:
        return None
    orders = mine.order_by(ibis.desc("order_date"), ibis.desc("order_id")).limit(RECENT_ROWS).to_pandas()
    detail: dict[str, Any] = {
        "customer_id": str(customer_id),
        "as_of": as_of.isoformat(),
        "customer": master,
        "orders": _records(orders),
        "complaints": [],
        "invoices": [],
        "contacts": [],
        "totals": {
            "orders": int(summary["n"]),
            "revenue_365d": _float(summary["revenue_365d"]),
            "first_order": _json_value(summary["first"]),
            "last_order": _json_value(summary["last"]),
        },
    }
    if known.has("complaints"):
        detail["complaints"], detail["totals"]["open_complaints"] = _complaints_detail(known.table("complaints"), cid, as_of)
    if known.has("invoices"):
        detail["invoices"], totals = _invoices_detail(known.table("invoices"), cid, as_of)
        detail["totals"].update(totals)
    if known.has("contacts"):
        t = known.table("contacts")
        rows = t.filter(t.customer_id == cid).order_by(ibis.desc("contacted_at")).limit(RECENT_ROWS).to_pandas()
        detail["contacts"] = _records(rows.drop(columns="customer_id"))
        detail["totals"]["days_since_last_contact"] = _days(as_of, rows["contacted_at"].iloc[0]) if len(rows) else None
    detail["orders"] = [{k: v for k, v in r.items() if k != "customer_id"} for r in detail["orders"]]
    detail["complaints"] = [{k: v for k, v in r.items() if k != "customer_id"} for r in detail["complaints"]]
    detail["invoices"] = [{k: v for k, v in r.items() if k != "customer_id"} for r in detail["invoices"]]
    return detail


def _complaints_detail(t: ibis.Table, cid: ibis.Value, as_of: date) -> tuple[list[dict[str, Any]], int]:
    """A customer's latest complaints (open ones first, with days open or to resolve) and how many are open."""
    mine_c = t.filter(t.customer_id == cid)
    is_open = mine_c.resolved_at.isnull() if "resolved_at" in mine_c.columns else ibis.literal(True)
    rows = mine_c.mutate(_open=is_open).order_by(ibis.desc("_open"), ibis.desc("opened_at")).limit(RECENT_ROWS).to_pandas()
    out = []
    for rec in _records(rows.drop(columns="_open")):
        rec["days_open"] = _days(as_of, rec["opened_at"]) if not rec.get("resolved_at") else None
        rec["days_to_resolve"] = (
            (pd.Timestamp(rec["resolved_at"]) - pd.Timestamp(rec["opened_at"])).days if rec.get("resolved_at") else None
        )
        out.append(rec)
    return out, int(mine_c.filter(is_open).count().to_pandas())


def _invoices_detail(t: ibis.Table, cid: ibis.Value, as_of: date) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A customer's unpaid invoices (most overdue first, with days past due and aging bucket) and their totals."""
    mine_i = t.filter(t.customer_id == cid)
    if "paid_at" in mine_i.columns:
        mine_i = mine_i.filter(mine_i.paid_at.isnull())
    rows = mine_i.order_by("due_at", "invoice_id").limit(OPEN_INVOICE_ROWS).to_pandas()
    out = []
    for rec in _records(rows):
        past_due = _days(as_of, rec["due_at"]) or 0
        rec["days_past_due"] = max(past_due, 0)
        rec["aging_bucket"] = aging_bucket(past_due)
        out.append(rec)
    totals = mine_i.aggregate(
        n=mine_i.count(),
        open_balance=mine_i.amount.sum(),
        overdue_balance=mine_i.amount.sum(where=mine_i.due_at < ibis.literal(as_of, type=dt.date)),
    ).to_pandas().iloc[0]
    return out, {
        "open_invoices": int(totals["n"]),
        "open_balance": _float(totals["open_balance"]),
        "overdue_balance": _float(totals["overdue_balance"]),
    }


# ---------------------------------------------------------------------------------------------
# the app


def _sorted_values(scores: pd.DataFrame, column: str) -> list[str]:
    if column not in scores.columns:
        return []
    return sorted({str(v) for v in scores[column].dropna().unique() if str(v) not in ("", "nan", "None")})


class _PerState:
    """A value computed once per service state (model version, data, as-of) and kept until it changes."""

    def __init__(self, compute: Callable[[PageContext], Any]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._value: Any = None

    def get(self, ctx: PageContext) -> Any:
        key = (ctx.as_of, ctx.horizon_days, ctx.active_days, *ctx.key)
        with self._lock:
            if self._key != key:
                self._value = self._compute(ctx)
                self._key = key
            return self._value

    def warm(self, ctx: PageContext) -> None:
        """Compute in the background if needed, so that the first request that needs it waits less."""
        key = (ctx.as_of, ctx.horizon_days, ctx.active_days, *ctx.key)
        if self._key != key and not self._lock.locked():
            threading.Thread(target=self.get, args=(ctx,), name="churn-page-warmup", daemon=True).start()


def _period_frame(ctx: PageContext) -> pd.DataFrame:
    with ctx.open_data() as data:
        return churn_by_period(data, ctx.as_of, ctx.horizon_days, ctx.active_days)


def _names(ctx: PageContext) -> dict[str, str]:
    with ctx.open_data() as data:
        if not data.has("customers") or "name" not in data.table("customers").columns:
            return {}
        frame = data.table("customers").select("customer_id", "name").to_pandas()
    frame = frame.dropna()
    return dict(zip(frame["customer_id"].astype(str), frame["name"].astype(str), strict=True))


def _guarded(get_context: Callable[[], PageContext], handler: Callable[[Request, PageContext], Response]) -> Callable[[Request], Any]:
    """The endpoint of a page handler: the context (503 while loading), the API key (401), busy store (503)."""

    async def endpoint(request: Request) -> Response:
        try:
            ctx = get_context()
        except LookupError as err:
            return JSONResponse({"error": str(err), "detail": []}, status_code=503)
        if not ctx.authorized(request):
            return JSONResponse(
                {"error": "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'", "detail": []},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="churn"'},
            )
        try:
            return await run_in_threadpool(handler, request, ctx)
        except TryLater as err:
            return JSONResponse({"error": str(err), "detail": []}, status_code=503, headers={"Retry-After": str(err.retry_after)})

    return endpoint


def _filters(request: Request, ctx: PageContext) -> Response:
    s = ctx.scores
    return JSONResponse({
        "tier": [t for t in TIERS if "tier" in s.columns and (s["tier"] == t).any()] or list(TIERS),
        "pyramid": [p for p in PYRAMID if "pyramid" in s.columns and (s["pyramid"] == p).any()] or list(PYRAMID),
        "risk_band": list(BANDS),
        "region": _sorted_values(s, "region"),
        "account_manager": _sorted_values(s, "account_manager"),
    })


def _customer(request: Request, ctx: PageContext) -> Response:
    customer_id = request.path_params["customer_id"]
    if not customer_id.isprintable():
        return JSONResponse({"error": f"customer id {customer_id!r} holds a control character: send the id as the CRM shows it", "detail": []}, status_code=400)
    with ctx.open_data() as data:
        found = customer_detail(data, customer_id, ctx.as_of)
    if found is None:
        return JSONResponse({"error": f"unknown customer {customer_id!r}", "detail": []}, status_code=404)
    return JSONResponse(found)


def _outcome_reports(request: Request, ctx: PageContext) -> Response:
    return JSONResponse({"reports": ctx.outcomes()})

async def _index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def make_page_app(get_context: Callable[[], PageContext]) -> Starlette:
    """The page's Starlette app: the static page at ``/`` and its JSON under ``/api``.

    Args:
        get_context: returns the running service's :class:`PageContext` (called per request, so a
            newly loaded model or snapshot is picked up); raises LookupError while loading.

    Returns:
        The ASGI app to mount at ``/ui``.
    """
    periods = _PerState(_period_frame)
    names = _PerState(_names)

    def guard(handler: Callable[[Request, PageContext], Response]) -> Callable[[Request], Any]:
        return _guarded(get_context, handler)


    def model_info(request: Request, ctx: PageContext) -> Response:
        # the page asks for the model first, at sign-in: start the slower reads the other views need
        periods.warm(ctx)
        names.warm(ctx)
        body = {k: _json_value(v) for k, v in ctx.model.items()}
        return JSONResponse({**body, "as_of": ctx.as_of.isoformat(), "customers": int(len(ctx.scores))})

    def customer_names(request: Request, ctx: PageContext) -> Response:
        wanted = [i for i in request.query_params.get("ids", "").split(",") if i][:MAX_NAMES]
        known = names.get(ctx)
        return JSONResponse({i: known[i] for i in wanted if i in known})

    def overview(request: Request, ctx: PageContext) -> Response:
        by_period, by_manager = summarise_periods(periods.get(ctx))
        s = ctx.scores
        return JSONResponse({
            "as_of": ctx.as_of.isoformat(),
            "horizon_days": ctx.horizon_days,
            "active_days": ctx.active_days,
            "tiers": [*TIERS, "all"],
            "churn_by_period": by_period,
            "churn_by_manager_latest": by_manager,
            "risk_by_tier": risk_by_tier(s),
            "value_at_risk_by_manager": value_at_risk_by_manager(s),
            "totals": {
                "customers": int(len(s)),
                "high_risk": int((s["risk_band"] == "high").sum()) if len(s) else 0,
                "value_at_risk": float(s["value_at_risk"].sum()) if len(s) else 0.0,
            },
        })

    routes = [
        Route("/", _index),
        Route("/index.html", _index),
        Route("/api/model", guard(model_info)),
        Route("/api/filters", guard(_filters)),
        Route("/api/overview", guard(overview)),
        Route("/api/names", guard(customer_names)),
        Route("/api/outcomes", guard(_outcome_reports)),
        Route("/api/customers/{customer_id:path}", guard(_customer)),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])


class SecurityHeaders:
    """Every page response says: only this origin's scripts and styles, never inside a frame, no type sniffing."""

    HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [
        (b"content-security-policy", PAGE_CSP.encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)


# ---------------------------------------------------------------------------------------------
# the running service


_CONTEXTS: dict[int, PageContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def runtime_context(runtime: Any) -> PageContext:
    """The :class:`PageContext` of a :class:`serving.runtime.Runtime`: its published state, reused.

    The scores are the runtime's scored snapshot (the same probabilities, bands and values at risk
    that ``/predict`` gives); the store is the runtime's data location, opened per read.

    Args:
        runtime: the service's runtime.

    Returns:
        The context (one per published state, cached).

    Raises:
        LookupError: the runtime is still loading.
    """
    try:
        state = runtime.require_state()
    except NotReady as err:
        raise LookupError(str(err)) from None
    with _CONTEXTS_LOCK:
        found = _CONTEXTS.get(id(state))
        if found is not None:
            return found
        settings = runtime.settings
        info = state.scorer.model_info
        key = (settings.resolved_api_key() or "").encode()

        def authorized(request: Request) -> bool:
            return key_matches(request.scope.get("headers", []), key)

        ctx = PageContext(
            open_data=lambda: opened_store(settings.data),
            as_of=state.snapshot.as_of,
            scores=state.snapshot.table.frame,
            model=info.model_dump(),
            horizon_days=int(info.horizon_days or settings.horizon_days),
            active_days=int(settings.active_days),
            authorized=authorized,
            key=(info.name, info.version, state.data_fingerprint, id(state)),
            outcomes=lambda: latest_reports(settings.data),
        )
        _CONTEXTS.clear()
        _CONTEXTS[id(state)] = ctx
        return ctx


def service_context() -> PageContext:
    """The :class:`PageContext` of the BentoML service this page is mounted into.

    Raises:
        LookupError: while the service has not finished loading.
    """
    try:
        svc = bentoml.get_current_service()
    except Exception as err:  # BentoML raises its own exception type here
        raise LookupError("the service is still starting") from err
    return runtime_context(svc.runtime)


page_app = make_page_app(service_context)
