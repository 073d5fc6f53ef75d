"""Database passwords never reach a message, a log record, a traceback or the console."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from rich.table import Table
from typer.testing import CliRunner

from churn.cli import app
from churn.output import RedactingConsole
from features.dataset import DataError, open_dataset
from features.redaction import redact, redact_logs

SECRET = "S3cret-Pw_42"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (f"postgresql://churn:{SECRET}@db:5432/crm?schema=x", "postgresql://churn:***@db:5432/crm?schema=x"),
        (f"at postgresql+psycopg://u:{SECRET}@h/db: failed", "at postgresql+psycopg://u:***@h/db: failed"),
        (f"host=db user=churn password={SECRET} dbname=crm", "host=db user=churn password=*** dbname=crm"),
        (f"postgresql://u@h/db?password={SECRET}&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
        ("http://127.0.0.1:3000/ui and postgresql://u@h:5432/db", "http://127.0.0.1:3000/ui and postgresql://u@h:5432/db"),
    ],
)
def test_redact_hides_passwords_and_nothing_else(text: str, want: str) -> None:
    assert redact(text) == want


def test_data_errors_carry_no_password() -> None:
    with pytest.raises(DataError) as err:
        open_dataset(f"postgresql://postgres:{SECRET}@127.0.0.1:5432/test?schema=pg_catalog")
    assert SECRET not in str(err.value)


def _run(*args: str) -> tuple[int, str]:
    run = CliRunner().invoke(app, list(args))
    assert isinstance(run.exception, SystemExit), run.exception
    return run.exit_code, run.output


def test_a_failing_connection_with_a_password_never_prints_it(tmp_path: Path, pg_url: str) -> None:
    base = pg_url.split("?schema=")[0]
    with_password = base.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "orders.csv").write_text("order_id,customer_id,order_date,amount\no1,c1,2024-04-03,10\n")
    runs = [
        _run("validate", "--data", with_password.replace("/test", "/no_such_db_data_hardening") + "?schema=crm"),
        _run("validate", "--data", str(folder), "--copy-to", with_password.replace(":5432/", ":1/") + "?schema=crm"),
        _run("features", "--data", with_password + "?schema=no_such_schema_data_hardening"),
    ]
    for (code, shown), said in zip(runs, ("does not exist", "Connection refused", "no schema 'no_such_schema_data_hardening'"), strict=True):
        assert code == 2, shown
        assert SECRET not in shown and "Traceback" not in shown
        assert "postgres:***@127.0.0.1" in " ".join(shown.split()) and said in " ".join(shown.split())


def test_an_uncaught_traceback_is_redacted() -> None:
    code = f"from churn.output import redact_everything; redact_everything(); raise RuntimeError('postgresql://u:{SECRET}@h/db')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "RuntimeError: postgresql://u:***@h/db" in run.stderr
    assert SECRET not in run.stderr


def test_log_records_and_console_output_are_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("churn.serving.test_redaction")
    logger.addHandler(handler)
    try:
        redact_logs("churn.serving.test_redaction")
        logger.warning("risk_scores not readable at %s", f"postgresql://u:{SECRET}@h/db")
        try:
            raise ValueError(f"password={SECRET}")
        except ValueError:
            logger.exception("refresh failed")
    finally:
        logger.removeHandler(handler)
    assert SECRET not in stream.getvalue() and "postgresql://u:***@h/db" in stream.getvalue() and "password=***" in stream.getvalue()
    screen = io.StringIO()
    console = RedactingConsole(file=screen, width=200)
    table = Table(title=f"CRM data at postgresql://u:{SECRET}@h/db")
    table.add_column("where")
    table.add_row(f"postgresql://u:{SECRET}@h/db")
    console.print(table)
    console.print(f"good rows written to postgresql://u:{SECRET}@h/db")
    assert SECRET not in screen.getvalue() and screen.getvalue().count("postgresql://u:***@h/db") == 3
