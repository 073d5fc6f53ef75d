"""Product groups at risk: the partial-churn list beside the customer risk list.

For every active customer and product group it buys regularly, the served group model
(:mod:`training.partial`, logged with the champion's training run) gives the chance that the
customer buys nothing of the group in the next horizon. ``churn score`` appends the list to the
store's ``group_risk_scores`` table with the same run stamp as ``risk_scores``; ``/predict`` and the
page's customer view show a customer's groups at risk.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from features.dataset import CRMDataset
from features.group_risk import build_group_rows
from training.model import ChurnModel

GROUP_RISK_SCORES = "group_risk_scores"
GROUP_RISK_TYPES: dict[str, str] = {
    "scored_at": "timestamp",
    "as_of": "date",
    "model_name": "string",
    "model_version": "string",
    "rank": "int64",
    "customer_id": "string",
    "product_group": "string",
    "probability": "float64",
    "group_revenue_12m": "float64",
    "value_at_risk": "float64",
    "days_since_bought": "float64",
}
"""The columns of the ``group_risk_scores`` table and their types."""
GROUP_VALUE_DEFINITION = "the chance that the customer buys nothing of the group in the horizon x the group's net revenue from the customer over the last 12 months"
SHOWN_PER_CUSTOMER = 5


class GroupRisk(BaseModel):
    """One product group a customer buys regularly, and the chance it stops buying it."""

    product_group: str = Field(description="The product group (the lines' category, or the product when the lines carry none).")
    probability: float = Field(description="Calibrated chance that the customer buys nothing of this group within the horizon.")
    group_revenue_12m: float = Field(description="The customer's net purchases of this group over the last 12 months.")
    value_at_risk: float = Field(description=f"Expected loss on this group: {GROUP_VALUE_DEFINITION}.")
    days_since_bought: float = Field(description="Days since the customer last bought this group.")


def score_groups(model: ChurnModel, data: CRMDataset, as_of: date, active_days: int) -> pd.DataFrame:
    """Every active customer's regular product groups, scored, largest value at risk first.

    Args:
        model: the served group model.
        data: the CRM dataset with order lines.
        as_of: T.
        active_days: the activity window.

    Returns:
        ``rank, customer_id, product_group, probability, group_revenue_12m, value_at_risk, days_since_bought``.
    """
    rows = build_group_rows(data, as_of, active_days)
    probability = model.predict_proba(rows) if len(rows) else np.empty(0)
    out = pd.DataFrame(
        {
            "customer_id": rows["customer_id"],
            "product_group": rows["product_group"],
            "probability": probability,
            "group_revenue_12m": rows["group_revenue_365d"],
            "value_at_risk": probability * rows["group_revenue_365d"].clip(lower=0.0),
            "days_since_bought": rows["group_days_since_last"],
        }
    )
    out = out.sort_values(["value_at_risk", "customer_id", "product_group"], ascending=[False, True, True], kind="stable", ignore_index=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1, dtype=np.int64))
    return out


def stamped(frame: pd.DataFrame, *, scored_at: datetime, as_of: date, model_name: str, model_version: str) -> pd.DataFrame:
    """The rows of :func:`score_groups` with the run's stamp, in the table's column order."""
    out = frame.assign(scored_at=pd.Timestamp(scored_at).floor("us"), as_of=as_of, model_name=model_name, model_version=model_version)
    return out[list(GROUP_RISK_TYPES)]


class GroupList:
    """A scored group list, indexed by customer for the per-customer answers."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._rows = frame.groupby("customer_id", sort=False).indices if len(frame) else {}

    def of(self, customer_id: str, limit: int = SHOWN_PER_CUSTOMER) -> list[GroupRisk]:
        """A customer's groups at risk, largest value at risk first (empty when it buys no group regularly).

        Args:
            customer_id: the customer.
            limit: at most this many groups.

        Returns:
            The groups.
        """
        rows = self._rows.get(customer_id)
        if rows is None:
            return []
        mine = self.frame.iloc[np.sort(rows)[:limit]]
        return [GroupRisk(**{k: r[k] for k in GroupRisk.model_fields}) for r in mine.to_dict("records")]


def export_path(out: str | Path) -> Path:
    """Where ``churn score --out risk.csv`` writes the group list: ``risk_groups.csv`` beside it."""
    path = Path(out)
    return path.with_name(f"{path.stem}_groups{path.suffix}")
