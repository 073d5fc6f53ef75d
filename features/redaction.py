"""Passwords out of anything shown: messages, logs and the console."""

from __future__ import annotations

import logging
import re

# user:password@ in a URL (postgresql://churn:s3cret@db:5432/crm), password=... in a DSN or a query string
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:)(?P<secret>[^\s@/]*)(?=@)", re.IGNORECASE)
_KEY_PASSWORD = re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<secret>'[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)", re.IGNORECASE)
MASK = "***"


def redact(text: str) -> str:
    """``text`` with every password in a URL or ``password=`` setting replaced by ``***``.

    Args:
        text: a message, a log line or a location such as ``postgresql://user:secret@host/db``.

    Returns:
        The same text without the passwords (``postgresql://user:***@host/db``).
    """
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    return _KEY_PASSWORD.sub(lambda m: m["head"] + MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (its arguments merged in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def redact_logs(*names: str) -> None:
    """Redact the records of the named loggers and every record the root logger's handlers write.

    Call once where a program starts (a logger's own filter sees only the records logged on it, so
    the loggers whose messages may carry a location are named).

    Args:
        names: loggers to filter at the source, such as ``"churn.serving"``.
    """
    root = logging.getLogger()
    handlers = root.handlers or ([logging.lastResort] if logging.lastResort is not None else [])
    for target in [*handlers, *(logging.getLogger(n) for n in names)]:
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(RedactingFilter())
