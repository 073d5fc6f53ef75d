"""Input that used to end in a traceback or a silent loss: each now reads right or says what to change."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churn.cli import app
from features.dataset import DataError, open_dataset, validate_frames, write_dataset
from features.importer import import_transactions

AS_OF = date(2025, 1, 1)
CUSTOMERS = "customer_id,name\nc1,上海贸易有限公司\nc2,北京商行\n"
ORDERS = "order_id,customer_id,order_date,amount\no1,c1,2024-04-03,10\no2,c2,2024-04-04,5\no3,c2,2024-04-05,7\n"


def _folder(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    folder = tmp_path / "crm"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def _validate(*args: str) -> tuple[int, str]:
    run = CliRunner().invoke(app, ["validate", "--as-of", "2025-01-01", *args])
    assert run.exception is None or isinstance(run.exception, SystemExit), run.exception
    return run.exit_code, " ".join(run.output.split())


def test_mixed_time_zones_validate_as_the_days_written() -> None:
    orders = pd.DataFrame(
        {"order_id": ["o1", "o2"], "customer_id": ["c1", "c1"], "order_date": ["2024-04-03T23:30:00+08:00", "2024-04-04T01:00:00-05:00"], "amount": [1.0, 2.0]}
    )
    clean, report = validate_frames({"orders": orders}, as_of=AS_OF)
    assert clean["orders"]["order_date"].dt.date.tolist() == [date(2024, 4, 3), date(2024, 4, 4)]
    assert any("time zones dropped" in n for n in report.notes)


def test_gbk_folder_is_refused_naming_the_setting_and_read_with_it(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"customers.csv": CUSTOMERS.encode("gbk"), "orders.csv": ORDERS})
    code, said = _validate("--data", str(folder))
    assert code == 2 and "Traceback" not in said
    assert "table customers:" in said and "is not UTF-8 text (line 2" in said and "--encoding (CHURN_ENCODING), e.g. gbk" in said
    copy = tmp_path / "clean.duckdb"
    code, said = _validate("--data", str(folder), "--encoding", "gbk", "--copy-to", str(copy))
    assert code == 0, said
    names = open_dataset(copy).table("customers").order_by("customer_id").name.to_pandas().tolist()
    assert names == ["上海贸易有限公司", "北京商行"]


def test_gbk_transactions_are_refused_naming_the_setting_and_read_with_it(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.csv"
    ledger.write_bytes("客户,日期,金额\n上海贸易,2024-04-03,10\n北京商行,2024-04-04,5\n".encode("gbk"))
    kwargs = {"customer_col": "客户", "date_col": "日期", "amount_col": "金额"}
    with pytest.raises(DataError, match=r"is not UTF-8 text \(line 1.*give its encoding with --encoding, e\.g\. gbk"):
        import_transactions(ledger, **kwargs)
    result = import_transactions(ledger, encoding="gbk", **kwargs)
    assert sorted(result.orders["customer_id"]) == ["上海贸易", "北京商行"]


def test_a_duplicated_column_name_is_named(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"orders.csv": "order_id,customer_id,order_date,amount,Amount\no1,c1,2024-04-03,10,11\n"})
    code, said = _validate("--data", str(folder))
    assert code == 2 and "table orders: orders.csv names the column 'Amount' twice (columns 4 and 5 of the header)" in said
    (folder / "orders.csv").unlink()
    orders = pa.table({"order_id": ["o1"], "customer_id": ["c1"], "order_date": ["2024-04-03"], "amount": [10.0], "x": [11.0]})
    pq.write_table(orders.rename_columns(["order_id", "customer_id", "order_date", "amount", "amount"]), folder / "orders.parquet")
    code, said = _validate("--data", str(folder))
    assert code == 2 and "table orders: orders.parquet names the column 'amount' twice" in said
    ledger = tmp_path / "ledger.csv"
    ledger.write_text("cust,when,amt,amt\n1,2024-01-01,5,6\n")
    with pytest.raises(DataError, match="names the column 'amt' twice"):
        import_transactions(ledger, customer_col="cust", date_col="when", amount_col="amt")
    twice = pd.DataFrame([[1, "2024-01-01", 5.0, 6.0]], columns=["cust", "when", "amt", "amt"])
    twice.to_excel(tmp_path / "ledger.xlsx", index=False)
    pq.write_table(pa.Table.from_pandas(twice.set_axis(["cust", "when", "amt", "x"], axis=1)).rename_columns(["cust", "when", "amt", "amt"]), tmp_path / "ledger.parquet")
    for suffix in (".xlsx", ".parquet"):
        with pytest.raises(DataError, match=f"ledger{suffix} names the column 'amt' twice"):
            import_transactions(tmp_path / f"ledger{suffix}", customer_col="cust", date_col="when", amount_col="amt")


def test_a_row_with_extra_fields_is_named_by_its_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"orders.csv": "order_id,customer_id,order_date,amount\no1,c1,2024-04-03,10\no2,c1,2024-04-04,10,99\no3,c2,2024-04-05,3\n"})
    code, said = _validate("--data", str(folder))
    assert code == 2 and "missing required column" not in said
    assert "table orders: line 3 of orders.csv has 5 fields where the header has 4" in said
    ledger = tmp_path / "ledger.csv"
    ledger.write_text("cust,when,amt\n1,2024-01-01,5\n1,2024-01-02,5,7\n")
    with pytest.raises(DataError, match="line 3 of ledger.csv has 4 fields where the header has 3"):
        import_transactions(ledger, customer_col="cust", date_col="when", amount_col="amt")


def test_a_mostly_quarantined_table_stops_and_says_why(tmp_path: Path) -> None:
    semicolons = "order_id;customer_id;order_date;amount\no1;c1;2024-04-03;10,5\no2;c1;2024-04-04;3,2\no3;c1;2024-04-05;7\n"
    folder = _folder(tmp_path, {"orders.csv": semicolons})
    code, said = _validate("--data", str(folder), "--on-error", "quarantine", "--copy-to", str(tmp_path / "clean.duckdb"))
    assert code == 2
    assert "2 of 3 rows of table orders (67%) would be quarantined" in said
    assert "column amount: 2 row(s) with a decimal comma (write 10.5, not 10,5)" in said
    assert not (tmp_path / "clean.duckdb").exists() and not (folder / "quarantine").exists()
    code, said = _validate("--data", str(folder), "--on-error", "quarantine", "--max-quarantined-share", "0.7")
    assert code == 0, said


def test_a_nul_byte_is_a_row_problem_before_copy_to_postgres(tmp_path: Path, pg_url: str) -> None:
    names = "customer_id,name\n" + "".join(f"c{i},shop {i}\n" for i in range(1, 5)) + "c5,Ac\x00me\n"
    folder = _folder(tmp_path, {"customers.csv": names, "orders.csv": ORDERS})
    code, said = _validate("--data", str(folder), "--copy-to", pg_url)
    assert code == 2 and "table customers, column name: 1 row(s) with a NUL character" in said
    code, said = _validate("--data", str(folder), "--copy-to", pg_url, "--on-error", "quarantine")
    assert code == 0, said
    assert open_dataset(pg_url).table("customers").count().execute() == 4


@pytest.fixture()
def reader_url(pg_url: str) -> Iterator[str]:
    """A PostgreSQL schema with the good tables, and the URL of a role that may only SELECT from it."""
    write_dataset(pg_url, {"customers": pd.DataFrame({"customer_id": ["c1"]}), "orders": pd.DataFrame(
        {"order_id": ["o1"], "customer_id": ["c1"], "order_date": ["2024-04-03"], "amount": [10.0]})})
    base, schema = pg_url.split("?schema=")
    role = f"data_hardening_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    yield pg_url.replace("postgresql://postgres@", f"postgresql://{role}@")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{role}"')
        conn.execute(f'DROP ROLE "{role}"')


def test_a_read_only_user_can_read_and_validate(reader_url: str) -> None:
    ds = open_dataset(reader_url, as_of=AS_OF)
    assert ds.table("orders").count().execute() == 1
    code, said = _validate("--data", reader_url)
    assert code == 0, said


def test_a_missing_schema_is_a_message_not_a_new_schema(pg_url: str) -> None:
    base, schema = pg_url.split("?schema=")
    with pytest.raises(DataError, match=f"no schema '{schema}' in the database"):
        open_dataset(pg_url)
    with psycopg.connect(base) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() == (0,)


@pytest.mark.parametrize("schema", ["pg_catalog", "information_schema", "PG_TOAST"])
def test_system_schemas_are_refused_for_reading_and_writing(schema: str, tmp_path: Path, pg_url: str) -> None:
    url = f"{pg_url.split('?schema=')[0]}?schema={schema}"
    with pytest.raises(DataError, match="is a PostgreSQL system schema"):
        open_dataset(url)
    with pytest.raises(DataError, match="is a PostgreSQL system schema"):
        write_dataset(url, {"orders": pd.DataFrame({"order_id": ["o1"], "customer_id": ["c1"], "order_date": ["2024-04-03"], "amount": [1.0]})})
    folder = _folder(tmp_path, {"orders.csv": ORDERS})
    code, said = _validate("--data", str(folder), "--copy-to", url)
    assert code == 2 and "system schema" in said


def test_column_names_from_a_csv_header_reach_postgres_quoted(tmp_path: Path, pg_url: str) -> None:
    hostile = 'note"; DROP TABLE customers; --'
    header = 'order_id,customer_id,order_date,amount,"note""; DROP TABLE customers; --"'
    folder = _folder(tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": f"{header}\no1,c1,2024-04-03,10,first\no2,c2,2024-04-04,5,second\n"})
    code, said = _validate("--data", str(folder), "--copy-to", pg_url)
    assert code == 0, said
    base, schema = pg_url.split("?schema=")
    with psycopg.connect(base) as conn:
        tables = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))}
        columns = [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'orders' ORDER BY ordinal_position", (schema,))]
    assert tables == {"customers", "orders"}
    assert columns == ["order_id", "customer_id", "order_date", "amount", hostile]
    notes = open_dataset(pg_url).con.table("orders").order_by("order_id")[hostile].to_pandas().tolist()
    assert notes == ["first", "second"]
