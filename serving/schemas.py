"""The request and answer models of the service (also used by the batch risk list and the page).

Every field carries a description: they are the API's documentation (``/docs.json``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from serving.groups import GROUP_VALUE_DEFINITION, GroupRisk
from serving.playbook import PlannedAction

RiskBand = Literal["high", "medium", "low"]
Stage = Literal["retain", "win_back"]
AbcClass = Literal["A", "B", "C"]
PyramidTier = Literal["platinum", "gold", "iron", "lead"]
FeatureValue = float | int | str | bool | None

VALUE_DEFINITION = (
    "value_12m: what keeping the customer is worth over the next 12 months - for a customer still buying, its last "
    "6 months' net revenue twice over (its own trend, so a shrinking customer counts as the smaller one it has become); "
    "for one gone quiet, its last 12 months' net revenue (what winning it back recovers); times its gross margin rate "
    "when the orders carry a margin. value_at_risk = churn probability x value_12m."
)


def _id_text(value: Any) -> Any:
    """Accept numeric customer ids (CRMs often send them as numbers) as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        value = value.strip()
        if not value.isprintable():
            raise ValueError("a customer id holds no control characters (NUL, tab, newline ...): send the id as the CRM shows it")
    return value


def _as_list(value: Any) -> Any:
    """A single filter value means a list of one."""
    if value is None or isinstance(value, list):
        return value
    return [value]


