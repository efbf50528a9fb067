"""Apache Spark over the Parquet lake: the read side of analytics when a company outgrows
one machine.

``cxloop export parquet`` writes the lake (``events/`` partitioned by month,
``customers.parquet``); this module opens a Spark session (local mode by default,
``CXLOOP_SPARK_MASTER`` for a cluster), registers both as views and answers the analytics
runners' SQL, as sqlglot writes it for Spark (``cxloop.analytics.sql``). The lake is a
snapshot: it answers for the events it held when it was written. It is read-only, so none
of the event store's writing methods are here; the runners need only ``sql`` (small
answers, as Arrow), ``frame`` (a DataFrame for work that stays in the executors) and
``customers``.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from cxloop.events.base import EVENTS_ARROW_SCHEMA

_SPARK_TYPES = {pa.string(): "string", pa.int64(): "bigint"}
_lock = threading.Lock()
_sessions: dict[str, Any] = {}


class LakeUnavailable(RuntimeError):
    """Spark cannot run here, or the directory holds no lake; the message says which."""


try:  # what a failed Spark job raises in Python, when PySpark is installed
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    SPARK_ERRORS: tuple[type[Exception], ...] = (PySparkException, Py4JJavaError)
except ImportError:  # pragma: no cover - without the spark extra
    SPARK_ERRORS = ()


def spark_error(exc: BaseException) -> str:
    """The line of a Spark error that says what went wrong (not the JVM's stack)."""
    lines = [line.strip(" :") for line in str(exc).splitlines() if line.strip(" :")]
    for line in lines:
        if "Exception: " in line:
            return line.split("Exception: ", 1)[1]
    return lines[0] if lines else type(exc).__name__


def spark_session(master: str = "local[*]") -> Any:
    """One Spark session per master for the whole process: starting a JVM costs seconds."""
    with _lock:
        if master in _sessions:
            return _sessions[master]
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise LakeUnavailable(
                "the Spark engine needs PySpark: pip install 'cxloop[spark]'"
            ) from exc
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise LakeUnavailable(
                "the Spark engine needs Java 17 or newer (e.g. apt-get install "
                "openjdk-17-jre-headless)"
            )
        # Executors run the kernels in this interpreter, where cxloop is installed.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        quiet = resources.files("cxloop.events") / "spark-log4j2.properties"
        builder = (
            SparkSession.builder.master(master)
            .appName("cxloop")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.ansi.enabled", "true")
            .config("spark.sql.ansi.doubleQuotedIdentifiers", "true")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.sql.shuffle.partitions", str(max(2, 2 * (os.cpu_count() or 1))))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{quiet}")
        )
        try:
            session = builder.getOrCreate()
        except Exception as exc:  # the JVM did not start: Java missing or broken
            raise LakeUnavailable(f"Spark did not start: {exc}") from exc
        # Failed jobs reach Python as exceptions, reported in one line; the JVM keeps quiet.
        session.sparkContext.setLogLevel("FATAL")
        _sessions[master] = session
        return session


class SparkLake:
    """A Parquet lake as Spark views ``events`` and ``customers``."""

    backend = "spark"

    def __init__(self, directory: Path, *, master: str = "local[*]") -> None:
        self.directory = directory
        if not (directory / "customers.parquet").is_file():
            raise LakeUnavailable(
                f"{directory} holds no Parquet lake (write one with: cxloop export parquet "
                f"{directory})"
            )
        # A session of its own shares the JVM but not the views, so two lakes can be open.
        self.session = spark_session(master).newSession()
        events_dir = directory / "events"
        try:
            if any(events_dir.rglob("*.parquet")):
                events = self.session.read.parquet(str(events_dir))
            else:  # a lake of a project without events
                events = self.session.createDataFrame([], _events_ddl())
            events.createOrReplaceTempView("events")
            customers = self.session.read.parquet(str(directory / "customers.parquet"))
        except SPARK_ERRORS as exc:
            raise LakeUnavailable(
                f"cannot read the lake in {directory}: {spark_error(exc)}"
            ) from exc
        customers.createOrReplaceTempView("customers")
        self.customers = LakeCustomers(self)

    def frame(self, query: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        """A query's DataFrame, for work that should stay in the executors."""
        args = dict(params) if isinstance(params, Mapping) else list(params)
        return self.session.sql(query, args=args)

    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> pa.Table:
        table: pa.Table = self.frame(query, params).toArrow()
        return table

    def close(self) -> None:
        """Views go with the session; the JVM stays for the next lake of this process."""


class LakeCustomers:
    """The lake's customers: traits for breakdowns, names and e-mails for lists."""

    _TRAIT = "from_json(traits, 'map<string,string>')"

    def __init__(self, lake: SparkLake) -> None:
        self.lake = lake

    def traits_of(self, customers: list[int], trait: str) -> dict[int, str | None]:
        wanted = set(customers)
        rows = self.lake.sql(f"SELECT id, {self._TRAIT}[?] AS v FROM customers", [trait])
        return {
            c: v
            for c, v in zip(
                rows.column("id").to_pylist(), rows.column("v").to_pylist(), strict=True
            )
            if c in wanted
        }

    def has_trait(self, trait: str) -> bool:
        query = f"SELECT 1 AS x FROM customers WHERE map_contains_key({self._TRAIT}, ?) LIMIT 1"
        return bool(self.lake.sql(query, [trait]).num_rows > 0)

    def contacts(self, customers: list[int]) -> dict[int, tuple[str | None, str | None]]:
        if not customers:
            return {}
        marks = ", ".join("?" for _ in customers)
        rows = self.lake.sql(
            f"SELECT id, name, email FROM customers WHERE id IN ({marks})", customers
        ).to_pylist()
        return {r["id"]: (r["name"], r["email"]) for r in rows}


def _events_ddl() -> str:
    def kind(field: pa.Field) -> str:
        if pa.types.is_timestamp(field.type):
            return "timestamp"
        return _SPARK_TYPES[field.type]

    return ", ".join(f"`{f.name}` {kind(f)}" for f in EVENTS_ARROW_SCHEMA)
