"""Property-based tests of every reader (hypothesis): random files and mutated real files.

Properties: a reader never raises anything but ValueError naming the file; no implausible row is ever
returned as good (checked here independently of ``schema.validate``); and in a real file with some rows made
implausible, every untouched row is kept with its exact values and no touched row is.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto_lambda import formats, readers
from tests.support import dump_lines, real_rows

ROWS = real_rows().iloc[:120].reset_index(drop=True)  # two real hours of BTCUSDT, 2025-06-01
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAY0 = int(pd.Timestamp("2025-06-01", tz="UTC").timestamp() * 1000)
FLOOR = int(pd.Timestamp("2010-01-01", tz="UTC").timestamp() * 1000)
FAR = int(pd.Timestamp("2200-01-01", tz="UTC").timestamp() * 1000)


def assert_plausible(good: pd.DataFrame, period: tuple[int, int] | None = None) -> None:
    """The issue's rules, restated here so a bug in schema.validate cannot hide itself."""
    if not len(good):
        return
    ms = good["open_time"].dt.as_unit("ms").astype("int64")
    now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
    assert ((ms % 60_000) == 0).all() and (ms <= now + 60_000).all() and (ms >= FLOOR).all()
    if period:
        assert ((ms >= period[0]) & (ms < period[1])).all()
    prices = good[["open", "high", "low", "close"]].to_numpy()
    assert np.isfinite(prices).all() and (prices > 0).all()
    assert (good["low"] <= good[["open", "close"]].min(axis=1)).all()
    assert (good[["open", "close"]].max(axis=1) <= good["high"]).all()
    assert (good["volume"] >= 0).all() and np.isfinite(good["volume"]).all()
    assert (good["trades"].dropna() >= 0).all()
    assert good["open_time"].is_unique


def load_or_refuse(path: Path, symbol: str | None = None):
    """Either a result whose good rows are plausible, or a ValueError that names the file."""
    try:
        result = readers.load(path, symbol=symbol)
    except ValueError as exc:
        assert str(path) in str(exc), exc
        return None
    assert_plausible(result.good, formats.declared_period(path))
    return result


# --------------------------------------------------------------------------------------------- mutations

def _shift(fields: list[str], delta: int) -> None:
    fields[0] = str(int(fields[0]) + delta)


# Each makes a dump/REST row (12 fields, ms times) implausible in a way a reader must catch.
ROW_MUTATIONS = {
    "zero_price": lambda f: f.__setitem__(1, "0"),
    "negative_low": lambda f: f.__setitem__(3, "-1"),
    "text_price": lambda f: f.__setitem__(4, "abc"),
    "nan_close": lambda f: f.__setitem__(4, "nan"),
    "empty_high": lambda f: f.__setitem__(2, ""),
    "infinite_high": lambda f: f.__setitem__(2, "1e400"),
    "high_below_low": lambda f: f.__setitem__(2, str(float(f[3]) / 2)),
    "negative_volume": lambda f: f.__setitem__(5, "-1.5"),
    "negative_trades": lambda f: f.__setitem__(8, "-3"),
    "fractional_trades": lambda f: f.__setitem__(8, "1.5"),
    "text_trades": lambda f: f.__setitem__(8, "many"),
    "negative_quote_volume": lambda f: f.__setitem__(7, "-2"),
    "close_before_open": lambda f: f.__setitem__(6, str(int(f[0]) - 1)),
    "text_close_time": lambda f: f.__setitem__(6, "soon"),
    "misaligned_open": lambda f: _shift(f, 30_000),
    "open_in_2200": lambda f: (f.__setitem__(0, str(FAR)), f.__setitem__(6, str(FAR + 59_999))),
    "open_before_listing": lambda f: (f.__setitem__(0, "946684800000"), f.__setitem__(6, "946684859999")),
    "open_a_year_early": lambda f: (_shift(f, -365 * 86_400_000), f.__setitem__(6, str(int(f[0]) + 59_999))),
    "unparseable_open": lambda f: f.__setitem__(0, "1e30"),
    "short_line": lambda f: f.__delitem__(slice(5, None)),
    "long_line": lambda f: f.append("extra"),
}
PERIOD_ONLY = {"open_a_year_early"}  # plausible by itself: only a file's declared period refutes it
mutations = st.dictionaries(st.integers(0, len(ROWS) - 1), st.sampled_from(sorted(ROW_MUTATIONS)),
                            min_size=1, max_size=len(ROWS) - 1)
