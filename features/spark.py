"""The Spark engine: a SparkSession from ``CHURN_SPARK_*`` settings and the CRM tables read through it.

The feature expressions are the same Ibis expressions as on DuckDB and PostgreSQL; Ibis compiles
them to Spark SQL. Spark is an optional extra (``pip install churn-radar[spark]``): nothing here
is imported unless ``--engine spark`` (``CHURN_ENGINE=spark``) is asked for.

Settings (environment):

- ``CHURN_SPARK_MASTER``: the cluster master, default ``local[*]`` (``yarn``, ``spark://host:7077``, ...);
- ``CHURN_SPARK_REMOTE``: a Spark Connect URL (``sc://host:15002``), used instead of the master;
- ``CHURN_SPARK_CONF``: extra settings, ``key=value`` pairs separated by commas, or ``@file`` naming a
  file of ``key=value`` lines (``spark-defaults.conf`` style, ``#`` comments).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import ibis

from features.errors import DataError

DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",  # dates are days: no shift by the machine's zone
    "spark.driver.memory": "2g",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
"""Settings every session gets unless ``CHURN_SPARK_CONF`` says otherwise."""


def spark_conf(text: str | None = None) -> dict[str, str]:
    """The Spark settings: :data:`DEFAULT_CONF` with ``CHURN_SPARK_CONF`` on top.

    Args:
        text: ``key=value,key=value`` or ``@path`` (default: the ``CHURN_SPARK_CONF`` variable).

    Returns:
        Setting name to value.

    Raises:
        DataError: a pair without ``=`` or a file that does not exist.
    """
    text = os.environ.get("CHURN_SPARK_CONF", "") if text is None else text
    pairs: list[str]
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise DataError(f"CHURN_SPARK_CONF names {path}, which is not a file: give key=value pairs or @file of key=value lines")
        pairs = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#")]
    else:
        pairs = [p.strip() for p in text.split(",") if p.strip()]
    conf = dict(DEFAULT_CONF)
    for pair in pairs:
        key, sep, value = pair.replace(" ", "=", 1).partition("=") if "=" not in pair else pair.partition("=")
        if not sep or not key.strip():
            raise DataError(f"CHURN_SPARK_CONF: {pair!r} is not key=value (e.g. spark.executor.memory=4g)")
        conf[key.strip()] = value.strip()
    return conf


def spark_session() -> Any:
    """The SparkSession of this process (created on first use): Spark Connect when ``CHURN_SPARK_REMOTE`` is set, else ``CHURN_SPARK_MASTER``.

    Raises:
        DataError: pyspark is not installed, or Java is missing.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise DataError("the Spark engine needs pyspark: pip install 'churn-radar[spark]' (or make spark), and Java 17") from None
    builder = SparkSession.builder.appName("churn-radar")
    remote = os.environ.get("CHURN_SPARK_REMOTE")
    builder = builder.remote(remote) if remote else builder.master(os.environ.get("CHURN_SPARK_MASTER", "local[*]"))
    if not remote:  # executors started from here run this interpreter (its pandas and lightgbm), unless PYSPARK_PYTHON says otherwise
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in spark_conf().items():
        if not (remote and key == "spark.driver.memory"):
            builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as err:  # noqa: BLE001 - Java missing or the cluster unreachable: say so, not a traceback
        raise DataError(f"cannot start Spark ({remote or os.environ.get('CHURN_SPARK_MASTER', 'local[*]')}): {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from None
    if not remote:
        session.sparkContext.setLogLevel("ERROR")
    return session


def connect_spark() -> ibis.BaseBackend:
    """An Ibis connection to :func:`spark_session`."""
    return ibis.pyspark.connect(spark_session())


def read_tables(con: ibis.BaseBackend, location: str, names: list[str]) -> dict[str, ibis.Table]:
    """The contract tables at ``location`` as Spark tables: ``<folder>/<name>.parquet`` files, or the tables of a catalog database.

    Args:
        con: the Ibis Spark connection.
        location: a folder of Parquet files (a local path or a URL Spark reads, ``hdfs://...``), or the name of a database in the session's catalog.
        names: the contract table names to look for.

    Returns:
        Table name to the table as stored.

    Raises:
        DataError: a folder holding CSV files (Spark reads the Parquet form of the tables).
    """
    folder = Path(location)
    if folder.is_dir():
        csv = sorted(p.name for p in folder.glob("*.csv") if p.stem in names)
        if csv:
            raise DataError(f"the Spark engine reads Parquet: {folder} has {', '.join(csv)}; convert with `churn validate --data {folder} --copy-to FOLDER_OF_PARQUET`")
        return {n: con.read_parquet(str(folder / f"{n}.parquet"), table_name=f"raw_{n}") for n in names if (folder / f"{n}.parquet").exists()}
    if "://" in location:  # a folder Spark reaches (hdfs://, s3a://, abfss://): a table whose file is not there is absent
        found = {}
        for n in names:
            try:
                found[n] = con.read_parquet(f"{location.rstrip('/')}/{n}.parquet", table_name=f"raw_{n}")
            except Exception:  # noqa: BLE001 - Spark's "path does not exist": an optional table not exported
                continue
        return found
    try:
        present = set(con.list_tables(database=location))
    except Exception:  # noqa: BLE001 - an unknown database is a user's mistake
        raise DataError(f"{location} is neither a folder of Parquet files nor a database in the Spark catalog") from None
    return {n: con.table(n, database=location) for n in names if n in present}
