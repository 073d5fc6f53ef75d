"""The CRM data contract: the tables, their columns and the rules a row must keep.

Only ``orders`` is required; a company without complaints, invoices, contacts or even a customer
master still gets a model (features from an absent table are left out). Order lines
(``order_lines``, optional) say what each order held: products, quantities and amounts, with a
product group where the company keeps one. The customer master holds
today's values; ``customer_history`` (optional) says since when each changing attribute
(:data:`MUTABLE_ATTRIBUTES`) had which value, so that a snapshot at a past date sees that day's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandera.pandas as pa


@dataclass(frozen=True)
class TableSpec:
    """One table of the contract.

    Attributes:
        name: table name (also the file name in a folder dataset).
        required: columns that must be present.
        optional: columns that may be present.
        dates: date columns (parsed; a value that cannot be parsed is an error).
        numbers: numeric columns.
        key: column whose values must be unique, if any.
        unique: columns whose combination must be unique (a table without a single key).
        choices: allowed values of a column.
        dated_by: the date that places a row in time (a row dated on or after T is unknown at T).
    """

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    key: str | None = None
    unique: tuple[str, ...] = ()
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dated_by: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


CHANNELS = ("direct", "distributor", "agent", "retail")
SETTLEMENT_TERMS = ("cash", "prepaid", "credit")
SEVERITIES = ("low", "medium", "high")
COMPLAINT_CATEGORIES = ("quality", "delivery", "billing", "service", "other")
CONTACT_KINDS = ("call", "visit", "email", "meeting")
# the customer attributes that change over time: read from customer_history as of T when it is given
MUTABLE_ATTRIBUTES = ("credit_limit", "settlement_terms", "segment", "channel", "region")

TABLES: dict[str, TableSpec] = {
    "customers": TableSpec(
        name="customers",
        required=("customer_id",),
        optional=("name", "region", "segment", "channel", "account_manager", "settlement_terms", "credit_limit", "created_at"),
        dates=("created_at",),
        numbers=("credit_limit",),
        key="customer_id",
        choices={"channel": CHANNELS, "settlement_terms": SETTLEMENT_TERMS},
        dated_by="created_at",
    ),
    "orders": TableSpec(
        name="orders",
        required=("order_id", "customer_id", "order_date", "amount"),
        optional=("margin",),
        dates=("order_date",),
        numbers=("amount", "margin"),
        key="order_id",
        dated_by="order_date",
    ),
    "complaints": TableSpec(
        name="complaints",
        required=("complaint_id", "customer_id", "opened_at"),
        optional=("resolved_at", "severity", "category"),
        dates=("opened_at", "resolved_at"),
        key="complaint_id",
        choices={"severity": SEVERITIES, "category": COMPLAINT_CATEGORIES},
        dated_by="opened_at",
    ),
    "invoices": TableSpec(
        name="invoices",
        required=("invoice_id", "customer_id", "issued_at", "due_at", "amount"),
        optional=("paid_at",),
        dates=("issued_at", "due_at", "paid_at"),
        numbers=("amount",),
        key="invoice_id",
        dated_by="issued_at",
    ),
    "contacts": TableSpec(
        name="contacts",
        required=("customer_id", "contacted_at"),
        optional=("kind",),
        dates=("contacted_at",),
        choices={"kind": CONTACT_KINDS},
        dated_by="contacted_at",
    ),
    "order_lines": TableSpec(
        name="order_lines",
        required=("order_id", "product_id", "quantity", "amount"),
        optional=("category",),
        numbers=("quantity", "amount"),
        # a line has no date of its own: it is known when its order is (see CRMDataset.cut)
    ),
    "customer_history": TableSpec(
        name="customer_history",
        required=("customer_id", "column", "value", "valid_from"),
        dates=("valid_from",),
        unique=("customer_id", "column", "valid_from"),
        choices={"column": MUTABLE_ATTRIBUTES},
        dated_by="valid_from",
    ),
}

REQUIRED_TABLES = ("orders",)
ID_COLUMNS = ("customer_id", "order_id", "complaint_id", "invoice_id", "product_id")


def row_schema(spec: TableSpec, present: set[str]) -> pa.DataFrameSchema:
    """The pandera schema for the rows of one table, after types were coerced.

    Args:
        spec: the table's contract.
        present: the columns the input actually has (absent optional columns are not checked).

    Returns:
        A schema whose checks each name the rule a failing row breaks.
    """
    columns: dict[str, pa.Column] = {}
    for col in spec.columns:
        if col not in present:
            continue
        checks: list[pa.Check] = []
        nullable = col not in spec.required
        if col in spec.choices:
            checks.append(pa.Check.isin(spec.choices[col], name=f"one of {', '.join(spec.choices[col])}"))
        if spec.name == "invoices" and col == "amount":
            checks.append(pa.Check.ge(0, name="not negative (a credit note is a negative order, not an invoice)"))
        if spec.name == "customers" and col == "credit_limit":
            checks.append(pa.Check.ge(0, name="not negative"))
        columns[col] = pa.Column(
            nullable=nullable,
            unique=(col == spec.key),
            checks=checks,
            required=True,
        )
    frame_checks: list[pa.Check] = []
    if spec.name == "invoices" and {"issued_at", "due_at"} <= present:
        frame_checks.append(
            pa.Check(
                lambda df: df["due_at"].isna() | df["issued_at"].isna() | (df["due_at"] >= df["issued_at"]),
                name="due_at before issued_at",
                element_wise=False,
            )
        )
    if spec.name == "complaints" and {"opened_at", "resolved_at"} <= present:
        frame_checks.append(
            pa.Check(
                lambda df: df["resolved_at"].isna() | (df["resolved_at"] >= df["opened_at"]),
                name="resolved_at before opened_at",
                element_wise=False,
            )
        )
    return pa.DataFrameSchema(columns, checks=frame_checks, strict=False, coerce=False)