CustomerId = Annotated[
    str,
    BeforeValidator(_id_text),
    Field(min_length=1, max_length=200, description="The customer's id in the CRM (text; a number is accepted)."),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerIn(_Request):
    """One customer to score: by id, or with its own features."""

    customer_id: CustomerId
    features: dict[str, FeatureValue] | None = Field(
        default=None,
        description=(
            "The customer's features, for a CRM that computes them (names as in features.registry, e.g. "
            "days_since_last_order, orders_90d). When given, the store is not consulted; features left out count "
            "as missing. abc_class, pyramid_tier and revenue_365d, when given, set tier, pyramid and revenue_12m."
        ),
    )


class PredictRequest(_Request):
    """POST /predict."""

    customers: list[CustomerIn] = Field(
        min_length=1,
        description="The customers to score (1 to the configured maximum, 1,000 by default).",
        examples=[[{"customer_id": "C000123"}]],
    )
    as_of: date | None = Field(
        default=None,
        description="Score as of this date (features from data strictly before it). Default: the service's snapshot (the latest data).",
    )
    explain: Literal["auto", "all", "none"] = Field(
        default="auto",
        description=(
            "Which customers get reasons (exact per-feature contributions, the costly part): 'auto' = the at-risk "
            "customers (high/medium band: the ones with win-back actions), at most 50 per request, largest value at "
            "risk first; 'all' = every customer; 'none'. Customers without reasons still get their class's actions."
        ),
    )


class RiskListRequest(_Request):
    """POST /risk_list."""

    tier: Annotated[list[AbcClass] | None, BeforeValidator(_as_list)] = Field(default=None, description="ABC classes to keep (A, B, C).")
    pyramid: Annotated[list[PyramidTier] | None, BeforeValidator(_as_list)] = Field(
        default=None, description="Pyramid tiers to keep (platinum, gold, iron, lead)."
    )
    region: Annotated[list[str] | None, BeforeValidator(_as_list)] = Field(default=None, description="Regions to keep.")
    account_manager: Annotated[list[str] | None, BeforeValidator(_as_list)] = Field(default=None, description="Account managers to keep.")
    risk_band: Annotated[list[RiskBand] | None, BeforeValidator(_as_list)] = Field(
        default=None, description="Risk bands to keep (high, medium, low)."
    )
    stage: Annotated[list[Stage] | None, BeforeValidator(_as_list)] = Field(
        default=None,
        description="Stages to keep: retain (still within its own ordering rhythm: the list to prevent loss) or win_back (silent far beyond it: already lost in practice).",
    )
    min_probability: float | None = Field(default=None, ge=0.0, le=1.0, description="Keep customers with at least this churn probability.")
    sort: Literal["value_at_risk", "probability"] = Field(default="value_at_risk", description="Rank by value at risk (default) or by probability, largest first.")
    limit: int = Field(default=50, ge=0, le=1000, description="Rows to return (0 = only the total count).")
    offset: int = Field(default=0, ge=0, description="Rows to skip (for paging).")
    explain: bool = Field(default=True, description="Give each returned row its reasons and actions.")


class Reason(BaseModel):
    """One driver of a customer's risk, from the model's own per-feature contributions."""

    feature: str = Field(description="The feature (see features.registry).")
    group: str | None = Field(default=None, description="Its group: orders, complaints, receivables, contacts or tiers.")
    driver: str = Field(description="The playbook driver it points to (complaints, receivables, declining_orders, value_decline, no_contact, general).")
    value: float | str | None = Field(description="The feature's value for this customer (null when missing).")
    impact: float = Field(description="Its contribution to the model's log-odds; positive = raises the risk.")
    sentence: str = Field(description="The reason in a plain sentence.")


class CustomerRisk(BaseModel):
    """The risk of one customer, its reasons and the win-back actions."""

    status: Literal["ok"] = Field(default="ok", description="'ok' for an answered customer.")
    customer_id: str = Field(description="The customer's id.")
    churn_probability: float = Field(description="Calibrated probability of no order within the model's horizon.")
    risk_band: RiskBand = Field(description="high, medium or low (thresholds configurable).")
    tier: str | None = Field(default=None, description="ABC class by 12-month revenue (A = key account).")
    pyramid: str | None = Field(default=None, description="Customer pyramid tier (platinum, gold, iron, lead).")
    customer_class: str | None = Field(default=None, description="The playbook class (key_account, standard, low_value).")
    revenue_12m: float | None = Field(default=None, description="Net revenue of the last 12 months.")
    value_at_risk: float | None = Field(default=None, description="Expected loss: churn probability x value_12m.")
    value_12m: float | None = Field(default=None, description=VALUE_DEFINITION)
    stage: Stage | None = Field(
        default=None,
        description="retain: still within (or just past) its own ordering rhythm - keep it; win_back: silent far beyond it - win it back (null when its recency is unknown).",
    )
    let_go: bool = Field(default=False, description="A customer gone quiet whose class is a let-go candidate (the playbook's let_go classes).")
    control: bool = Field(
        default=False,
        description="In the control group of the current scoring run (churn score --holdout): no action this cycle, so that the effect of the actions can be measured; its actions are left out.",
    )
    region: str | None = Field(default=None, description="The customer's region, when known.")
    segment: str | None = Field(default=None, description="The customer's segment, when known.")
    account_manager: str | None = Field(default=None, description="The customer's account manager, when known.")
    explained: bool = Field(default=False, description="Whether reasons were computed for this customer.")
    reasons: list[Reason] = Field(default_factory=list, description="Top drivers of the risk, strongest first.")
    actions: list[PlannedAction] = Field(default_factory=list, description="Win-back actions, strongest driver first.")
    groups_at_risk: list[GroupRisk] = Field(
        default_factory=list,
        description=f"The product groups the customer buys regularly, largest value at risk first (value at risk = {GROUP_VALUE_DEFINITION}); empty without order lines.",
    )


class CustomerError(BaseModel):
    """A customer of the batch that could not be answered; the others still are."""

    status: Literal["error"] = Field(default="error", description="'error' for a customer that could not be scored.")
    customer_id: str = Field(description="The id as sent.")
    error: str = Field(description="What went wrong and what to do.")


class ModelInfo(BaseModel):
    """Which model answered."""

    name: str = Field(description="Registered model name in MLflow.")
    version: str = Field(description="Registered model version.")
    alias: str | None = Field(default=None, description="The alias it was loaded by (champion), if it still holds it.")
    run_id: str | None = Field(default=None, description="The MLflow run that trained it.")
    trained_at: str | None = Field(default=None, description="When it was trained.")
    horizon_days: int | None = Field(default=None, description="Churn horizon: lost = no order within this many days.")
    test_pr_auc: float | None = Field(default=None, description="PR-AUC on the test period.")
    kind: str | None = Field(
        default=None,
        description="The candidate that won the validation period and is served: lightgbm, lightgbm_bgnbd, blend, or a baseline (recency, bgnbd, logistic_rfm).",
    )
    recipe: str | None = Field(default=None, description="The served candidate in words.")
    train_last: str | None = Field(default=None, description="The latest snapshot date the served model learned from.")


class PredictResponse(BaseModel):
    """The answer of POST /predict."""

    model: ModelInfo = Field(description="The model that scored.")
    as_of: date = Field(description="The as-of date of the features.")
    results: list[CustomerRisk | CustomerError] = Field(description="One item per requested customer, in request order.")


class RiskListResponse(BaseModel):
    """The answer of POST /risk_list."""

    model: ModelInfo = Field(description="The model that scored the list.")
    as_of: date = Field(description="The as-of date of the scores.")
    source: Literal["risk_scores", "snapshot"] = Field(
        description="'risk_scores' = the newest batch run in the store (churn score); 'snapshot' = the service scored its in-memory snapshot."
    )
    scored_at: datetime | None = Field(default=None, description="When the batch run scored the list (risk_scores only).")
    total: int = Field(description="Customers matching the filters.")
    offset: int = Field(description="Rows skipped.")
    limit: int = Field(description="Rows asked for.")
    items: list[CustomerRisk] = Field(description="The page of the ranked list.")