noise = st.lists(st.text(alphabet="abcxyz ;,.\"'-\t", min_size=1, max_size=40), max_size=5)


def mutated_fields(muts: dict[int, str], allowed: set[str]) -> tuple[list[list[str]], set[int]]:
    """The real rows as 12 string fields (ms times), with the chosen rows mutated; returns the touched rows."""
    rows = [line.split(",") for line in dump_lines(ROWS, "ms")]
    touched = set()
    for i, name in muts.items():
        if name in allowed:
            ROW_MUTATIONS[name](rows[i])
            touched.add(i)
    return rows, touched


def assert_kept_exactly(result, touched: set[int]) -> None:
    kept = ROWS.drop(index=sorted(touched)).reset_index(drop=True)
    good = result.good.reset_index(drop=True)
    assert len(good) == len(kept), (len(good), len(kept), sorted(result.bad["reason"]))
    assert (good["open_time"].to_numpy() == kept["date"].dt.as_unit("ms").to_numpy()).all()
    for col in ("open", "high", "low", "close", "volume"):
        assert (good[col].to_numpy() == kept[col].to_numpy()).all(), col
    assert len(result.bad) >= len(touched)


@SETTINGS
@given(muts=mutations, junk=noise, as_zip=st.booleans(), micro=st.booleans())
def test_mutated_real_dump(muts, junk, as_zip, micro) -> None:
    rows, touched = mutated_fields(muts, set(ROW_MUTATIONS))
    if micro:  # the 2025+ dumps have µs times: scale both time fields of well-formed rows
        for f in rows:
            for k in (0, 6):
                if len(f) == 12 and f[k].isdigit():
                    f[k] = str(int(f[k]) * 1000)
    text = "\n".join([",".join(f) for f in rows] + junk) + "\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("BTCUSDT-1m-2025-06-01." + ("zip" if as_zip else "csv"))
        if as_zip:
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("BTCUSDT-1m-2025-06-01.csv", text)
        else:
            path.write_text(text)
        result = load_or_refuse(path)
        assert result is not None
        assert_kept_exactly(result, touched)


@SETTINGS
@given(muts=mutations, nulls=st.booleans())
def test_mutated_real_rest_rows_file_and_exchange_path(muts, nulls) -> None:
    # a longer row from the exchange is its 12 fields plus ones Binance may add; a file's row must have 12
    rows, touched = mutated_fields(muts, set(ROW_MUTATIONS) - PERIOD_ONLY - {"long_line"})
    if nulls:  # the replay exchange serves null where a recording lacks quote volume, trades, taker volumes
        for i in set(range(len(rows))) - touched:
            rows[i][7:11] = [None] * 4
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "BTCUSDT-klines.json"
        path.write_text(json.dumps(rows))
        result = load_or_refuse(path, symbol="BTCUSDT")
        assert result is not None
        assert_kept_exactly(result, touched)
    from_exchange = readers.validate_rest_rows(rows, "BTCUSDT", interval_ms=60_000, source_file="rest")
    assert_plausible(from_exchange.good)
    assert_kept_exactly(from_exchange, touched)


KAGGLE_MUTATIONS = {"zero_price", "negative_low", "text_price", "nan_close", "empty_high", "infinite_high",
                    "high_below_low", "negative_volume", "misaligned_open", "open_in_2200", "open_before_listing",
                    "unparseable_open", "short_line", "long_line"}


