"""The stage at T from the customer's own rhythm: a weekly buyer is gone quiet much sooner than a twice-yearly one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.stage import RETAIN, WIN_BACK, StageRule, customer_stage


def _rows(silence: list[float], gap: list[float | None]) -> pd.DataFrame:
    return pd.DataFrame({"days_since_last_order": silence, "median_gap_days": gap})


def test_the_threshold_follows_the_customers_rhythm() -> None:
    rows = _rows([25, 35, 35, 500, 600, 89, 91], [7, 7, 20, 180, 180, None, None])
    assert customer_stage(rows).tolist() == [RETAIN, WIN_BACK, RETAIN, RETAIN, WIN_BACK, RETAIN, WIN_BACK]


def test_the_rule_is_a_setting() -> None:
    rows = _rows([25, 100], [7, None])
    assert customer_stage(rows, StageRule(gap_multiple=3, min_days=20, single_order_days=120)).tolist() == [WIN_BACK, RETAIN]


def test_without_a_gap_column_every_customer_is_judged_by_the_single_order_rule() -> None:
    rows = pd.DataFrame({"days_since_last_order": [10.0, 200.0]})
    assert customer_stage(rows).tolist() == [RETAIN, WIN_BACK]


def test_quiet_after_is_exactly_at_the_edge_still_retain() -> None:
    rule = StageRule()
    edge = rule.quiet_after(np.array([14.0]))[0]
    assert edge == 42.0
    assert customer_stage(_rows([edge, edge + 1], [14, 14]), rule).tolist() == [RETAIN, WIN_BACK]
