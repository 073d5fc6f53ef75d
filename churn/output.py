"""The command line's consoles: whatever they show passes through :func:`features.redaction.redact`."""

from __future__ import annotations

import sys
import traceback
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.text import Text

from features.redaction import redact, redact_logs


class RedactingConsole(Console):
    """A rich console that never shows a password: every string it renders (messages, table titles, cells) is redacted first."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(redact(text), **kwargs)


def _redacting_excepthook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    sys.stderr.write(redact("".join(traceback.format_exception(kind, error, tb))))


def redact_everything() -> None:
    """At a command's start: redact uncaught tracebacks and the log records of the churn loggers."""
    sys.excepthook = _redacting_excepthook
    redact_logs("churn", "churn.serving")
