"""Buy-Till-You-Die baselines: the BG/NBD model and its modified form, fitted by maximum likelihood.

BG/NBD (Fader, Hardie and Lee 2005): while alive, a customer orders as a Poisson process with rate
``lambda ~ Gamma(r, alpha)``; after each repeat order it drops out with probability
``p ~ Beta(a, b)``. The modified BG/NBD (MBG/NBD, Batislam, Denizel and Filiztekin 2007, with the
erratum of Wagner and Hoppe 2008) also lets a customer drop out right after the first order, so
a customer with no repeat order is not certain to be alive.

Both are fitted on the standard summary of a customer's orders before the as-of date: ``frequency``
(repeat order days), ``recency`` (first to last order) and ``T`` (first order to the as-of date),
time in weeks by default. The fit works on the log parameters and, like the ``lifetimes`` package,
scales time so that the oldest customer's ``T`` is 1 and adds ``penalizer * sum(params**2)`` to
the mean negative log-likelihood, so the same penalizer means the same here as there.

Per customer the model gives the expected orders in the next ``t``, ``P(alive)`` and the
probability of no order in the next ``t``:
``P(0 in (T, T+t]) = 1 - P(alive) + P(alive) * ((alpha + T) / (alpha + T + t)) ** (r + x)``
(given alive, ``lambda | x, T ~ Gamma(r + x, alpha + T)`` and a customer who does not order does
not drop out).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import optimize, special

if TYPE_CHECKING:
    import ibis

Variant = Literal["bgnbd", "mbgnbd"]
CountBy = Literal["day", "order"]

PARAM_NAMES = ("r", "alpha", "a", "b")
_START_POINTS = (
    np.full(4, 0.1),
    np.log([0.5, 0.5, 1.0, 5.0]),
    np.log([1.0, 0.1, 0.5, 2.0]),
)
_LOG_BOUND = 25.0
_DEGENERATE_LOG = 12.0


@dataclass(frozen=True)
class BTYDParams:
    """Fitted population parameters (``alpha`` in the model's time unit)."""

    r: float
    alpha: float
    a: float
    b: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        """``(r, alpha, a, b)``."""
        return self.r, self.alpha, self.a, self.b


class BetaGeoModel:
    """BG/NBD or modified BG/NBD, fitted by penalised maximum likelihood.

    Args:
        variant: "mbgnbd" (modified BG/NBD, default: it converges on short histories) or "bgnbd".
        penalizer: L2 penalty on the (time-scaled) parameters, as in ``lifetimes``.

    Attributes (after ``fit``):
        params_: the fitted parameters.
        converged_: the optimiser stopped at a stationary point (bounds on the log parameters
            taken into account).
        boundary_: parameters that ran off to 0 or infinity (e.g. ``["a->0", "b->0"]``: the
            drop-out process vanishes and the fit is the NBD limit); empty for an interior optimum.
        neg_log_likelihood_: the mean penalised negative log-likelihood at the optimum.
        n_customers_: customers fitted on.
        message_: the optimiser's message.
    """

    def __init__(self, variant: Variant = "mbgnbd", penalizer: float = 0.1) -> None:
        if variant not in ("bgnbd", "mbgnbd"):
            raise ValueError(f"variant must be 'bgnbd' or 'mbgnbd', not {variant!r}")
        if penalizer < 0:
            raise ValueError("penalizer must be 0 or more")
        self.variant = variant
        self.penalizer = penalizer

    def fit(self, frequency: np.ndarray | pd.Series, recency: np.ndarray | pd.Series, T: np.ndarray | pd.Series) -> BetaGeoModel:
        """Fit the population parameters.

        Args:
            frequency: repeat orders per customer (``x``, an integer >= 0).
            recency: time from first to last order (``t_x``; 0 when ``x`` = 0).
            T: time from first order to the end of observation.

        Returns:
            self, fitted.
        """
        x, tx, age = _check(frequency, recency, T)
        if len(x) == 0:
            raise ValueError("no customers to fit the BTYD model on")
        uniq, weights = np.unique(np.column_stack([x, tx, age]), axis=0, return_counts=True)
        scale = 1.0 / max(float(age.max()), 1e-9)
        args = (uniq[:, 0], uniq[:, 1] * scale, uniq[:, 2] * scale, weights.astype(float))
        bounds = [(-_LOG_BOUND, _LOG_BOUND)] * 4
        best: optimize.OptimizeResult | None = None
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for start in _START_POINTS:
                res = optimize.minimize(self._objective, start, args=args, method="L-BFGS-B", bounds=bounds)
                if np.isfinite(res.fun) and (best is None or res.fun < best.fun - 1e-10):
                    best = res
            assert best is not None
            polished = optimize.minimize(
                self._objective, best.x, args=args, method="Nelder-Mead", bounds=bounds,
                options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 4000},
            )
            if polished.success and polished.fun <= best.fun:
                best = polished
            stationary = _projected_gradient_small(self._objective, best.x, args, bounds)
        r, alpha, a, b = np.exp(best.x)
        self.params_ = BTYDParams(r=float(r), alpha=float(alpha / scale), a=float(a), b=float(b))
        self.neg_log_likelihood_ = float(best.fun)
        self.converged_ = bool(np.isfinite(best.fun) and (best.success or stationary))
        self.boundary_ = [
            f"{name}->{'0' if value < 0 else 'inf'}" for name, value in zip(PARAM_NAMES, best.x, strict=True) if abs(value) >= _DEGENERATE_LOG
        ]
        self.message_ = str(best.message)
        self.n_customers_ = int(len(x))
        return self

    def _objective(self, log_params: np.ndarray, x: np.ndarray, tx: np.ndarray, age: np.ndarray, weights: np.ndarray) -> float:
        params = np.exp(log_params)
        r, alpha, a, b = params
        ll = _log_likelihood(self.variant, r, alpha, a, b, x, tx, age)
        value = -float(np.dot(weights, ll) / weights.sum()) + self.penalizer * float(np.sum(params**2))
        return value if np.isfinite(value) else 1e300

    def log_likelihood(self, frequency: np.ndarray | pd.Series, recency: np.ndarray | pd.Series, T: np.ndarray | pd.Series) -> np.ndarray:
        """Per-customer log-likelihood under the fitted parameters.

        Args:
            frequency: repeat orders.
            recency: first to last order.
            T: first order to end of observation.

        Returns:
            The log-likelihood of each customer's history.
        """
        x, tx, age = _check(frequency, recency, T)
        return _log_likelihood(self.variant, *self._params(), x, tx, age)

    def p_alive(self, frequency: np.ndarray | pd.Series, recency: np.ndarray | pd.Series, T: np.ndarray | pd.Series) -> np.ndarray:
        """Probability that each customer is still alive (will order again) at the end of observation.

        Args:
            frequency: repeat orders.
            recency: first to last order.
            T: first order to end of observation.

        Returns:
            ``P(alive | x, t_x, T)`` per customer.
        """
        x, tx, age = _check(frequency, recency, T)
        r, alpha, a, b = self._params()
        log_ratio = (r + x) * (np.log(alpha + age) - np.log(alpha + tx))
        if self.variant == "bgnbd":
            odds = np.log(a) - np.log(np.maximum(b + x - 1.0, 1e-300)) + log_ratio
            return np.where(x > 0, special.expit(-odds), 1.0)
        odds = np.log(a) - np.log(b + x) + log_ratio
        return special.expit(-odds)

    def p_no_order(self, t: float, frequency: np.ndarray | pd.Series, recency: np.ndarray | pd.Series, T: np.ndarray | pd.Series) -> np.ndarray:
        """Probability of no order in the next ``t`` time units.

        Args:
            t: the horizon, in the model's time unit.
            frequency: repeat orders.
            recency: first to last order.
            T: first order to end of observation.

        Returns:
            ``P(no order in (T, T + t] | x, t_x, T)`` per customer.
        """
        x, _, age = _check(frequency, recency, T)
        r, alpha, _, _ = self._params()
        alive = self.p_alive(frequency, recency, T)
        silent_if_alive = np.exp((r + x) * (np.log(alpha + age) - np.log(alpha + age + t)))
        return np.clip(1.0 - alive + alive * silent_if_alive, 0.0, 1.0)

    def expected_orders(self, t: float, frequency: np.ndarray | pd.Series, recency: np.ndarray | pd.Series, T: np.ndarray | pd.Series) -> np.ndarray:
        """Expected number of orders in the next ``t`` time units (Fader et al. eq. 10; Wagner and Hoppe 2008).

        Args:
            t: the horizon, in the model's time unit.
            frequency: repeat orders.
            recency: first to last order.
            T: first order to end of observation.

        Returns:
            ``E[Y(t) | x, t_x, T]`` per customer.
        """
        x, tx, age = _check(frequency, recency, T)
        r, alpha, a, b = self._params()
        alive = self.p_alive(frequency, recency, T)
        extra = 0.0 if self.variant == "bgnbd" else 1.0
        out = np.full(len(x), np.nan)
        if abs(a - 1.0) > 1e-3:
            c = a + b + x - 1.0 + extra
            z = t / (alpha + age + t)
            with np.errstate(all="ignore"):
                log_hyp = np.log(special.hyp2f1(r + x, b + x + extra, c, z))
                alt = np.log(special.hyp2f1(c - r - x, c - b - x - extra, c, z)) + (c - r - x - b - x - extra) * np.log1p(-z)
                log_hyp = np.where(np.isfinite(log_hyp), log_hyp, alt)
                given_alive = (a + b + x - 1.0 + extra) / (a - 1.0) * -np.expm1(log_hyp + (r + x) * (np.log(alpha + age) - np.log(alpha + age + t)))
            out = alive * given_alive
        bad = ~np.isfinite(out) | (out < 0)
        if bad.any():
            out[bad] = alive[bad] * _expected_given_alive_quadrature(t, x[bad], age[bad], r, alpha, a, b + extra)
        return out

    def _params(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise ValueError("the BTYD model is not fitted yet: call fit first")
        return self.params_.as_tuple()


def _check(frequency: np.ndarray | pd.Series, recency: np.ndarray | pd.Series, T: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(frequency, dtype=float)
    tx = np.asarray(recency, dtype=float)
    age = np.asarray(T, dtype=float)
    if not (x.shape == tx.shape == age.shape):
        raise ValueError("frequency, recency and T must have the same length")
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must be a whole number >= 0")
    if np.any(tx < 0) or np.any(tx > age + 1e-9):
        raise ValueError("recency must be between 0 and T")
    if np.any((x == 0) & (tx > 0)):
        raise ValueError("recency must be 0 for customers without a repeat order")
    return x, tx, age


def _log_likelihood(variant: Variant, r: float, alpha: float, a: float, b: float, x: np.ndarray, tx: np.ndarray, age: np.ndarray) -> np.ndarray:
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a3 = -(r + x) * np.log(alpha + age)
    if variant == "bgnbd":
        a2 = special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b) - special.gammaln(a + b + x)
        a4 = np.log(a) - np.log(b + np.maximum(x, 1.0) - 1.0) - (r + x) * np.log(alpha + tx)
        return a1 + a2 + np.where(x > 0, np.logaddexp(a3, a4), a3)
    a2 = special.gammaln(a + b) + special.gammaln(b + x + 1.0) - special.gammaln(b) - special.gammaln(a + b + x + 1.0)
    a4 = np.log(a) - np.log(b + x) - (r + x) * np.log(alpha + tx)
    return a1 + a2 + np.logaddexp(a3, a4)


def _projected_gradient_small(fun, x0: np.ndarray, args: tuple, bounds: list[tuple[float, float]], tol: float = 1e-4) -> bool:
    """Whether ``x0`` is stationary: a small gradient, except along a bound the gradient pushes against."""
    grad = optimize.approx_fprime(x0, fun, 1e-7, *args)
    if not np.all(np.isfinite(grad)):
        return False
    lower = np.array([b[0] for b in bounds])
    upper = np.array([b[1] for b in bounds])
    pushing_out = ((x0 <= lower + 1e-6) & (grad > 0)) | ((x0 >= upper - 1e-6) & (grad < 0))
    return bool(np.max(np.abs(np.where(pushing_out, 0.0, grad))) < tol)


def _expected_given_alive_quadrature(t: float, x: np.ndarray, age: np.ndarray, r: float, alpha: float, a: float, b_alive: float, nodes: int = 96) -> np.ndarray:
    """``E[(1 - ((alpha+T)/(alpha+T+p t))^(r+x)) / p]`` for ``p ~ Beta(a, b_alive + x)`` by Gauss-Jacobi quadrature."""
    out = np.empty(len(x))
    for value in np.unique(x):
        idx = np.flatnonzero(x == value)
        beta_b = max(b_alive + value, 1e-10)
        roots, w = special.roots_jacobi(nodes, beta_b - 1.0, max(a, 1e-10) - 1.0)
        p = (roots + 1.0) / 2.0
        w = w / w.sum()
        base = alpha + age[idx][:, None]
        f = -np.expm1(-(r + value) * np.log1p(p[None, :] * t / base)) / p[None, :]
        out[idx] = f @ w
    return out


def rfm_summary(
    orders: pd.DataFrame | ibis.Table,
    as_of: date,
    *,
    time_unit_days: float = 7.0,
    count_by: CountBy = "day",
) -> pd.DataFrame:
    """The (frequency, recency, T) summary of each customer's positive orders before ``as_of``.

    Args:
        orders: the contract's orders (``customer_id``, ``order_date``, ``amount``), as a pandas
            frame or an Ibis table (aggregated in the engine; only one row per customer comes back).
        as_of: nothing on or after this day is read.
        time_unit_days: days per time unit (7: weeks).
        count_by: "day" counts repeat order days (the BTYD convention), "order" repeat orders.

    Returns:
        Indexed by ``customer_id``: ``frequency``, ``recency``, ``T`` (in time units),
        ``first_order``, ``last_order`` and ``orders`` (positive orders before ``as_of``).
    """
    if isinstance(orders, pd.DataFrame):
        frame = orders.loc[:, ["customer_id", "order_date", "amount"]]
        day = pd.to_datetime(frame["order_date"]).dt.normalize()
        keep = (day < pd.Timestamp(as_of)) & (frame["amount"] > 0)
        kept = pd.DataFrame({"customer_id": frame.loc[keep, "customer_id"].astype("string"), "day": day[keep]})
        agg = kept.groupby("customer_id", sort=True).agg(first_order=("day", "min"), last_order=("day", "max"), orders=("day", "size"), days=("day", "nunique"))
    else:
        import ibis
        import ibis.expr.datatypes as dt

        t = orders.filter((orders.order_date < ibis.literal(as_of, type=dt.date)) & (orders.amount > 0))
        agg = (
            t.group_by("customer_id")
            .aggregate(first_order=t.order_date.min(), last_order=t.order_date.max(), orders=t.count(), days=t.order_date.nunique())
            .to_pandas()
            .assign(customer_id=lambda f: f["customer_id"].astype("string"))
            .set_index("customer_id")
            .sort_index()
        )
        agg["first_order"] = pd.to_datetime(agg["first_order"])
        agg["last_order"] = pd.to_datetime(agg["last_order"])
    repeats = (agg["days"] if count_by == "day" else agg["orders"]) - 1
    end = pd.Timestamp(as_of)
    out = pd.DataFrame(
        {
            "frequency": repeats.astype("int64"),
            "recency": (agg["last_order"] - agg["first_order"]).dt.days / time_unit_days,
            "T": (end - agg["first_order"]).dt.days / time_unit_days,
            "first_order": agg["first_order"],
            "last_order": agg["last_order"],
            "orders": agg["orders"].astype("int64"),
        },
        index=agg.index,
    )
    out.loc[out["frequency"] == 0, "recency"] = 0.0
    return out


def btyd_feature_names(horizon_days: int = 90, no_order_horizons: Sequence[int] = ()) -> list[str]:
    """The columns :func:`btyd_features` returns for a horizon (and further horizons of the chance of no order)."""
    more = [f"btyd_p_no_order_{days}d" for days in _more_horizons(horizon_days, no_order_horizons)]
    return [f"btyd_expected_orders_{horizon_days}d", "btyd_p_alive", f"btyd_p_no_order_{horizon_days}d", *more]


def _more_horizons(horizon_days: int, no_order_horizons: Sequence[int]) -> list[int]:
    return [days for days in dict.fromkeys(no_order_horizons) if days != horizon_days]


def btyd_features(
    orders: pd.DataFrame | ibis.Table,
    as_of: date,
    horizon_days: int = 90,
    *,
    variant: Variant = "mbgnbd",
    penalizer: float = 0.1,
    time_unit_days: float = 7.0,
    count_by: CountBy = "day",
    customers: pd.Index | list[str] | None = None,
    no_order_horizons: Sequence[int] = (),
) -> pd.DataFrame:
    """BTYD figures per customer as of a date, fitted on every customer's orders before it (no leakage).

    Args:
        orders: the contract's orders table (pandas frame or Ibis table); returns (amount <= 0) ignored.
        as_of: the snapshot date; nothing on or after it is read.
        horizon_days: the prediction horizon.
        variant: "mbgnbd" (default) or "bgnbd".
        penalizer: L2 penalty, as in ``lifetimes`` (0.1 converges on short histories).
        time_unit_days: days per time unit (7: weeks).
        count_by: repeat order "day"s (default) or "order"s.
        customers: return these customers only (those without an order before ``as_of`` get NaN).
        no_order_horizons: further horizons in days for the chance of no order, from the same fit.

    Returns:
        Indexed by ``customer_id``: ``btyd_expected_orders_<H>d`` (expected orders in the next
        ``horizon_days``), ``btyd_p_alive``, ``btyd_p_no_order_<H>d`` and ``btyd_p_no_order_<N>d``
        for each further horizon (see :func:`btyd_feature_names`). ``attrs`` holds the fitted
        parameters, the variant and whether the fit converged.
    """
    summary = rfm_summary(orders, as_of, time_unit_days=time_unit_days, count_by=count_by)
    names = btyd_feature_names(horizon_days, no_order_horizons)
    if summary.empty:
        out = pd.DataFrame(columns=names, index=pd.Index([], name="customer_id", dtype="string"), dtype="float64")
    else:
        model = BetaGeoModel(variant=variant, penalizer=penalizer).fit(summary["frequency"], summary["recency"], summary["T"])
        t = horizon_days / time_unit_days
        args = (summary["frequency"], summary["recency"], summary["T"])
        more = {
            name: model.p_no_order(days / time_unit_days, *args)
            for name, days in zip(names[3:], _more_horizons(horizon_days, no_order_horizons), strict=True)
        }
        out = pd.DataFrame(
            {
                names[0]: model.expected_orders(t, *args),
                names[1]: model.p_alive(*args),
                names[2]: model.p_no_order(t, *args),
                **more,
            },
            index=summary.index,
        )
        out.attrs.update({"params": model.params_, "variant": variant, "penalizer": penalizer, "converged": model.converged_, "boundary": model.boundary_})
    if customers is not None:
        out = out.reindex(pd.Index(customers, name="customer_id").astype("string"))
    out.index.name = "customer_id"
    return out


def simulate(
    n: int,
    T: float | np.ndarray,
    params: BTYDParams,
    *,
    variant: Variant = "bgnbd",
    horizon: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate customers from the BG/NBD or MBG/NBD process, observed up to ``T`` and ``horizon`` beyond.

    Args:
        n: customers.
        T: observation length per customer from the first order (a number or an array of ``n``).
        params: the population parameters.
        variant: "bgnbd" drops out after repeat orders only, "mbgnbd" also right after the first.
        horizon: how long to follow each customer after ``T``.
        seed: random seed.

    Returns:
        ``frequency``, ``recency``, ``T`` (the history), ``alive`` (at ``T``) and ``future_orders``
        (orders in ``(T, T + horizon]``) per customer.
    """
    rng = np.random.default_rng(seed)
    ages = np.broadcast_to(np.asarray(T, dtype=float), (n,)).copy()
    lam = rng.gamma(params.r, 1.0 / params.alpha, size=n)
    p = rng.beta(params.a, params.b, size=n)
    freq = np.zeros(n, dtype=np.int64)
    future = np.zeros(n, dtype=np.int64)
    rec = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    for i in range(n):
        now, dead_at = 0.0, np.inf
        if variant == "mbgnbd" and rng.random() < p[i]:
            dead_at = 0.0
        while np.isinf(dead_at):
            now += rng.exponential(1.0 / lam[i])
            if now > ages[i] + horizon:
                break
            if now <= ages[i]:
                freq[i] += 1
                rec[i] = now
            else:
                future[i] += 1
            if rng.random() < p[i]:
                dead_at = now
        alive[i] = dead_at > ages[i]
    return pd.DataFrame({"frequency": freq, "recency": rec, "T": ages, "alive": alive, "future_orders": future})
