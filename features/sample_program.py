"""A retention program on the sample company, with its truth known: what the team's actions changed.

:class:`RetentionProgram` names the customers the team treated (the action's key and the day it
was done) and each action's effect: the share of the customer's hazard of loss it takes away.
From the month of its action on, a treated customer's decline under way turns into a recovery, a
customer already lost comes back, and every later churn trigger is prevented, each with that
probability (drawn from the program's own random stream). Customers not treated (the control
group, everyone else) are simulated as before.

The data before the program's ``start`` (the as-of date the team scored at) is exactly the data
without the program, row for row: the generator simulates each block twice from the same state,
without the program (world A) and with it (world B), and keeps A's rows dated before ``start``
and B's from ``start`` on (B's new rows get fresh ids). Since the program acts only from
``start``, both worlds share every customer's latent history up to then.

:func:`generate_with_program` returns the tables and the truth: per customer, whether it was
treated, its action and effect, and whether it ordered in ``[start, start + horizon)`` with the
program (B, what the tables show) and without it (A): the realised effect on the treated is the
mean of the difference.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.sample_data import iter_sample_chunks

TRUTH = "program_truth"
"""The key of the truth frame in the chunks a program's generator yields (never written to a store)."""

_DATE_COLUMN = {"orders": "order_date", "complaints": "opened_at", "invoices": "issued_at", "contacts": "contacted_at"}
_ID = {"orders": ("order_id", "O", "orders", 8), "complaints": ("complaint_id", "CP", "complaints", 6), "invoices": ("invoice_id", "INV", "invoices", 8)}
_EPOCH = datetime.date(1970, 1, 1)

Renumber = Callable[[str, str, int, int], pd.Series]


@dataclass(frozen=True)
class RetentionProgram:
    """Who the team treated, when, with what, and what each action does.

    Attributes:
        start: the first day of the program (the scoring run's as-of date); nothing before it changes.
        treated: customer id to (action key, day done); days before ``start`` count from ``start``.
        effects: action key to the share of the hazard of loss it takes away (0 to 1).
        horizon_days: the window after ``start`` in which the truth counts an order as retention.
        seed: the program's own random stream.
    """

    start: datetime.date
    treated: Mapping[str, tuple[str, datetime.date]]
    effects: Mapping[str, float]
    horizon_days: int = 90
    seed: int = 0
    default_effect: float = field(default=0.0)

    def effect_of(self, action: str) -> float:
        """The share of the hazard of loss an action takes away."""
        return float(self.effects.get(action, self.default_effect))

    def hook(self, block_index: int, customer_ids: pd.Series, month_first: np.ndarray) -> LifecycleHook:
        """The program's part in one block's lifecycle simulation.

        Args:
            block_index: the block (selects the program's random stream).
            customer_ids: the block's customer ids, by row.
            month_first: the first day number of each simulated month.

        Returns:
            The hook the lifecycle calls every month.
        """
        n = len(customer_ids)
        effect = np.zeros(n)
        month = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        for row, cid in enumerate(customer_ids.astype(str)):
            if cid in self.treated:
                action, day = self.treated[cid]
                done = (max(day, self.start) - _EPOCH).days
                effect[row] = self.effect_of(action)
                month[row] = int(np.searchsorted(month_first, done, side="right")) - 1
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(5, block_index)))
        return LifecycleHook(effect=effect, month=month, rng=rng)

    def splice(self, without: dict[str, pd.DataFrame], with_: dict[str, pd.DataFrame], renumber: Renumber) -> dict[str, pd.DataFrame]:
        """The block's tables: world A's rows before ``start``, world B's from ``start`` on, and the truth.

        Args:
            without: the block simulated without the program (A).
            with_: the same block simulated with it (B).
            renumber: gives fresh ids (prefix, counter, count, width) for B's rows.

        Returns:
            The spliced tables and :data:`TRUTH`.
        """
        start = pd.Timestamp(self.start)
        out = {name: frame for name, frame in without.items() if name not in _DATE_COLUMN and name != "order_lines"}
        new_order_ids: dict[str, str] = {}
        for name, column in _DATE_COLUMN.items():
            before = without[name][without[name][column] < start]
            after = with_[name][with_[name][column] >= start].copy()
            if name in _ID:
                id_column, prefix, counter, width = _ID[name]
                fresh = renumber(prefix, counter, len(after), width)
                if name == "orders":
                    new_order_ids = dict(zip(after[id_column].astype(str), fresh.astype(str), strict=True))
                after[id_column] = fresh.to_numpy()
            out[name] = pd.concat([before, after], ignore_index=True).sort_values(["customer_id", column], kind="stable", ignore_index=True)
        if "order_lines" in without:
            kept = set(out["orders"]["order_id"].astype(str))
            before = without["order_lines"][without["order_lines"]["order_id"].astype(str).isin(kept)]
            after = with_["order_lines"][with_["order_lines"]["order_id"].astype(str).isin(new_order_ids)].copy()
            after["order_id"] = after["order_id"].astype(str).map(new_order_ids).astype(before["order_id"].dtype)
            out["order_lines"] = pd.concat([before, after], ignore_index=True)
        out[TRUTH] = self._truth(without, with_)
        return out

    def _truth(self, without: dict[str, pd.DataFrame], with_: dict[str, pd.DataFrame]) -> pd.DataFrame:
        start = pd.Timestamp(self.start)
        end = start + pd.Timedelta(days=self.horizon_days)

        def ordered(orders: pd.DataFrame) -> set[str]:
            window = orders[(orders["order_date"] >= start) & (orders["order_date"] < end) & (orders["amount"] > 0)]
            return set(window["customer_id"].astype(str))

        ids = without["customers"]["customer_id"].astype(str)
        with_program, without_program = ordered(with_["orders"]), ordered(without["orders"])
        actions = [self.treated.get(c, (None, None))[0] for c in ids]
        return pd.DataFrame(
            {
                "customer_id": ids.to_numpy(),
                "treated": [c in self.treated for c in ids],
                "action": actions,
                "effect": [self.effect_of(a) if a is not None else 0.0 for a in actions],
                "ordered_with_program": [c in with_program for c in ids],
                "ordered_without_program": [c in without_program for c in ids],
            }
        )


