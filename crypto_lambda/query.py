"""Spark SQL over the lake: every Delta table is registered as a temporary view named after it.

Views that have no data yet are simply not registered, so a query names a missing view with Spark's own
"table or view not found" error instead of failing at start-up. Every view is one committed version of its
table (the newest, or the one ``as_of`` names): a commit being written meanwhile is invisible.

Time travel (``--as-of``): ``VERSION`` or ``TIMESTAMP`` alone applies to every view (a timestamp is the usual
choice: versions differ per table; a table that did not exist yet then is left out), ``TABLE=VERSION`` or
``TABLE=TIMESTAMP`` to one table (an error if that version does not exist); both may be given, the per-table
one wins. A timestamp is resolved to the last version committed at or before it, from the log (delta-rs).

Read-only by default (:func:`check_statement`): the lake is the product of the pipeline, and a SQL console
that can ``INSERT OVERWRITE DIRECTORY`` or ``CREATE TABLE`` would empty or litter any folder. Results are cut
to ``--limit`` rows inside Spark, so a huge result cannot exhaust the JVM.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession

from crypto_lambda.config import Settings
from crypto_lambda.lake import read as lake_tables


@dataclass(frozen=True)
class AsOf:
    """Parsed ``--as-of`` values: one for every view (``everywhere``) and per table (``tables``)."""

    everywhere: int | dt.datetime | None = None
    tables: dict[str, int | dt.datetime] = field(default_factory=dict)

    def of(self, name: str) -> int | dt.datetime | None:
        return self.tables.get(name, self.everywhere)


def _point(text: str, what: str) -> int | dt.datetime:
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--as-of {what!r}: expected a table version (0, 1, ...) or an ISO timestamp "
                         "(2026-01-31 or 2026-01-31T12:00:00+00:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)  # naive = UTC, like every time in the lake


def parse_as_of(values: list[str] | None, lake: Path) -> AsOf:
    """``["3"]``, ``["2026-01-31T12:00"]``, ``["serving_daily=3", "daily_filled=2026-01-31"]`` -> AsOf."""
    everywhere, tables = None, {}
    for value in values or []:
        name, sep, point = value.partition("=")
        if not sep:
            if everywhere is not None:
                raise ValueError(f"--as-of {value!r}: one value for every table was given already")
            everywhere = _point(value.strip(), value)
            continue
        name = name.strip()
        if name not in lake_tables.known_names(lake):
            raise ValueError(f"--as-of {value!r}: unknown table {name!r}; known: "
                             f"{', '.join(lake_tables.known_names(lake))}")
        tables[name] = _point(point.strip(), value)
    return AsOf(everywhere, tables)


def resolve_version(path: Path, point: int | dt.datetime) -> int | None:
    """The table version ``point`` means: itself if it exists, the last commit at or before a timestamp; None
    when the table has no such version (it did not exist yet)."""
    log = lake_tables.open_folder(path).history()
    versions = {e["version"]: e["timestamp"] / 1000 for e in log}
    if isinstance(point, int):
        return point if point in versions else None
    earlier = [v for v, ts in versions.items() if ts <= point.timestamp()]
    return max(earlier) if earlier else None


def register_views(spark: SparkSession, settings: Settings, as_of: AsOf | None = None) -> dict[str, int | None]:
    """Register every table that has data, at its ``as_of`` version; returns view name -> version (None: the
    newest). A table named in ``as_of.tables`` without that version is an error; a global point before a
    table existed leaves that view out."""
    as_of = as_of or AsOf()
    found = lake_tables.lake_tables(settings.lake)
    for name in as_of.tables:
        if name not in found:
            raise ValueError(f"--as-of {name}=...: table {name} has no commits yet")
    views: dict[str, int | None] = {}
    for name, path in found.items():
        point = as_of.of(name)
        version = None if point is None else resolve_version(path, point)
        if point is not None and version is None:
            if name in as_of.tables:
                newest = lake_tables.open_folder(path).version()
                raise ValueError(f"--as-of {name}={point}: table {name} has no such version (versions 0..{newest}"
                                 "; a timestamp must not be before its first commit)")
            continue
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", str(version))
        reader.load(str(path)).createOrReplaceTempView(name)
        views[name] = version
    for name in lake_tables.known_names(settings.lake):  # a long-lived session keeps earlier queries' views
        if name not in views:
            spark.catalog.dropTempView(name)
    return views


DEFAULT_LIMIT = 10_000
# Statements that only read or describe. Anything else writes, drops, creates or changes the session and is
# refused unless --allow-writes. A whitelist, so a statement Spark adds later is refused, not let through.
READ_ONLY_COMMANDS = frozenset({
    "ShowTables", "ShowViews", "ShowColumns", "ShowFunctions", "ShowNamespaces", "ShowCatalogs",
    "ShowTableProperties", "ShowPartitions", "ShowCreateTable", "ShowCurrentNamespace", "DescribeRelation",
    "DescribeColumn", "DescribeFunction", "DescribeNamespace", "DescribeQuery", "ExplainCommand",
    "CreateTempViewUsing",  # CREATE TEMPORARY VIEW ... USING: reads, lives only in this session
    "DescribeDeltaHistory", "DescribeDeltaDetailCommand",  # Delta's DESCRIBE HISTORY / DETAIL: read the log
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
              allow_writes: bool = False, as_of: AsOf | None = None) -> QueryResult:
    """Run one statement against the registered views, read-only unless ``allow_writes``; the result is cut
    to ``limit`` rows in Spark (so a huge result never reaches the driver's memory). SQL errors become
    ValueError with Spark's first line."""
    from pyspark.errors import AnalysisException

    if limit < 1:
        raise ValueError(f"--limit {limit} must be at least 1")
    views = register_views(spark, settings, as_of)
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
