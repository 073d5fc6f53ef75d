"""What the retention team did: actions recorded as done, kept append-only in the store.

The page's "done" form and CRM systems post the same record (``POST /actions``): the client's own
``id`` (so a retried post is stored once), the customer, the playbook action's ``key``, who did it,
when, the outcome of the talk and a note. The rows go to the store's ``retention_actions`` table
(DuckDB, PostgreSQL, or ``retention_actions.parquet`` in a folder dataset); nothing is updated or
deleted. ``churn outcomes`` reads them, with the CRM's own ``contacts``, as the touches of a cycle.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import ibis
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.dataset import location_kind, open_dataset
from serving.schemas import CustomerId
from serving.tables import append_rows, connect_store, disconnect

RETENTION_ACTIONS = "retention_actions"
Outcome = Literal["reached", "not_reached", "promised_order", "declined"]
OUTCOMES: tuple[str, ...] = ("reached", "not_reached", "promised_order", "declined")
CLOCK_SKEW = timedelta(days=1)
"""How far in the future a ``done_at`` may lie (clocks of CRM systems differ)."""

ACTION_TYPES: dict[str, str] = {
    "id": "string",
    "customer_id": "string",
    "action": "string",
    "owner": "string",
    "done_at": "timestamp",
    "outcome": "string",
    "note": "string",
    "recorded_at": "timestamp",
}
"""The columns of the ``retention_actions`` table and their types."""

RECORD_FIELDS = ("customer_id", "action", "owner", "done_at", "outcome", "note")
"""The fields that must match when a client posts the same id again."""

_WRITE_LOCK = threading.Lock()


class ActionDone(BaseModel):
    """POST /actions: one playbook action the team has done."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200, description="The client's own id of this record: posting the same id again stores nothing new.")
    customer_id: CustomerId
    action: str = Field(min_length=1, max_length=64, description="The playbook action's `key` (as in /predict and /risk_list answers).")
    owner: str = Field(min_length=1, max_length=200, description="Who did it (a person or a role).")
    done_at: datetime = Field(description="When it was done (ISO 8601; a time zone is converted to UTC; a date means midnight).")
    outcome: Outcome = Field(description="How the talk went: reached, not_reached, promised_order or declined.")
    note: str = Field(default="", max_length=2000, description="A short note.")

    @field_validator("done_at")
    @classmethod
    def _utc_naive(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        if value > datetime.now(UTC).replace(tzinfo=None) + CLOCK_SKEW:
            raise ValueError("done_at is in the future: record an action once it is done")
        return value.replace(microsecond=0)

    @field_validator("id", "owner", "action")
    @classmethod
    def _stripped(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class ActionRecorded(BaseModel):
    """The answer of POST /actions."""

    id: str = Field(description="The client's id.")
    stored: bool = Field(description="True when this post stored the record; false when the same record was stored before.")
    recorded_at: datetime = Field(description="When the record was first stored (UTC).")


class ActionConflict(ValueError):
    """The id was stored before with another body."""


def _normal(name: str, value: Any) -> Any:
    if name == "done_at":
        return pd.Timestamp(value).to_pydatetime().replace(tzinfo=None, microsecond=0)
    return value or ""


def _differing(stored: dict[str, Any], new: ActionDone) -> list[str]:
    """The fields in which a new post differs from the stored record of the same id."""
    return [n for n in RECORD_FIELDS if _normal(n, stored[n]) != _normal(n, getattr(new, n))]


def read_actions(location: str | Path, ids: list[str] | None = None) -> pd.DataFrame:
    """The recorded actions (all, or those with the given client ids).

    Args:
        location: the dataset location (folder, .duckdb file or postgresql:// URL).
        ids: client ids to read; None for every record.

    Returns:
        The rows with the :data:`ACTION_TYPES` columns (empty when nothing was recorded).
    """
    empty = pd.DataFrame({c: pd.Series(dtype="object") for c in ACTION_TYPES})
    if location_kind(location) == "folder":
        path = Path(location) / f"{RETENTION_ACTIONS}.parquet"
        if not path.exists():
            return empty
        frame = pd.read_parquet(path)
        return frame[frame["id"].isin(ids)] if ids is not None else frame
    con = connect_store(str(location), read_only=True)
    try:
        if RETENTION_ACTIONS not in con.list_tables():
            return empty
        table = con.table(RETENTION_ACTIONS)
        if ids is not None:
            table = table.filter(table.id.isin(ibis.literal(ids)) if len(ids) > 1 else table.id == ids[0])
        return table.to_pandas()
    finally:
        disconnect(con)


def record_action(location: str | Path, action: ActionDone) -> ActionRecorded:
    """Store a done action once per client id (append-only).

    Args:
        location: the dataset location.
        action: the validated record (customer and action key already checked).

    Returns:
        Whether this call stored it, and when it was first stored.

    Raises:
        ActionConflict: the id was stored before with other fields.
    """
    with _WRITE_LOCK:
        found = read_actions(location, [action.id])
        if len(found):
            first = {str(k): v for k, v in found.sort_values("recorded_at").iloc[0].items()}
            differ = _differing(first, action)
            if differ:
                raise ActionConflict(
                    f"id {action.id!r} was recorded before with another {', '.join(differ)}; "
                    "a record is never changed: post a new id for a new action"
                )
            return ActionRecorded(id=action.id, stored=False, recorded_at=pd.Timestamp(first["recorded_at"]).to_pydatetime())
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        row = pd.DataFrame([{**action.model_dump(), "recorded_at": now}])
        row["done_at"] = pd.to_datetime(row["done_at"]).astype("datetime64[us]")
        row["recorded_at"] = pd.to_datetime(row["recorded_at"]).astype("datetime64[us]")
        append_rows(location, RETENTION_ACTIONS, row[list(ACTION_TYPES)], ACTION_TYPES)
        return ActionRecorded(id=action.id, stored=True, recorded_at=now)


def customer_known(location: str | Path, customer_id: str) -> bool:
    """Whether the store knows the customer (in its customers table, or its orders without one).

    Args:
        location: the dataset location.
        customer_id: the id.

    Returns:
        True when at least one row names it.
    """
    data = open_dataset(location, validate=False)
    try:
        table = data.table("customers") if data.has("customers") else data.table("orders")
        return int(table.filter(table.customer_id.cast("string") == customer_id).count().to_pyarrow().as_py()) > 0
    finally:
        disconnect(data.con)