@SETTINGS
@given(muts=mutations, junk=noise)
def test_mutated_real_kaggle_csv(muts, junk) -> None:
    rows, touched = mutated_fields(muts, KAGGLE_MUTATIONS)
    lines = []
    for f in rows:  # Kaggle/Bitstamp: Timestamp (seconds), O, H, L, C, V
        if len(f) < 6:
            lines.append(",".join(f))
            continue
        seconds = str(int(f[0]) / 1000) if f[0].lstrip("-").isdigit() else f[0]
        lines.append(",".join([seconds, *f[1:6], *(["extra"] if len(f) > 12 else [])]))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bitstamp.csv"
        path.write_text("\n".join(["Timestamp,Open,High,Low,Close,Volume", *lines, *junk]) + "\n")
        result = load_or_refuse(path, symbol="BTCUSDT")
        assert result is not None
        assert_kept_exactly(result, touched)


FEATHER_VALUES = st.sampled_from([0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e308])


@SETTINGS
@given(bad=st.dictionaries(st.integers(0, len(ROWS) - 1),
                           st.tuples(st.sampled_from(["open", "high", "low", "close", "volume", "date"]),
                                     FEATHER_VALUES), min_size=1, max_size=30))
def test_mutated_real_freqtrade_feather(bad) -> None:
    frame = ROWS.copy()
    touched = set()
    for i, (col, value) in bad.items():
        if col == "date":
            frame.loc[i, "date"] = pd.Timestamp("2200-01-01", tz="UTC") if value > 0 else pd.NaT
        elif (col in ("volume", "high") and value == 1e308) or (col == "volume" and value == 0.0):
            continue  # a huge high or volume, a zero volume: unusual, not implausible
        else:
            frame.loc[i, col] = value
        touched.add(i)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "BTC_USDT-1m.feather"
        frame.to_feather(path)
        result = load_or_refuse(path)
        assert result is not None
        assert_kept_exactly(result, touched)


NAMES = ["BTCUSDT-1m-2025-06-01.csv", "BTCUSDT-1m-2025-06.zip", "BTCUSDT-klines.json", "BTC_USDT-1m.feather",
         "bitstamp.csv", "BTCUSDT-1m-2025-06.csv"]
TOKENS = ["1748736000000", "1748736059999", "1748736000000000", "1748736000", "105000.5", "104000", "0", "-1",
          "nan", "inf", "", "1e400", "abc", '"', "7", "-60000", "99999999999999999999", "1.5", "0.0001"]
csv_like = st.lists(st.lists(st.sampled_from(TOKENS), min_size=5, max_size=13).map(",".join), max_size=30)


@SETTINGS
@given(name=st.sampled_from(NAMES), body=st.one_of(st.binary(max_size=3000), csv_like.map(
    lambda lines: "\n".join(lines).encode())), header=st.sampled_from([b"", b"Timestamp,Open,High,Low,Close,Volume\n",
                                                                      b"open_time,open,high,low,close,volume\n"]))
def test_random_files_never_crash_or_yield_implausible_rows(name, body, header) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(header + body)
        load_or_refuse(path, symbol="BTCUSDT")


def test_listing_floor_and_period_are_what_the_readme_says() -> None:
    from crypto_lambda.schema import listing_floor_ms

    assert listing_floor_ms("BTCUSDT") == FLOOR
    assert listing_floor_ms("ETHUSDT") == int(pd.Timestamp("2015-07-30", tz="UTC").timestamp() * 1000)
    december = [int(pd.Timestamp(d, tz="UTC").timestamp() * 1000) for d in ("2024-12-01", "2025-01-01")]
    assert formats.declared_period(Path("BTCUSDT-1m-2024-12.zip")) == tuple(december)
    assert formats.declared_period(Path("BTCUSDT-1m-2025-06-01.csv")) == (DAY0, DAY0 + 86_400_000)
    assert formats.declared_period(Path("bitstamp.csv")) is None
    assert dt.date(2010, 1, 1) == pd.Timestamp(FLOOR, unit="ms").date()
