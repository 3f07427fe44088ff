"""Shared pieces of the benchmarks: the bootstrapped input, figures (table + JSON), timing and child processes.

Why a bootstrap: the shipped real sample has 90 days of minutes, the seeds' scale is ~11.7 M minutes. Whole
real days (1,440 consecutive minutes) are resampled with a seeded RNG and chained, each day's OHLC scaled by
prev_close / first_open so prices are continuous; a positive scale keeps low <= open/close <= high exactly,
and volumes are copied. The result is written once as one Parquet file per (symbol, day) (the generator's
cheap output, and the old lake layout the "before" figures read) and reused (never committed);
:func:`ensure_delta_input` turns it, once, into the project's Delta table ``raw_klines_1m`` (partitioned by
symbol and month, written by Spark): what the benchmarks time, Spark through Delta and DuckDB on the very files
the table's log references.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crypto_lambda import lake as lk
from crypto_lambda.config import home_dir
from crypto_lambda.schema import KLINE_SCHEMA, spark_ddl
from crypto_lambda.timeutil import DAY_MS, MINUTE_MS, MINUTES_PER_DAY, day_start_ms
from replay_exchange.recording import Bars, sample_bars

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
YEAR_DAYS = 365.25


def bench_home() -> Path:
    """``$CRYPTO_LAMBDA_HOME/bench``: figures, the cached input and scratch homes live here."""
    path = home_dir() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- figures ------------------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured number beside its baseline and target; ``ratio`` = value / baseline."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    ratio: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.baseline:
            self.ratio = round(self.value / self.baseline, 2)


def print_table(title: str, figures: Sequence[Figure]) -> None:
    def num(v: float | None) -> str:
        if v is None:
            return "-"
        return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"

    rows = [(f.name, f"{num(f.value)} {f.unit}", num(f.baseline), "-" if f.ratio is None else f"{f.ratio:.2f}x",
             f.target or "-", {True: "yes", False: "NO", None: "-"}[f.met]) for f in figures]
    head = ("figure", "value", "baseline", "ratio", "target", "met")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(f"\n== {title} ==")
    print(line.format(*head))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    notes = [f"  {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        print("notes:\n" + "\n".join(notes))
    sys.stdout.flush()


def write_figures(name: str, figures: Sequence[Figure], extra: dict | None = None) -> Path:
    """``$CRYPTO_LAMBDA_HOME/bench/<name>.json``: a list of {name, value, unit, baseline, ratio, target, ...}."""
    path = bench_home() / f"{name}.json"
    rows = [{k: v for k, v in asdict(f).items()} for f in figures]
    path.write_text(json.dumps(rows, indent=2) + "\n")
    if extra:
        (bench_home() / f"{name}.details.json").write_text(json.dumps(extra, indent=2, default=str) + "\n")
    return path


# -- child processes ------------------------------------------------------------------------------------------


def run_child(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 900) -> tuple[float, dict]:
    """Run ``python <args>`` as a fresh process; returns its wall clock (spawn to exit) and the JSON it
    printed last on stdout. Cold figures come from here: interpreter start, imports and Spark start count."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env={**os.environ, **(env or {})}, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"child {' '.join(args)} failed with exit code {proc.returncode}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return wall, (json.loads(lines[-1]) if lines else {})


def emit(result: dict) -> None:
    """A child's answer to :func:`run_child`: one JSON line on stdout."""
    print(json.dumps(result, default=str), flush=True)


# -- bootstrapped input -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapParams:
    """What the cached input depends on; stored in its marker file, a mismatch rebuilds it."""

    seed: int = 20250817
    end: str = "2025-08-17"  # last full day of the real sample, so the series ends on a real price level
    years: tuple[tuple[str, float], ...] = (("BTCUSDT", 13.9), ("ETHUSDT", 8.3))
    version: int = 2

    def days(self, symbol: str) -> int:
        return round(dict(self.years)[symbol] * YEAR_DAYS)


def input_root() -> Path:
    return bench_home() / "input"


def input_lake() -> Path:
    return input_root() / "lake"


def raw_files(lake: Path, symbols: Sequence[str] | None = None) -> list[str]:
    """Every raw partition file of the lake, sorted (what the project's Spark path reads)."""
    root = lake / lk.RAW_KLINES
    symbols = symbols or sorted(p.name for p in root.iterdir() if p.is_dir())
    return [str(p) for s in symbols for p in sorted((root / s).glob("*.parquet"))]


