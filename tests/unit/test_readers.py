"""Readers against the real shipped sample: every other format is written from those real rows, so a
reader is right when it gives back exactly the sample's values."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

import pandas as pd
import pytest

from crypto_lambda import readers
from crypto_lambda.timeutil import normalize_epoch_to_ms
from tests.support import (
    BTC_FEATHER,
    DUMP_HEADER,
    OHLCV,
    dump_lines,
    real_rows,
    write_checksum,
    write_lines,
    write_zip,
)


def assert_matches_sample(good: pd.DataFrame, rows: pd.DataFrame) -> None:
    assert len(good) == len(rows)
    expected_ms = rows["date"].dt.as_unit("ms").astype("int64").to_numpy()
    assert (good["open_time"].dt.as_unit("ms").astype("int64").to_numpy() == expected_ms).all()
    for col in OHLCV:
        assert (good[col].to_numpy() == rows[col].to_numpy()).all(), col


# ------------------------------------------------------------------------------------------------ feather

def test_feather_sample_is_read_completely_and_fast() -> None:
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        result = readers.load(BTC_FEATHER)
        timings.append(time.perf_counter() - started)
    good = result.good
    assert len(good) == 130_708 and len(result.bad) == 0 and result.duplicates == 0
    assert good["open_time"].iloc[0] == pd.Timestamp("2025-05-20 00:00", tz="UTC")
    assert good["open_time"].iloc[-1] == pd.Timestamp("2025-08-18 18:27", tz="UTC")
    assert set(good["symbol"]) == {"BTCUSDT"} and set(good["source"]) == {"freqtrade"}
    assert str(good["open_time"].dtype) == "datetime64[ms, UTC]"
    assert min(timings) < 2.0, timings


def test_freqtrade_native_name_and_bad_rows(tmp_path: Path) -> None:
    rows = real_rows()
    rows.loc[10, "high"] = rows.loc[10, "low"] - 1  # high < low
    rows.loc[20, "close"] = float("nan")
    path = tmp_path / "BTC_USDT-1m.feather"
    rows.to_feather(path)
    result = readers.load(path)
    assert len(result.good) == 1438 and set(result.good["symbol"]) == {"BTCUSDT"}
    assert sorted(result.bad["reason"]) == ["nan_or_unparseable_value", "ohlc_violation"]
    assert result.bad["raw"].str.startswith("2025-06-01 00:").all()
    assert set(result.bad["source_file"]) == {str(path)}
    assert set(readers.load(path, symbol="ETHUSDT").good["symbol"]) == {"ETHUSDT"}


# ------------------------------------------------------------------------------------------- Binance dumps

def test_dump_microseconds_and_milliseconds_read_identically(tmp_path: Path) -> None:
    rows = real_rows()
    us = readers.load(write_lines(tmp_path / "BTCUSDT-1m-2025-06-01.csv", dump_lines(rows, "us")))
    ms_dir = tmp_path / "ms"
    ms_dir.mkdir()
    ms = readers.load(write_lines(ms_dir / "BTCUSDT-1m-2025-06-01.csv", dump_lines(rows, "ms")))
    mixed_dir = tmp_path / "mixed"
    mixed_dir.mkdir()
    mixed = readers.load(write_lines(mixed_dir / "BTCUSDT-1m-2025-06-01.csv", dump_lines(rows, "mixed")))
    pd.testing.assert_frame_equal(us.good, ms.good)
    pd.testing.assert_frame_equal(us.good, mixed.good)
    assert_matches_sample(us.good, rows)
    assert len(us.bad) == 0 and us.duplicates == 0
    assert set(us.good["source"]) == {"binance_dump"} and set(us.good["symbol"]) == {"BTCUSDT"}
    assert us.good["trades"].iloc[:3].tolist() == [1, 2, 3]
    assert us.good["quote_volume"].notna().all() and us.good["taker_buy_quote"].notna().all()


def test_epoch_to_ms_agrees_with_timeutil() -> None:
    samples = [1_325_317_920, 1_748_736_000_000, 1_748_736_000_000_000, 1_748_736_000_000_000_000]
    assert readers.epoch_to_ms(samples).tolist() == [normalize_epoch_to_ms(v) for v in samples]
    floats = readers.epoch_to_ms(["1325317920.0", "1748736000000000", "x"])
    assert floats.iloc[:2].tolist() == [1_325_317_920_000, 1_748_736_000_000] and pd.isna(floats.iloc[2])


def test_zip_with_checksum_and_header(tmp_path: Path) -> None:
    rows = real_rows()
    path = write_zip(tmp_path / "BTCUSDT-1m-2025-06-01.zip", [DUMP_HEADER, *dump_lines(rows)])
    write_checksum(path)
    result = readers.load(path)
    assert_matches_sample(result.good, rows)
    assert len(result.bad) == 0  # the header row is tolerated, not quarantined


def test_checksum_mismatch_names_file_and_both_hashes(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "BTCUSDT-1m-2025-06-01.zip", dump_lines(real_rows()))
    wrong = "0" * 64
    write_checksum(path, wrong)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError) as err:
        readers.load(path)
    assert str(path) in str(err.value) and wrong in str(err.value) and actual in str(err.value)


def test_malformed_lines_are_quarantined_and_neighbours_survive(tmp_path: Path) -> None:
    rows = real_rows()
    lines = dump_lines(rows)
    fields = [line.split(",") for line in lines]

    def edit(i: int, col: int, value: str) -> str:
        copy = list(fields[i])
        copy[col] = value
        return ",".join(copy)

    broken = {
        100: (edit(100, 2, "abc"), "nan_or_unparseable_value"),  # text in price
        200: (edit(200, 2, str(float(fields[200][3]) - 5)), "ohlc_violation"),  # high < low
        300: (edit(300, 0, str(int(fields[300][0]) + 30_000_000)), "open_time_not_minute_aligned"),
        400: (edit(400, 5, "-1.5"), "negative_volume"),
        500: (edit(500, 4, "NaN"), "nan_or_unparseable_value"),
        600: (",".join(fields[600][:5]), "wrong_field_count"),  # short line
        700: (lines[700] + ",extra", "wrong_field_count"),
        800: (edit(800, 1, '"105000'), "nan_or_unparseable_value"),  # a stray quote must not eat lines
        900: ("garbage", "wrong_field_count"),
        1000: (edit(1000, 0, "1e30"), "unparseable_open_time"),  # would overflow a timestamp
        1100: (edit(1100, 0, fields[1100][0][:-3] + ".5"), "unparseable_open_time"),  # fractional ms
        1200: (edit(1200, 0, "-60000"), "unparseable_open_time"),
    }
    for i, (text, _) in broken.items():
        lines[i] = text
    path = write_lines(tmp_path / "BTCUSDT-1m-2025-06-01.csv", lines)
    result = readers.load(path)

    assert len(result.good) == len(rows) - len(broken)
    assert len(result.bad) == len(broken)
    by_raw = dict(zip(result.bad["raw"], result.bad["reason"], strict=True))
    assert by_raw == {text: reason for text, reason in broken.values()}
    assert set(result.bad["source_file"]) == {str(path)}
    survivors = rows.drop(index=list(broken)).reset_index(drop=True)
    assert_matches_sample(result.good, survivors)
    aligned = result.bad.set_index("reason").loc["negative_volume", "open_time_ms"]
    assert aligned == int(fields[400][0]) // 1000  # quarantine keeps the normalised open time


def test_duplicates_collapse(tmp_path: Path) -> None:
    rows = real_rows()
    lines = dump_lines(rows)
    path = write_lines(tmp_path / "BTCUSDT-1m-2025-06-01.csv", lines + lines[:25])
    result = readers.load(path)
    assert result.duplicates == 25 and len(result.good) == len(rows)
    assert result.good["open_time"].is_unique


def test_monthly_dump_loads_fast(tmp_path: Path) -> None:
    rows = real_rows(dt.date(2025, 7, 1), dt.date(2025, 7, 31))
    assert len(rows) == 44_640
    path = write_lines(tmp_path / "BTCUSDT-1m-2025-07.csv", dump_lines(rows))
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        result = readers.load(path)
        timings.append(time.perf_counter() - started)
    assert len(result.good) == 44_640 and len(result.bad) == 0
    assert min(timings) < 1.0, timings


# ----------------------------------------------------------------------------------------- Kaggle and REST

def test_kaggle_csv_needs_symbol_and_matches_sample(tmp_path: Path) -> None:
    rows = real_rows()
    seconds = rows["date"].dt.as_unit("s").astype("int64")
    body = [f"{float(t)},{o},{h},{lo},{c},{v}" for t, o, h, lo, c, v in
            zip(seconds, rows.open, rows.high, rows.low, rows.close, rows.volume, strict=True)]
    body[5] = "1748736300.0,1,2"
    path = write_lines(tmp_path / "bitstamp.csv", body, header="Timestamp,Open,High,Low,Close,Volume")
    with pytest.raises(ValueError, match="bitstamp.csv.*symbol"):
        readers.load(path)
    result = readers.load(path, symbol="BTCUSDT")
    assert_matches_sample(result.good, rows.drop(index=5).reset_index(drop=True))
    assert result.bad["reason"].tolist() == ["wrong_field_count"]
    assert set(result.good["source"]) == {"kaggle_csv"}


def test_rest_json_reads_like_the_dump(tmp_path: Path) -> None:
    rows = real_rows()
    lines = dump_lines(rows, "ms")
    payload = [[int(f[0]), *f[1:6], int(f[6]), f[7], int(f[8]), f[9], f[10], f[11]]
               for f in (line.split(",") for line in lines)]
    payload.append([1, 2, 3])
    path = tmp_path / "BTCUSDT-1m-2025-06-01.json"
    path.write_text(json.dumps(payload))
    result = readers.load(path)
    dump = readers.load(write_lines(tmp_path / "BTCUSDT-1m-2025-06-01.csv", lines))
    expected = dump.good.assign(source="rest")
    pd.testing.assert_frame_equal(result.good, expected)
    assert result.bad["reason"].tolist() == ["wrong_field_count"]


# --------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize(("name", "content", "message"), [
    ("notes.txt", "hello", "unsupported file type"),
    ("BTCUSDT-1m-2025-06.parquet", "x", "unsupported file type"),
    ("prices.csv", "date;price\n2025-06-01;1\n", "unrecognised CSV layout"),
    ("BTCUSDT-1h-2025-06.csv", "1748736000000,1,1,1,1,1,1,1,1,1,1,0\n", "interval '1h'"),
    ("empty.csv", "", "empty"),
    ("BTCUSDT-1m-2025-06.zip", "not a zip", "not a valid zip"),
    ("BTCUSDT-1m-2025-06.json", '{"code": -1121, "msg": "Invalid symbol."}', "Invalid symbol"),
    ("BTCUSDT-1m-broken.feather", "nope", "feather"),
])
def test_wrong_formats_name_the_file(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError) as err:
        readers.load(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_unknown_formats_list_what_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="accepted formats: Binance dump"):
        readers.load(path)


def test_missing_file_and_bad_symbol(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        readers.load(tmp_path / "nope.csv")
    path = write_lines(tmp_path / "data.csv", dump_lines(real_rows())[:3])
    with pytest.raises(ValueError, match="data.csv.*symbol"):
        readers.load(path)
    with pytest.raises(ValueError, match="invalid"):
        readers.load(path, symbol="../etc")
    assert len(readers.load(path, symbol="BTCUSDT").good) == 3
