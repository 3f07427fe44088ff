"""Reading (and the small writes of) the speed layer's outputs without Spark.

Minute bars are written by Spark's file sink under ``lake/speed_klines_1m/symbol=X/date=Y/`` and are
exactly-once only through its commit log ``_spark_metadata``: a batch killed mid-write can leave part files
that no log entry lists. :func:`read_speed_bars` therefore reads only files the log lists (latest
``N.compact`` plus later batch files), so the Dagster sensor, a live page or a test see what Spark would.

In-progress minutes come from the kline stream: the consumer keeps, per symbol and UTC day, the newest kline
update of every minute in ``lake/speed_provisional_1m/SYMBOL/YYYY-MM-DD.parquet`` (rewritten atomically,
newest-wins, so replaying a micro-batch is harmless). :func:`provisional_daily_bar` = committed minute bars
plus provisional minutes not yet committed, i.e. "today so far" seconds after a tick instead of after the
watermark. Gap markers and quarantined records are one Parquet file per micro-batch, named by batch id, so
a re-run batch overwrites its own file (exactly once).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crypto_lambda.config import Settings, validate_symbol
from crypto_lambda.lake import atomic_write_table, partition_path
from streaming_service.bars import BAR_COLUMNS, daily_from_minutes
from streaming_service.topics import SpeedPaths

_LOG_NAME = re.compile(r"^(\d+)(\.compact)?$")
PROVISIONAL_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("open_time", pa.timestamp("ms", tz="UTC")), ("open", pa.float64()),
    ("high", pa.float64()), ("low", pa.float64()), ("close", pa.float64()), ("volume", pa.float64()),
    ("trades", pa.int64()), ("closed", pa.bool_()), ("event_ms", pa.int64()), ("received_ms", pa.int64()),
])
GAP_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("from_ms", pa.int64()), ("to_ms", pa.int64()), ("reason", pa.string()),
    ("event_ms", pa.int64()), ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
])
STREAM_QUARANTINE_SCHEMA = pa.schema([
    ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
    ("kafka_ts", pa.timestamp("ms", tz="UTC")), ("reason", pa.string()), ("raw", pa.binary()),
    ("batch_id", pa.int64()),
])


def committed_files(output: Path) -> list[Path]:
    """Data files a Spark file sink has committed, from ``<output>/_spark_metadata``."""
    meta = output / "_spark_metadata"
    if not meta.is_dir():
        return []
    logs: dict[int, Path] = {}
    compacts: list[int] = []
    for entry in meta.iterdir():
        match = _LOG_NAME.match(entry.name)
        if match:
            logs[int(match.group(1))] = entry
            if match.group(2):
                compacts.append(int(match.group(1)))
    start = max(compacts, default=-1)
    files: dict[str, None] = {}
    for batch in sorted(b for b in logs if b >= start):
        lines = logs[batch].read_text(encoding="utf-8").splitlines()
        for line in lines[1:]:  # first line is the log version, e.g. "v1"
            if not line.strip():
                continue
            item = json.loads(line)
            if item.get("action", "add") == "delete":
                files.pop(item["path"], None)
            else:
                files[item["path"]] = None
    return [_local(output, uri) for uri in files]


def _local(output: Path, uri: str) -> Path:
    """Log entries are absolute URIs; fall back to the partition-relative tail if the lake was moved."""
    path = Path(unquote(urlparse(uri).path))
    if path.exists():
        return path
    parts = path.parts
    tail = [p for p in parts[-3:] if "=" in p or p.endswith(".parquet")]
    return output.joinpath(*tail)


def partition_values(path: Path) -> dict[str, str]:
    return dict(p.split("=", 1) for p in path.parts if "=" in p)


def read_speed_bars(settings: Settings, symbol: str | None = None, day: dt.date | None = None,
                    output: Path | None = None, files: list[Path] | None = None) -> pd.DataFrame:
    """Committed streaming minute bars (optionally one symbol and/or UTC day), sorted by symbol and time.
    ``files``: :func:`committed_files` of ``output`` when the caller already has them (the sink's log grows
    with history, so a reader of several days parses it once)."""
    output = output or SpeedPaths.of(settings).bars
    wanted_symbol = validate_symbol(symbol) if symbol else None
    tables = []
    for path in committed_files(output) if files is None else files:
        values = partition_values(path.relative_to(output) if path.is_relative_to(output) else path)
        if wanted_symbol and values.get("symbol") != wanted_symbol:
            continue
        if day and values.get("date") != day.isoformat():
            continue
        table = pq.read_table(path)
        n = table.num_rows
        for name in ("symbol", "date"):
            if name not in table.column_names:
                table = table.append_column(name, pa.array([values.get(name)] * n, pa.string()))
        tables.append(table.select(list(BAR_COLUMNS)))
    if not tables:
        return _empty_bars()
    frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    frame["open_time"] = utc_ms(frame["open_time"])
    return frame.sort_values(["symbol", "open_time"], kind="stable").reset_index(drop=True)


def utc_ms(series: pd.Series) -> pd.Series:
    series = pd.to_datetime(series)
    if series.dt.tz is None:
        series = series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC").astype("datetime64[ms, UTC]")


def _empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in BAR_COLUMNS})
    frame["symbol"] = frame["symbol"].astype(str)
    frame["open_time"] = pd.Series(dtype="datetime64[ms, UTC]")
    frame["trades"] = frame["trades"].astype("int64")
    frame["source"] = frame["source"].astype(str)
    frame["date"] = frame["date"].astype(str)
    return frame


# -- provisional minutes -------------------------------------------------------------------------------------

def provisional_path(folder: Path, symbol: str, day: dt.date) -> Path:
    return partition_path(folder.parent, folder.name, symbol, day)


def _read_provisional_file(path: Path) -> pd.DataFrame:
    if not path.exists():
        return PROVISIONAL_SCHEMA.empty_table().to_pandas()
    return pq.read_table(path, schema=PROVISIONAL_SCHEMA).to_pandas()


def read_provisional(settings: Settings, symbol: str, day: dt.date, folder: Path | None = None) -> pd.DataFrame:
    """Newest kline-stream state of each minute of a symbol-day (may include minutes already committed)."""
    return _read_provisional_file(provisional_path(folder or SpeedPaths.of(settings).provisional, symbol, day))


def merge_provisional(folder: Path, updates: pd.DataFrame) -> int:
    """Fold the newest kline updates into each symbol-day file; newest wins, so replays are harmless."""
    if updates is None or not len(updates):
        return 0
    updates = updates.copy()
    updates["open_time"] = utc_ms(updates["open_time"])
    written = 0
    for (symbol, day), part in updates.groupby([updates["symbol"], updates["open_time"].dt.date]):
        path = provisional_path(folder, symbol, day)
        merged = pd.concat([_read_provisional_file(path), part[list(PROVISIONAL_SCHEMA.names)]],
                           ignore_index=True)
        merged = merged.sort_values(["open_time", "event_ms", "closed"], kind="stable")
        merged = merged.drop_duplicates("open_time", keep="last").reset_index(drop=True)
        atomic_write_table(pa.Table.from_pandas(merged, schema=PROVISIONAL_SCHEMA, preserve_index=False), path)
        written += 1
    return written


def provisional_daily_bar(settings: Settings, symbol: str, day: dt.date, paths: SpeedPaths | None = None,
                          committed: pd.DataFrame | None = None) -> dict | None:
    """"Today so far": committed minute bars (``committed``: the day's, if the caller has read them already),
    plus provisional (kline-stream) minutes not committed yet."""
    paths = paths or SpeedPaths.of(settings)
    if committed is None:
        committed = read_speed_bars(settings, symbol, day, output=paths.bars)
    provisional = read_provisional(settings, symbol, day, folder=paths.provisional)
    fresh = provisional[~provisional["open_time"].isin(committed["open_time"])]
    cols = ["open_time", "open", "high", "low", "close", "volume", "trades"]
    minutes = pd.concat([committed[cols], fresh[cols]], ignore_index=True) if len(fresh) else committed[cols]
    bar = daily_from_minutes(minutes)
    if bar is None:
        return None
    bar.update(symbol=symbol, date=day, committed_minutes=int(len(committed)),
               provisional_minutes=int(len(fresh)),
               as_of_ms=int(provisional["event_ms"].max()) if len(provisional) else None)
    return bar


# -- gap markers and quarantine ------------------------------------------------------------------------------

def write_batch_file(folder: Path, batch_id: int, table: pa.Table) -> Path:
    return atomic_write_table(table, folder / f"batch-{batch_id:012d}.parquet")


def _read_folder(folder: Path, schema: pa.Schema) -> pd.DataFrame:
    files = sorted(folder.glob("batch-*.parquet")) if folder.is_dir() else []
    if not files:
        return schema.empty_table().to_pandas()
    return pa.concat_tables([pq.read_table(f, schema=schema) for f in files]).to_pandas()


def read_gaps(settings: Settings, symbol: str | None = None) -> pd.DataFrame:
    """Gap markers (symbol, from_ms, to_ms, reason): minutes in [from, to] need a REST refill."""
    frame = _read_folder(SpeedPaths.of(settings).gaps, GAP_SCHEMA)
    if symbol:
        frame = frame[frame["symbol"] == symbol]
    return frame.drop_duplicates(["symbol", "from_ms", "to_ms"]).sort_values(["symbol", "from_ms"]).reset_index(
        drop=True)


def gap_minutes(gaps: pd.DataFrame) -> pd.DataFrame:
    """The (symbol, minute open time) pairs the batch layer should refill for the given gap markers."""
    rows = [(g.symbol, m) for g in gaps.itertuples()
            for m in range(g.from_ms - g.from_ms % 60_000, g.to_ms + 1, 60_000)]
    frame = pd.DataFrame(rows, columns=["symbol", "open_ms"]).drop_duplicates()
    frame["open_time"] = pd.to_datetime(frame["open_ms"], unit="ms", utc=True)
    return frame.reset_index(drop=True)


def read_stream_quarantine(settings: Settings) -> pd.DataFrame:
    return _read_folder(SpeedPaths.of(settings).quarantine, STREAM_QUARANTINE_SCHEMA)
