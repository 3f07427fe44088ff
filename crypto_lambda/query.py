"""Spark SQL over the lake: every dataset is registered as a temporary view named after its asset.

Views that have no data yet are simply not registered, so a query names a missing view with Spark's own
"table or view not found" error instead of failing at start-up. The streaming 1-minute bars are read
through Spark's file-sink reader, which honours ``_spark_metadata`` (committed files only).

Read-only by default (:func:`check_statement`): the lake is the product of the pipeline, and a SQL console
that can ``INSERT OVERWRITE DIRECTORY`` or ``CREATE TABLE`` would empty or litter any folder. Results are cut
to ``--limit`` rows inside Spark, so a huge result cannot exhaust the JVM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession

from crypto_lambda import lake as lk
from crypto_lambda.config import Settings

SPEED_BARS = "speed_klines_1m"
# view name -> glob under the lake (per-day datasets have a symbol folder, per-symbol ones do not)
GLOBS = {
    lk.RAW_KLINES: "*/*.parquet",
    lk.DAILY_OHLCV: "*/*.parquet",
    lk.DAILY_HISTORY: "*.parquet",
    lk.DAILY_FILLED: "*.parquet",
    lk.SPEED_DAILY: "*/*.parquet",
    lk.SERVING_DAILY: "*.parquet",
    "realized_vol_daily": "*/*.parquet",  # day files and each symbol's range history
    "forecast_metrics": "*.parquet",  # price and volatility rows, told apart by ``target``
}


def register_views(spark: SparkSession, settings: Settings) -> list[str]:
    """Register every dataset that has data; returns the registered view names."""
    names = []
    for name, pattern in GLOBS.items():
        folder = settings.lake / name
        files = [str(f) for f in sorted(folder.glob(pattern))] if folder.is_dir() else []
        if files:
            spark.read.parquet(*files).createOrReplaceTempView(name)
            names.append(name)
    speed = settings.lake / SPEED_BARS
    if (speed / "_spark_metadata").is_dir():
        spark.read.parquet(str(speed)).createOrReplaceTempView(SPEED_BARS)
        names.append(SPEED_BARS)
    return names


DEFAULT_LIMIT = 10_000
# Statements that only read or describe. Anything else writes, drops, creates or changes the session and is
# refused unless --allow-writes. A whitelist, so a statement Spark adds later is refused, not let through.
READ_ONLY_COMMANDS = frozenset({
    "ShowTables", "ShowViews", "ShowColumns", "ShowFunctions", "ShowNamespaces", "ShowCatalogs",
    "ShowTableProperties", "ShowPartitions", "ShowCreateTable", "ShowCurrentNamespace", "DescribeRelation",
    "DescribeColumn", "DescribeFunction", "DescribeNamespace", "DescribeQuery", "ExplainCommand",
    "CreateTempViewUsing",  # CREATE TEMPORARY VIEW ... USING: reads, lives only in this session
})
# Plans that are not Spark "commands" yet write or run arbitrary statements.
WRITING_PLANS = ("Insert", "Merge", "Update", "Delete", "Replace", "Overwrite", "Append", "Write", "Call",
                 "ExecuteImmediate")
# SQL functions that call any static Java method (System.exit, file APIs): not a query.
_REFLECTION = re.compile(r"\b(?:try_reflect|reflect|java_method)\s*\(", re.IGNORECASE)
_LOCATION = re.compile(r"\b(?:LOCATION|DIRECTORY|INPATH|path)\s*(?:=\s*)?(['\"])(.*?)\1", re.IGNORECASE)


@dataclass
class QueryResult:
    """At most ``limit`` rows; ``truncated`` when the statement had more."""

    frame: pd.DataFrame
    truncated: bool
    limit: int


def statement_kind(spark: SparkSession, sql: str) -> tuple[str, bool]:
    """(root plan class, writes?) of the parsed, not executed, statement."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors.exceptions.captured import convert_exception

    try:
        plan = spark._jsparkSession.sessionState().sqlParser().parsePlan(sql)
    except Py4JJavaError as exc:  # the raw parser is not behind PySpark's error conversion
        raise convert_exception(exc.java_exception) from None
    name = str(plan.getClass().getSimpleName()).rstrip("$")
    command = spark._jvm.java.lang.Class.forName("org.apache.spark.sql.catalyst.plans.logical.Command")
    if name == "CreateViewCommand":
        return name, str(plan.viewType()).rstrip("$") not in ("LocalTempView", "GlobalTempView")
    if bool(command.isInstance(plan)):
        return name, name not in READ_ONLY_COMMANDS
    return name, any(word in name for word in WRITING_PLANS)


def check_statement(spark: SparkSession, settings: Settings, sql: str, allow_writes: bool) -> None:
    """Refuse a statement that would write, drop or create (other than a temporary view) unless
    ``allow_writes``; even then every location it names must lie under CRYPTO_LAMBDA_HOME."""
    if _REFLECTION.search(sql):
        raise ValueError("query refused: reflect()/java_method() call arbitrary Java methods")
    kind, writes = statement_kind(spark, sql)
    if not writes:
        return
    if not allow_writes:
        raise ValueError(f"query refused: {kind} writes, drops or creates; `query` is read-only "
                         "(SELECT, SHOW, DESCRIBE, EXPLAIN, CREATE TEMPORARY VIEW). Pass --allow-writes to "
                         f"write under {settings.home}")
    if "ExecuteImmediate" in kind:
        raise ValueError("query refused: EXECUTE IMMEDIATE runs a statement that cannot be checked")
    home = settings.home.resolve()
    for _, target in _LOCATION.findall(sql):
        path = Path(target.removeprefix("file:").removeprefix("//")).expanduser()
        if not path.is_absolute() or (path.resolve() != home and home not in path.resolve().parents):
            raise ValueError(f"query refused: {target!r} is outside CRYPTO_LAMBDA_HOME ({home}); --allow-writes "
                             "writes only under it (give an absolute path there)")


def run_query(spark: SparkSession, settings: Settings, sql: str, limit: int = DEFAULT_LIMIT,
              allow_writes: bool = False) -> QueryResult:
    """Run one statement against the registered views, read-only unless ``allow_writes``; the result is cut
    to ``limit`` rows in Spark (so a huge result never reaches the driver's memory). SQL errors become
    ValueError with Spark's first line."""
    from pyspark.errors import AnalysisException

    if limit < 1:
        raise ValueError(f"--limit {limit} must be at least 1")
    views = register_views(spark, settings)
    try:
        check_statement(spark, settings, sql, allow_writes)
        rows = spark.sql(sql).limit(limit + 1).toPandas()
    except AnalysisException as exc:  # bad SQL (ParseException is one): name the views it can use
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"SQL error: {first} (views: {', '.join(views) or 'none yet'})") from None
    return QueryResult(rows.iloc[:limit], len(rows) > limit, limit)


def format_frame(frame: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return frame.to_json(orient="records", date_format="iso", indent=2)
    with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 200):
        return frame.to_string(index=False) if len(frame) else "(no rows)"