@dataclass
class LifecycleHook:
    """The program inside one block's month-by-month lifecycle (rows = the block's customers).

    Attributes:
        effect: per row, the share of its hazard of loss taken away (0 when not treated).
        month: per row, the month its action was done (a large number when not treated).
        rng: the program's own random stream (the simulation's own draws are not disturbed).
    """

    effect: np.ndarray
    month: np.ndarray
    rng: np.random.Generator

    def reverse(self, m: int, status: np.ndarray, decline_mult: np.ndarray, ends_in_loss: np.ndarray) -> None:
        """In the month of its action, a declining customer recovers and a lost one comes back, each with the effect's probability (in place)."""
        acting = (self.month == m) & (self.rng.random(status.size) < self.effect)
        lost = acting & (status == 2)
        declining = acting & (status == 1)
        status[lost | declining] = 0
        ends_in_loss[lost | declining] = False
        decline_mult[lost] = np.maximum(decline_mult[lost], 0.5)

    def prevent(self, m: int, trigger: np.ndarray) -> np.ndarray:
        """From the month of its action on, a churn trigger is prevented with the effect's probability."""
        return trigger & ~((self.month <= m) & (self.rng.random(trigger.size) < self.effect))


def generate_with_program(
    customers: int, program: RetentionProgram, years: float = 3.0, seed: int = 42, end: datetime.date = datetime.date(2025, 12, 31), lines: bool = True
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The sample company with a retention program, and the program's truth.

    Args:
        customers: number of customers (as :func:`features.sample_data.generate_sample`).
        program: who was treated, when, and the effects.
        years: length of the window ending at ``end``.
        seed: the data's random seed (the same as the scoring run's data).
        end: last day of the data (after ``program.start + horizon_days`` for the truth to be complete).
        lines: also write the order lines.

    Returns:
        The tables (rows before ``program.start`` as without the program) and the truth, one row per customer.
    """
    chunks = list(iter_sample_chunks(customers, years, seed, end, lines=lines, program=program))
    truth = pd.concat([c.pop(TRUTH) for c in chunks], ignore_index=True)
    tables = {name: pd.concat([c[name] for c in chunks], ignore_index=True) for name in chunks[0]}
    return tables, truth
