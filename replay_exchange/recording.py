"""Recorded Binance klines held in memory, served by the replay exchange as if they were live.

Bars are kept per symbol as sorted int64 open-time arrays plus float64 columns, so a request is two
``np.searchsorted`` calls and a slice. An optional whole-day shift moves the recording so its last 1m day
is today (UTC), or tomorrow when fewer than ``ahead_ms`` of recorded minutes would follow now (a live
WebSocket replay needs minutes ahead of the clock: the shipped sample ends at 18:27 of its last day, so a stack
started in the evening would otherwise stream nothing); 1m and 1d data shift together so they stay consistent.
Nothing after the wall clock is
ever served: a 1m bar is served once it has closed (``open + 1 min <= now``), and the bar of the current
1h/1d/... interval is the in-progress aggregate of the minutes served so far. The clock is read on every
request, so a running server reveals minutes as time passes.

Deviation from Binance: fields the recording lacks (freqtrade feathers have no quote volume, trade count
or taker volumes) are served as JSON null instead of being invented.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_lambda import readers
from crypto_lambda.config import SAMPLE_1M, SAMPLE_DAILY, SYMBOL_CHARS
from crypto_lambda.quality import bar_violations
from crypto_lambda.schema import KLINE_COLUMNS
from crypto_lambda.timeutil import (
    DAY_MS,
    MINUTE_MS,
    MINUTES_PER_DAY,
    interval_ms,
    ms_to_day,
    now_ms,
)

FIELDS = ("open", "high", "low", "close", "volume", "quote_volume", "trades", "taker_buy_base",
          "taker_buy_quote")
SUMMED = ("volume", "quote_volume", "trades", "taker_buy_base", "taker_buy_quote")
DAILY_HEADER = "timestamp,open,high,low,close,volume"
_SYMBOL_IN_NAME = re.compile(rf"^({SYMBOL_CHARS})(?=[-_.])")
# Intervals the recording can serve: 1m as recorded, 1d from minutes or the daily file, and every
# intraday interval aggregated from minutes (they all divide a day, so buckets align to UTC midnight).
SERVED_INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")




def decimal_str(value: float) -> str:
    """Shortest string that parses back to the identical float64, never in exponent notation."""
    text = repr(value)
    if "e" in text or "E" in text:
        text = np.format_float_positional(value, unique=True, trim="-")
    return text


@dataclass
class Bars:
    """Sorted bars of one symbol at one resolution: open times (ms) and float64 columns (NaN = unknown)."""

    open_ms: np.ndarray
    cols: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.open_ms)

    def take(self, index: slice | np.ndarray) -> Bars:
        return Bars(self.open_ms[index], {k: v[index] for k, v in self.cols.items()})

    @staticmethod
    def empty() -> Bars:
        return Bars(np.empty(0, np.int64), {k: np.empty(0) for k in FIELDS})

    @staticmethod
    def concat(parts: Iterable[Bars]) -> Bars:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Bars.empty()
        return Bars(np.concatenate([p.open_ms for p in parts]),
                    {k: np.concatenate([p.cols[k] for p in parts]) for k in FIELDS})


def aggregate(bars: Bars, bucket_ms: int) -> tuple[Bars, np.ndarray]:
    """Roll bars up into ``bucket_ms`` buckets aligned to the epoch, the way Binance builds 1h/1d from 1m:
    open first, close last, high max, low min, volumes and trades summed. Also returns bars per bucket."""
    n = len(bars)
    if n == 0:
        return Bars.empty(), np.empty(0, np.int64)
    keys = bars.open_ms - bars.open_ms % bucket_ms
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    last = np.r_[first[1:] - 1, n - 1]
    c = bars.cols
    cols = {"open": c["open"][first], "close": c["close"][last],
            "high": np.maximum.reduceat(c["high"], first), "low": np.minimum.reduceat(c["low"], first)}
    cols.update({k: np.add.reduceat(c[k], first) for k in SUMMED})
    return Bars(keys[first], cols), np.diff(np.r_[first, n])


def _bars_from_frame(frame: pd.DataFrame, open_ms: np.ndarray) -> Bars:
    order = np.argsort(open_ms, kind="stable")
    open_ms = open_ms[order]
    keep = np.r_[open_ms[1:] != open_ms[:-1], True]  # last seen wins on duplicates
    index = order[keep]
    cols = {k: (pd.to_numeric(frame[k], errors="coerce").to_numpy("float64", na_value=np.nan)[index]
                if k in frame.columns else np.full(len(index), np.nan)) for k in FIELDS}
    return Bars(open_ms[keep].astype(np.int64), cols)


def _check_minutes(symbol: str, bars: Bars, where: str) -> None:
    """Fast structural check for data that bypasses ``schema.validate`` (the shipped sample): minute-aligned
    open times and the bar rule of :func:`quality.bar_violations` (OHLC order, volume >= 0, no NaN)."""
    frame = pd.DataFrame({k: bars.cols[k] for k in ("open", "high", "low", "close", "volume")}, copy=False)
    ok = (bars.open_ms % MINUTE_MS == 0) & ~frame.index.isin(bar_violations(frame).index)
    if not ok.all():
        bad = int(bars.open_ms[~ok][0])
        raise ValueError(f"{where}: {symbol} has {int((~ok).sum())} invalid 1m rows, first at {bad} ms")


def read_freqtrade_feather(path: Path, symbol: str) -> Bars:
    """A freqtrade feather (``date`` = open time, OHLCV) as 1m bars. Used for the shipped sample, which is
    checksummed (sample/README.md): ~20 ms instead of ~0.5 s through ``readers.load`` per 130k rows."""
    frame = pd.read_feather(path)
    open_ms = frame["date"].dt.as_unit("ms").astype("int64").to_numpy()
    bars = _bars_from_frame(frame, open_ms)
    _check_minutes(symbol, bars, str(path))
    return bars


def read_minutes(path: Path) -> dict[str, Bars]:
    """Any history file ``readers.load`` understands, grouped by symbol; quarantined rows are dropped."""
    match = _SYMBOL_IN_NAME.match(path.name)
    validated = readers.load(path, symbol=match.group(1) if match else None)
    good = validated.good
    out: dict[str, Bars] = {}
    for symbol, part in good.groupby("symbol", sort=True):
        open_ms = part["open_time"].dt.as_unit("ms").astype("int64").to_numpy()
        out[str(symbol)] = _bars_from_frame(part.reset_index(drop=True), open_ms)
    return out


def is_daily_csv(path: Path) -> bool:
    """Daily files are recognised by their header and a ``YYYY-MM-DD`` first timestamp."""
    if path.suffix.lower() != ".csv":
        return False
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        header, first = handle.readline().strip().lower(), handle.readline().strip()
    return header == DAILY_HEADER and re.match(r"^\d{4}-\d{2}-\d{2},", first) is not None


def read_daily_csv(path: Path) -> tuple[str, Bars]:
    match = _SYMBOL_IN_NAME.match(path.name)
    if not match:
        raise ValueError(f"{path}: daily file name must start with the symbol, e.g. BTCUSDT_1d.csv")
    frame = pd.read_csv(path)
    open_ms = pd.to_datetime(frame["timestamp"], utc=True).dt.as_unit("ms").astype("int64").to_numpy()
    return match.group(1), _bars_from_frame(frame, open_ms)


def _merge(parts: list[Bars]) -> Bars:
    """Union of bars; later parts win on equal open times."""
    merged = Bars.concat(parts)
    order = np.argsort(merged.open_ms, kind="stable")
    merged = merged.take(order)
    return merged.take(np.r_[merged.open_ms[1:] != merged.open_ms[:-1], True])


def _expand(paths: Iterable[Path | str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in {
                ".feather", ".csv", ".zip", ".json", ".parquet"})
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"recording input {path} does not exist")
    return files


def sample_bars() -> tuple[dict[str, Bars], dict[str, Bars]]:
    """1m and 1d bars of the shipped sample, by symbol."""
    minutes = {}
    for path in sorted(SAMPLE_1M.glob("*.feather")):
        symbol = _SYMBOL_IN_NAME.match(path.name).group(1)  # type: ignore[union-attr]
        minutes[symbol] = read_freqtrade_feather(path, symbol)
    daily = dict(read_daily_csv(p) for p in sorted(SAMPLE_DAILY.glob("*_1d.csv")))
    return minutes, daily


class Recording:
    """Recorded 1m (and optional 1d) klines per symbol, shifted and clipped at the wall clock."""

    def __init__(self, minutes: Mapping[str, Bars] | None = None, daily: Mapping[str, Bars] | None = None, *,
                 shift_to_today: bool = False, ahead_ms: int = 0, clock: Callable[[], int] = now_ms) -> None:
        if minutes is None and daily is None:
            minutes, daily = sample_bars()
        minutes = dict(minutes or {})
        daily = dict(daily or {})
        self.symbols: tuple[str, ...] = tuple(sorted(set(minutes) | set(daily)))
        if not self.symbols:
            raise ValueError("the recording holds no klines")
        self.clock = clock
        self.shift_ms: int = 0
        if shift_to_today:
            basis = [b for b in minutes.values() if len(b)] or [b for b in daily.values() if len(b)]
            last = max((int(b.open_ms[-1]) for b in basis), default=None)
            if last is not None:
                now = clock()
                self.shift_ms = (ms_to_day(now) - ms_to_day(last)).days * DAY_MS
                if ahead_ms and last + MINUTE_MS + self.shift_ms < now + ahead_ms:
                    self.shift_ms += DAY_MS

        def shifted(source: Mapping[str, Bars], symbol: str) -> Bars:
            bars = source.get(symbol)
            return Bars(bars.open_ms + self.shift_ms, bars.cols) if bars is not None else Bars.empty()

        self._minutes = {s: shifted(minutes, s) for s in self.symbols}
        self._daily_file = {s: shifted(daily, s) for s in self.symbols}
        self._days = {s: self._build_days(s) for s in self.symbols}

    @classmethod
    def from_sample(cls, shift_to_today: bool = False, *, ahead_ms: int = 0,
                    clock: Callable[[], int] = now_ms) -> Recording:
        """The shipped real BTCUSDT/ETHUSDT sample (90 days of 1m, 1d since 2017); same as ``Recording()``."""
        return cls(*sample_bars(), shift_to_today=shift_to_today, ahead_ms=ahead_ms, clock=clock)

    @classmethod
    def from_paths(cls, paths: Iterable[Path | str], shift_to_today: bool = False, *, ahead_ms: int = 0,
                   clock: Callable[[], int] = now_ms) -> Recording:
        """Files or directories: daily ``*_1d.csv`` by header, everything else through ``readers.load``."""
        minute_parts: dict[str, list[Bars]] = {}
        daily_parts: dict[str, list[Bars]] = {}
        for path in _expand(paths):
            if is_daily_csv(path):
                symbol, bars = read_daily_csv(path)
                daily_parts.setdefault(symbol, []).append(bars)
                continue
            for symbol, bars in read_minutes(path).items():
                minute_parts.setdefault(symbol, []).append(bars)
        minutes = {s: _merge(p) for s, p in minute_parts.items()}
        daily = {s: _merge(p) for s, p in daily_parts.items()}
        return cls(minutes, daily, shift_to_today=shift_to_today, ahead_ms=ahead_ms, clock=clock)

    # -- what is served -------------------------------------------------------------------------------

    def _build_days(self, symbol: str) -> Bars:
        """Complete-day table: a day with all 1440 minutes is aggregated from them (what Binance's 1d is);
        otherwise the daily file's row; a partial minute day with no file row is aggregated as is."""
        agg, counts = aggregate(self._minutes[symbol], DAY_MS)
        from_file = self._daily_file[symbol]
        use_minutes = (counts == MINUTES_PER_DAY) | ~np.isin(agg.open_ms, from_file.open_ms)
        return _merge([from_file, agg.take(use_minutes)])

    def _served_minutes(self, symbol: str, now: int) -> Bars:
        bars = self._minutes[symbol]
        return bars.take(slice(0, int(np.searchsorted(bars.open_ms, now - MINUTE_MS, "right"))))

    def _check_symbol(self, symbol: str) -> None:
        if symbol not in self._minutes:
            raise KeyError(f"symbol {symbol!r} is not in the recording (it has {', '.join(self.symbols)})")

    def recorded_minutes(self, symbol: str) -> Bars:
        """All recorded 1m bars (shifted) regardless of the clock, for stream replays that run their own
        clock; REST answers must use :meth:`minutes`/:meth:`klines_rows`, which never serve the future."""
        self._check_symbol(symbol)
        return self._minutes[symbol]

    def minute_span(self, symbol: str) -> tuple[int, int]:
        """First and last served 1m open time (ms, shifted); LookupError when nothing is served yet."""
        self._check_symbol(symbol)
        served = self._served_minutes(symbol, self.clock())
        if not len(served):
            raise LookupError(f"no 1m klines of {symbol} are served yet")
        return int(served.open_ms[0]), int(served.open_ms[-1])

    def served_until(self, symbols: Sequence[str]) -> int:
        """End (ms, exclusive) of the minutes every one of ``symbols`` has served: a stream window ending later
        waits for minutes the recording does not hold."""
        return min(self.minute_span(s)[1] for s in symbols) + MINUTE_MS

    def day_span(self, symbol: str) -> tuple[int, int] | None:
        """First and last served 1d open time (ms, shifted), or None without daily data."""
        days = self.bars(symbol, "1d").open_ms
        return (int(days[0]), int(days[-1])) if len(days) else None

    def minutes(self, symbol: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Served 1m bars with open time in [start_ms, end_ms) in the canonical kline schema."""
        self._check_symbol(symbol)
        bars = self._served_minutes(symbol, self.clock())
        lo, hi = np.searchsorted(bars.open_ms, [start_ms, end_ms], "left")
        part = bars.take(slice(int(lo), int(hi)))
        frame = pd.DataFrame({k: part.cols[k] for k in FIELDS if k != "trades"})
        frame["trades"] = pd.array(part.cols["trades"], dtype="Int64")  # NaN -> <NA>
        frame["symbol"] = symbol
        frame["open_time"] = pd.Series(part.open_ms.astype("datetime64[ms]")).dt.tz_localize("UTC")
        frame["source"] = "replay"
        return frame[list(KLINE_COLUMNS)]

    def bars(self, symbol: str, interval: str) -> Bars:
        """Everything served right now at ``interval`` (the current interval's bar in progress)."""
        self._check_symbol(symbol)
        if interval not in SERVED_INTERVALS:
            raise ValueError(f"interval {interval!r} is not served (served: {', '.join(SERVED_INTERVALS)})")
        now = self.clock()
        minutes = self._served_minutes(symbol, now)
        if interval == "1m":
            return minutes
        if interval != "1d":
            return aggregate(minutes, interval_ms(interval))[0]
        days = self._days[symbol]
        today = now - now % DAY_MS
        complete = days.take(slice(0, int(np.searchsorted(days.open_ms, today, "left"))))
        live = minutes.take(slice(int(np.searchsorted(minutes.open_ms, today, "left")), None))
        return Bars.concat([complete, aggregate(live, DAY_MS)[0]])

    def klines_rows(self, symbol: str, interval: str, start_ms: int | None, end_ms: int | None,
                    limit: int) -> list[list]:
        """Binance ``/api/v3/klines`` rows. Like Binance, start_ms and end_ms are both inclusive on the
        open time; without start_ms the most recent ``limit`` rows up to end_ms are returned."""
        if interval == "1m":  # the hot path: slice before building anything
            self._check_symbol(symbol)
            bars = self._served_minutes(symbol, self.clock())
        else:
            bars = self.bars(symbol, interval)
        times = bars.open_ms
        hi = len(times) if end_ms is None else int(np.searchsorted(times, end_ms, "right"))
        if start_ms is None:
            lo = max(0, hi - limit)
        else:
            lo = int(np.searchsorted(times, start_ms, "left"))
            hi = max(lo, min(hi, lo + limit))
        return rows_of(bars.take(slice(lo, hi)), interval_ms(interval))


def _texts(values: np.ndarray) -> list[str | None]:
    """Column of decimal strings (None for NaN); repr is the fast path, exponents are rewritten."""
    nan = np.isnan(values)
    if nan.all():
        return [None] * len(values)
    out: list[str | None] = list(map(repr, values.tolist()))
    mag = np.abs(np.where(nan, 1.0, values))
    for i in np.flatnonzero(nan | ((mag < 1e-4) & (mag != 0)) | (mag >= 1e16)).tolist():
        out[i] = None if nan[i] else decimal_str(float(values[i]))
    return out


def rows_of(bars: Bars, step_ms: int) -> list[list]:
    """12-field Binance kline rows; decimals as shortest round-trip strings, unknown fields as null."""
    c = bars.cols
    trades = c["trades"]
    counts: list[int | None] = ([None] * len(trades) if np.isnan(trades).all()
                                else [None if v != v else int(v) for v in trades.tolist()])
    columns = zip(bars.open_ms.tolist(), _texts(c["open"]), _texts(c["high"]), _texts(c["low"]),
                  _texts(c["close"]), _texts(c["volume"]), _texts(c["quote_volume"]), counts,
                  _texts(c["taker_buy_base"]), _texts(c["taker_buy_quote"]), strict=True)
    return [[t, o, h, lo, cl, v, t + step_ms - 1, qv, n, tb, tq, "0"]
            for t, o, h, lo, cl, v, qv, n, tb, tq in columns]

