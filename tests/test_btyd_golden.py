"""BG/NBD against its published fit: the CDNOW sample of Fader, Hardie and Lee (2005).

"Counting Your Customers the Easy Way: An Alternative to the Pareto/NBD Model", Marketing Science
24(2): the 2,357 customers of the CDNOW cohort over 39 weeks (``tests/data/cdnow_summary.csv``,
frequency, recency and T in weeks). The paper reports r = 0.243, alpha = 4.414, a = 0.793,
b = 2.426 with a log-likelihood of -9,582.4, and 1.226 expected repeat purchases in the next 39
weeks for the customer with 2 repeat purchases, the last at week 30.43, observed for 38.86 weeks.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.btyd import BetaGeoModel, BTYDParams

CDNOW = Path(__file__).resolve().parent / "data" / "cdnow_summary.csv"
PUBLISHED = BTYDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(CDNOW)


def test_the_fit_on_cdnow_is_the_published_one(cdnow: pd.DataFrame) -> None:
    assert len(cdnow) == 2357 and int(cdnow["frequency"].sum()) == 2457
    model = BetaGeoModel(variant="bgnbd", penalizer=0.0).fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert model.converged_ and model.boundary_ == []
    for name in ("r", "alpha", "a", "b"):
        assert getattr(model.params_, name) == pytest.approx(getattr(PUBLISHED, name), abs=5e-4), name
    assert model.log_likelihood(cdnow["frequency"], cdnow["recency"], cdnow["T"]).sum() == pytest.approx(-9582.4, abs=0.05)


def test_the_published_conditional_expectation(cdnow: pd.DataFrame) -> None:
    model = BetaGeoModel(variant="bgnbd", penalizer=0.0)
    model.params_ = PUBLISHED
    customer = cdnow.iloc[[0]]
    assert customer[["frequency", "recency", "T"]].to_numpy().tolist() == [[2, 30.43, 38.86]]
    assert model.expected_orders(39.0, customer["frequency"], customer["recency"], customer["T"])[0] == pytest.approx(1.226, abs=5e-4)