def _real_days(bars: Bars) -> dict[str, np.ndarray]:
    """The sample's complete UTC days as (days, 1440) arrays per column, detrended: minute j's O/H/L/C are
    all multiplied by exp(-mu * j / 1439), mu = the mean daily log return, so chaining thousands of days
    does not compound a 90-day summer trend (ETH would end up at 1e-6 USD). A positive per-minute factor
    keeps every bar valid."""
    day = bars.open_ms // DAY_MS
    _, first, counts = np.unique(day, return_index=True, return_counts=True)
    full = first[counts == MINUTES_PER_DAY]
    rows = full[:, None] + np.arange(MINUTES_PER_DAY)
    out = {k: bars.cols[k][rows] for k in ("open", "high", "low", "close", "volume")}
    mu = float(np.mean(np.log(out["close"][:, -1] / out["open"][:, 0])))
    tilt = np.exp(-mu * np.arange(MINUTES_PER_DAY) / (MINUTES_PER_DAY - 1))
    for k in ("open", "high", "low", "close"):
        out[k] = out[k] * tilt
    return out


def bootstrap_symbol(real: dict[str, np.ndarray], n_days: int, end_close: float,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """n_days chained real days: day k is scaled so its first open equals day k-1's last close, and the whole
    path so the last close equals ``end_close``. Returns (n_days, 1440) arrays."""
    pick = rng.integers(0, len(real["open"]), n_days)
    first_open = real["open"][pick, 0]
    last_close = real["close"][pick, -1]
    log_open = np.concatenate([[0.0], np.cumsum(np.log(last_close[:-1] / first_open[:-1]))])
    end_log = log_open[-1] + np.log(last_close[-1] / first_open[-1])
    day_open = np.exp(log_open - end_log) * end_close  # first open of each bootstrapped day
    scale = (day_open / first_open)[:, None]
    out = {k: real[k][pick] * scale for k in ("open", "high", "low", "close")}
    out["volume"] = real["volume"][pick].copy()
    return out


def _day_table(symbol: str, day_ms: int, cols: dict[str, np.ndarray], i: int) -> pa.Table:
    open_ms = day_ms + np.arange(MINUTES_PER_DAY, dtype=np.int64) * MINUTE_MS
    n = MINUTES_PER_DAY
    nulls_f = pa.nulls(n, pa.float64())
    return pa.Table.from_arrays([
        pa.array(np.full(n, symbol, dtype=object), pa.string()),
        pa.array(open_ms, pa.timestamp("ms", tz="UTC")),
        *(pa.array(cols[k][i]) for k in ("open", "high", "low", "close", "volume")),
        nulls_f, pa.nulls(n, pa.int64()), nulls_f, nulls_f,
        pa.array(np.full(n, "bootstrap", dtype=object), pa.string()),
    ], schema=KLINE_SCHEMA)


def ensure_input(params: BootstrapParams | None = None) -> Path:
    """Build (once) and return the bootstrapped lake: ``input/lake/raw_klines_1m/<SYMBOL>/<day>.parquet``."""
    params = params or BootstrapParams()
    marker = input_root() / "MARKER.json"
    wanted = asdict(params)
    wanted["years"] = dict(params.years)
    if marker.exists() and json.loads(marker.read_text()).get("params") == wanted:
        return input_lake()
    if input_root().exists():
        shutil.rmtree(input_root())
    started = time.perf_counter()
    minutes, _ = sample_bars()
    rng = np.random.default_rng(params.seed)
    end = dt.date.fromisoformat(params.end)
    counts = {}
    for symbol, _years in params.years:
        real = _real_days(minutes[symbol])
        n_days = params.days(symbol)
        cols = bootstrap_symbol(real, n_days, float(real["close"][-1, -1]), rng)
        first = end - dt.timedelta(days=n_days - 1)
        folder = input_lake() / lk.RAW_KLINES / symbol
        folder.mkdir(parents=True, exist_ok=True)
        log(f"bootstrap {symbol}: {n_days} days ({first}..{end}) from {len(real['open'])} real days")
        for i in range(n_days):
            day = first + dt.timedelta(days=i)
            pq.write_table(_day_table(symbol, day_start_ms(day), cols, i), folder / f"{day.isoformat()}.parquet",
                           compression="zstd")
            if (i + 1) % 1000 == 0 or i + 1 == n_days:
                log(f"  {symbol}: {i + 1}/{n_days} day files written ({time.perf_counter() - started:.0f}s)")
        counts[symbol] = {"days": n_days, "first": first.isoformat(), "last": end.isoformat(),
                          "rows": n_days * MINUTES_PER_DAY}
    marker.write_text(json.dumps({"params": wanted, "symbols": counts,
                                  "seconds": round(time.perf_counter() - started, 1)}, indent=2) + "\n")
    return input_lake()


def delta_lake() -> Path:
    """The bootstrapped minutes as the project's Delta lake: ``input/delta/raw_klines_1m``."""
    return input_root() / "delta"


def ensure_delta_input() -> Path:
    """Build (once per input, in a fresh child process so this one holds no JVM) the Delta raw_klines_1m."""
    ensure_input()
    marker = delta_lake() / "MARKER.json"
    source = (input_root() / "MARKER.json").read_text()
    if marker.exists() and marker.read_text() == source:
        return delta_lake()
    shutil.rmtree(delta_lake(), ignore_errors=True)
    wall, result = run_child([str(Path(__file__).resolve()), "--build-delta"], timeout=3600)
    log(f"Delta raw_klines_1m: {result['rows']:,} rows in {result['files']} files, one Spark commit of "
        f"{result['seconds']:.0f}s ({wall:.0f}s with process start)")
    marker.write_text(source)
    return delta_lake()


def _build_delta() -> dict:
    """One replace commit of every bootstrapped minute, ``date`` added, one file per (symbol, month)."""
    from pyspark.sql import functions as F

    from crypto_lambda.lake import read, write
    from crypto_lambda.spark import get_spark

    spark = get_spark()
    started = time.perf_counter()
    minutes = spark.read.schema(spark_ddl(KLINE_SCHEMA)).parquet(*raw_files(input_lake()))
    commit = write.replace(spark, delta_lake(), lk.RAW_KLINES, minutes.withColumn("date", F.to_date("open_time")),
                           extra={"bench": "bootstrap input"})
    seconds = time.perf_counter() - started
    spark.stop()
    return {"rows": commit.rows, "files": read.file_count(delta_lake(), lk.RAW_KLINES), "seconds": seconds,
            "version": commit.version}


def local_paths(uris: Sequence[str]) -> list[str]:
    """delta-rs's file URIs as local paths (DuckDB and pyarrow take both; paths read better in JSON)."""
    return [u.removeprefix("file://") for u in uris]


def table_files(lake: Path) -> dict[str, dict]:
    """Files and bytes per Delta table of a lake: the "files per table" figure."""
    from crypto_lambda.lake import read
    from crypto_lambda.lake.tables import is_table

    out = {}
    for path in sorted(p for p in lake.iterdir() if is_table(p)) if lake.is_dir() else []:
        if path.name in lk.TABLES:
            out[path.name] = read.file_sizes(lake, path.name)
        else:
            from deltalake import DeltaTable

            out[path.name] = {"files": len(DeltaTable(str(path)).file_uris()), "bytes": None}
    return out


def input_info() -> dict:
    return json.loads((input_root() / "MARKER.json").read_text())


def ensure_compact(lake: Path, rows_per_group: int = 1 << 20) -> Path:
    """The same rows as one Parquet file per symbol (row groups of ~1 M rows): the small-files comparison."""
    out = input_root() / "compact"
    marker = out / "MARKER.json"
    source = (input_root() / "MARKER.json").read_text()
    if marker.exists() and marker.read_text() == source:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for symbol_dir in sorted((lake / lk.RAW_KLINES).iterdir()):
        files = sorted(symbol_dir.glob("*.parquet"))
        table = pa.concat_tables(pq.read_table(f, schema=KLINE_SCHEMA) for f in files)
        pq.write_table(table, out / f"{symbol_dir.name}.parquet", compression="zstd", row_group_size=rows_per_group)
        log(f"compact {symbol_dir.name}: {table.num_rows:,} rows in one file")
    marker.write_text(source)
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--build-delta"]:
        emit(_build_delta())
