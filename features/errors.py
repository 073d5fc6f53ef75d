"""The error a user can fix, shared by every layer that reads or writes CRM data."""

from __future__ import annotations

from features.redaction import redact


class DataError(ValueError):
    """Bad input a user can fix; the message says which table, column and what to do.

    Any password in the message (a database URL) is replaced by ``***``.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(redact(str(message)))
