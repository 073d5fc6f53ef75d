"""The customer's stage at T, from its own rhythm: still buying (``retain``) or gone quiet (``win_back``).

DOMAIN.md's stages make the distinction the retention team works by: a declining customer is kept
with care (维护), a lost one is won back (挽回) by other steps, and not every lost one is worth it.
A customer is ``win_back`` when its silence (days since the last order) is longer than
``gap_multiple`` times its usual gap between order days (the median gap), and at least ``min_days``;
a customer with a single order day has no rhythm to judge by and is ``win_back`` after
``single_order_days``. So a customer who orders weekly is gone quiet after a month, one who orders
twice a year only after a year and a half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

RETAIN = "retain"
WIN_BACK = "win_back"
STAGES = (RETAIN, WIN_BACK)


@dataclass(frozen=True)
class StageRule:
    """When a customer counts as gone quiet.

    Attributes:
        gap_multiple: usual gaps of silence after which a customer is ``win_back`` (3: three orders missed).
        min_days: fewest days of silence for ``win_back``, whatever the rhythm (a daily buyer on holiday is not lost).
        single_order_days: days of silence after which a customer with a single order day is ``win_back``.
    """

    gap_multiple: float = 3.0
    min_days: float = 30.0
    single_order_days: float = 90.0

    def quiet_after(self, median_gap_days: np.ndarray | pd.Series) -> np.ndarray:
        """The days of silence after which each customer is ``win_back``.

        Args:
            median_gap_days: the customer's usual gap (missing for a single order day).

        Returns:
            Days, shape [n].
        """
        gap = np.asarray(pd.to_numeric(pd.Series(np.asarray(median_gap_days, dtype=object)), errors="coerce"), dtype=float)
        return np.where(np.isnan(gap), self.single_order_days, np.maximum(self.min_days, self.gap_multiple * gap))


def customer_stage(frame: pd.DataFrame, rule: StageRule | None = None) -> np.ndarray:
    """Each row's stage, ``retain`` or ``win_back``.

    Args:
        frame: snapshot rows with ``days_since_last_order`` and (optionally) ``median_gap_days``.
        rule: the thresholds; the defaults when None.

    Returns:
        An object array of :data:`STAGES`, shape [n].
    """
    rule = rule or StageRule()
    silence = pd.to_numeric(frame["days_since_last_order"], errors="coerce").to_numpy(dtype=float)
    gap = frame["median_gap_days"] if "median_gap_days" in frame.columns else np.full(len(frame), np.nan)
    return np.where(silence > rule.quiet_after(gap), WIN_BACK, RETAIN).astype(object)
