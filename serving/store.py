"""The CRM store opened by the service for one read, waiting briefly while another process writes it.

DuckDB lets one process write a file and refuses everyone else meanwhile ("Could not set lock").
``churn score`` (its write phase), ``churn generate`` and ``churn validate --copy-to`` hold that
lock for a moment; a request arriving then waits up to :data:`BUSY_BUDGET_SECONDS`, retrying, and
only then gets :class:`StoreBusy` (the service answers 503 with ``Retry-After``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import duckdb

from features.dataset import CRMDataset, open_dataset

logger = logging.getLogger("churn.serving")

BUSY_BUDGET_SECONDS = 3.0
RETRY_AFTER_SECONDS = 5
_FIRST_PAUSE = 0.05


class TryLater(RuntimeError):
    """The service cannot answer now but will shortly (answered 503 with ``Retry-After``).

    Attributes:
        retry_after: seconds after which trying again is worthwhile.
    """

    def __init__(self, message: str, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreBusy(TryLater):
    """Another process holds the store's write lock for longer than a request may wait."""

    def __init__(self, location: str, waited: float) -> None:
        super().__init__(
            f"the CRM store is being written by another process (churn score, generate or validate --copy-to); "
            f"waited {waited:.1f} s: try again in a few seconds"
        )
        self.location = location


def is_lock_error(err: BaseException) -> bool:
    """Whether ``err`` is DuckDB refusing a file that is open elsewhere for a while.

    Another process writing holds the file's lock; in this process, a connection opened read-only
    (a reader's) and one opened for writing (``POST /actions``) cannot be open at once.
    """
    if isinstance(err, duckdb.IOException):
        return "lock" in str(err).lower()
    return isinstance(err, duckdb.ConnectionException) and "different configuration" in str(err)


def retry_while_locked(location: str, attempt: Callable[[], Any], budget: float = BUSY_BUDGET_SECONDS) -> Any:
    """Run ``attempt`` until it stops failing on the store's write lock, for at most ``budget`` seconds.

    Args:
        location: the store (named in the error).
        attempt: opens the store (and may read it).
        budget: the longest wait.

    Returns:
        What ``attempt`` returned.

    Raises:
        StoreBusy: still locked after ``budget`` seconds.
    """
    started = time.monotonic()
    pause = _FIRST_PAUSE
    while True:
        try:
            return attempt()
        except (duckdb.IOException, duckdb.ConnectionException) as err:
            waited = time.monotonic() - started
            if not is_lock_error(err):
                raise
            if waited + pause > budget:
                raise StoreBusy(location, waited) from None
            logger.info("the CRM store is locked by a writer; retrying in %.2f s", pause)
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def _open(location: str, cut_at: date | None) -> CRMDataset:
    data = open_dataset(location, validate=False, cut_at=cut_at)
    if data.con.name == "duckdb":
        data.con.raw_sql("SET enable_progress_bar = false")  # it would fill the server log
    return data


@contextmanager
def opened_store(location: str, *, cut_at: date | None = None, budget: float = BUSY_BUDGET_SECONDS) -> Iterator[CRMDataset]:
    """The CRM store, opened without validation for one read and closed afterwards.

    The store is never held between requests, so that ``churn score`` can write it.

    Args:
        location: a folder, a .duckdb file or a postgresql:// URL.
        cut_at: open only the data known before this date.
        budget: how long to wait for a writer to finish.

    Yields:
        The dataset.

    Raises:
        StoreBusy: another process kept the file locked for longer than ``budget``.
    """
    data: CRMDataset = retry_while_locked(location, lambda: _open(location, cut_at), budget)
    try:
        yield data
    finally:
        close(data.con)


def close(con: Any) -> None:
    """Close a connection; closing is best effort."""
    try:
        con.disconnect()
    except Exception:  # noqa: BLE001 - closing is best effort
        pass
