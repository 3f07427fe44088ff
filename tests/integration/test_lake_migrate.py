"""Upgrading a home written by the old file-per-day layout (issue #13 section 8) on real Spark, Delta and
delta-rs: every dataset kind of the old layout is written here by a small frozen copy of the old writers from
the shipped sample, migrated, and compared row for row; a rerun is a no-op; a corrupt or misnamed old file
fails the migration, naming it, with every old file still in place."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crypto_lambda.errors import Fault
from crypto_lambda.lake import legacy, migrate, read
from crypto_lambda.schema import DAILY_SCHEMA, KLINE_SCHEMA, QUARANTINE_SCHEMA, REALIZED_VOL_SCHEMA
from crypto_lambda.timeutil import day_start_ms
from replay_exchange.recording import sample_bars

SYMBOLS = ("BTCUSDT", "ETHUSDT")
DAYS = [dt.date(2025, 5, 21) + dt.timedelta(days=i) for i in range(3)]
STREAM_QUARANTINE = pa.schema([("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
                               ("kafka_ts", pa.timestamp("ms", tz="UTC")), ("reason", pa.string()),
                               ("raw", pa.binary()), ("batch_id", pa.int64())])


# -- the frozen old writer (what crypto_lambda/lake/files.py and the file sink produced) --------------------------


def _minutes(symbol: str, day: dt.date) -> pd.DataFrame:
    bars = _SAMPLE[0][symbol]
    keep = (bars.open_ms >= day_start_ms(day)) & (bars.open_ms < day_start_ms(day + dt.timedelta(days=1)))
    frame = pd.DataFrame({"symbol": symbol, "open_time": pd.to_datetime(bars.open_ms[keep], unit="ms", utc=True)})
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = bars.cols[col][keep]
    frame["quote_volume"], frame["trades"] = np.nan, pd.array([None] * len(frame), dtype="Int64")
    frame["taker_buy_base"], frame["taker_buy_quote"], frame["source"] = np.nan, np.nan, "freqtrade"
    return frame


_SAMPLE = sample_bars()


def _write(table: pa.Table | pd.DataFrame, path: Path, schema: pa.Schema | None = None) -> None:
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, schema=schema, preserve_index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def _daily(minutes: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    return pd.DataFrame({"symbol": [minutes.symbol.iloc[0]], "date": [day], "open": [minutes.open.iloc[0]],
                         "high": [minutes.high.max()], "low": [minutes.low.min()], "close": [minutes.close.iloc[-1]],
                         "volume": [minutes.volume.sum()], "quote_volume": [None], "trades": [None],
                         "minutes_present": [len(minutes)], "source": ["minutes"]})


def build_old_home(home: Path, full: bool = True) -> dict[str, pd.DataFrame]:
    """Every dataset kind of the old layout; returns the rows written per dataset (what must survive)."""
    lake, written = home / "lake", {}
    raw, daily = [], []
    for symbol in SYMBOLS:
        for day in DAYS:
            minutes = _minutes(symbol, day)
            _write(minutes, lake / "raw_klines_1m" / symbol / f"{day}.parquet", KLINE_SCHEMA)
            _write(_daily(minutes, day), lake / "daily_ohlcv" / symbol / f"{day}.parquet", DAILY_SCHEMA)
            raw.append(minutes.assign(date=day))
            daily.append(_daily(minutes, day))
    written["raw_klines_1m"], written["daily_ohlcv"] = pd.concat(raw), pd.concat(daily)
    if not full:
        return written
    vols, history = [], []
    for symbol in SYMBOLS:  # per-symbol file, per-day files plus history.parquet beside them
        bars = _SAMPLE[1][symbol]
        hist = pd.DataFrame({"symbol": symbol, "date": pd.to_datetime(bars.open_ms[:5], unit="ms").date,
                             **{c: bars.cols[c][:5] for c in ("open", "high", "low", "close", "volume")},
                             "quote_volume": None, "trades": None, "minutes_present": None, "source": "1d"})
        _write(hist, lake / "daily_history_1d" / f"{symbol}.parquet", DAILY_SCHEMA)
        history.append(hist)
        for day in [None, *DAYS]:
            row = pd.DataFrame({"symbol": [symbol], "date": [day or dt.date(2025, 5, 1)], "rv": [1e-4],
                                "rvol": [0.01], "minutes_used": [1440 if day else None], "range_var": [2e-4],
                                "variance": [1e-4], "source": ["minutes" if day else "range_gk"]})
            _write(row, lake / "realized_vol_daily" / symbol / f"{day or 'history'}.parquet", REALIZED_VOL_SCHEMA)
            vols.append(row)
        metrics = pd.DataFrame({"model": ["naive", "ewma"], "mape": [2.2, 2.1], "champion": [False, True]})
        _write(metrics, lake / "forecast_metrics" / f"{symbol}.parquet")
    written["daily_history_1d"], written["realized_vol_daily"] = pd.concat(history), pd.concat(vols)
    written["speed_klines_1m"] = _file_sink(lake / "speed_klines_1m")
    gaps = pa.table({"symbol": ["BTCUSDT"], "from_ms": [1], "to_ms": [2], "reason": ["reconnect"]})
    _write(gaps, lake / "speed_gaps" / "batch-000000000001.parquet")
    bad = pd.DataFrame({"source_file": ["x.csv"], "symbol": ["BTCUSDT"], "open_time_ms": [7], "reason": ["nan"],
                        "raw": ["1,2,nan"]})
    _write(bad, home / "quarantine" / "import" / "20250521T010203-abcd1234.parquet", QUARANTINE_SCHEMA)
    stream = pa.table({"topic": ["binance.trades"], "partition": pa.array([0], pa.int32()), "offset": [42],
                       "kafka_ts": pa.array([0], pa.timestamp("ms", tz="UTC")), "reason": ["bad_json"],
                       "raw": [b"{not json \xff"], "batch_id": [3]}, schema=STREAM_QUARANTINE)
    _write(stream, home / "quarantine" / "stream" / "batch-000000000003.parquet")
    return written


def _file_sink(out: Path) -> pd.DataFrame:
    """Spark's file sink: part files under symbol=/date= (no such columns inside), committed by a log whose
    URIs name the home the files were first written in (a copied home must still read its own), plus a part
    file a killed batch left behind that no log entry lists."""
    committed = []
    lines = ["v1"]
    for symbol in SYMBOLS:
        minutes = _minutes(symbol, DAYS[0]).head(30)
        # The old release's BAR_COLUMNS without the partition columns (symbol, date), as its file sink wrote them.
        bars = minutes[["open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades",
                        "taker_buy_base", "taker_buy_quote"]].assign(source="stream")
        bars["open_time"] = bars["open_time"].astype("datetime64[us, UTC]")  # Spark writes microseconds
        rel = f"symbol={symbol}/date={DAYS[0]}/part-00000-{symbol}.c000.snappy.parquet"
        _write(bars, out / rel)
        lines.append(json.dumps({"path": f"file:///elsewhere/home/lake/speed_klines_1m/{rel}", "size": 1,
                                 "isDir": False, "modificationTime": 0, "blockReplication": 1, "blockSize": 1,
                                 "action": "add"}))
        committed.append(bars.assign(symbol=symbol, date=DAYS[0]))
    _write(_minutes("BTCUSDT", DAYS[1]).head(5)[["open_time", "open"]],
           out / f"symbol=BTCUSDT/date={DAYS[1]}/part-00000-orphan.c000.snappy.parquet")
    (out / "_spark_metadata").mkdir(parents=True)
    (out / "_spark_metadata" / "0").write_text("\n".join(lines) + "\n")
    return pd.concat(committed)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- tests --------------------------------------------------------------------------------------------------------


def test_migrate_old_home(spark, tmp_path: Path) -> None:
    home = tmp_path / "home"
    written = build_old_home(home)
    old_tree = _tree(home)
    with pytest.raises(Exception, match="crypto-lambda lake migrate"):
        legacy.check_migrated(home)

    done = {m.name: m for m in migrate.migrate(home, spark)}

    assert set(done) == {"raw_klines_1m", "daily_ohlcv", "daily_history_1d", "realized_vol_daily", "forecast_metrics",
                         "speed_klines_1m", "speed_gaps", "quarantine"}
    lake = home / "lake"
    assert done["raw_klines_1m"].rows == len(written["raw_klines_1m"]) == 6 * 1440
    assert done["raw_klines_1m"].groups == 6 and done["realized_vol_daily"].files == 8
    # the rows, read back by delta-rs, are the ones the old files held (independently of the checksums)
    raw = read.read(lake, "raw_klines_1m")
    expected = written["raw_klines_1m"].sort_values(["symbol", "open_time"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(raw[["symbol", "open", "close", "volume"]],
                                  expected[["symbol", "open", "close", "volume"]])
    assert raw.open_time.tolist() == expected.open_time.tolist()
    assert raw.date.tolist() == expected.date.tolist()
    assert read.file_count(lake, "raw_klines_1m") == 2  # one file per (symbol, month), not per day
    assert len(read.read(lake, "daily_ohlcv")) == 6 and len(read.read(lake, "realized_vol_daily")) == 8
    assert read.read(lake, "daily_history_1d").close.tolist() == written["daily_history_1d"].close.tolist()
    quarantine = read.read(lake, "quarantine").sort_values("kind")
    assert quarantine.kind.tolist() == ["import", "stream"]
    assert quarantine.raw.tolist() == ["1,2,nan", "{not json \\xff"]
    assert quarantine.source_file.tolist() == ["x.csv", "binance.trades:0:42"]
    # the file sink: committed files only, partition values from the path, this home's files
    from deltalake import DeltaTable

    speed = DeltaTable(str(lake / "speed_klines_1m")).to_pandas()
    assert len(speed) == len(written["speed_klines_1m"]) == 60
    assert sorted(speed.symbol.unique()) == list(SYMBOLS) and set(speed.date) == {DAYS[0]}
    assert len(DeltaTable(str(lake / "forecast_metrics")).to_pandas()) == 4

    # old files moved aside intact, only Delta tables left in lake/, a rerun is a no-op
    backup = next((home / migrate.BACKUP).iterdir())
    moved = _tree(backup)
    assert all(moved[key] == digest for key, digest in old_tree.items()), "an old file changed on the way"
    assert not (home / "quarantine").exists() and not (home / migrate.STAGING).exists()
    assert all((lake / name / "_delta_log").is_dir() for name in done if name != "quarantine")
    legacy.check_migrated(home)
    version = read.version(lake, "raw_klines_1m")
    assert migrate.migrate(home, spark) == []
    assert read.version(lake, "raw_klines_1m") == version


def test_corrupt_old_file_moves_nothing(spark, tmp_path: Path) -> None:
    home = tmp_path / "home"
    build_old_home(home, full=False)
    victim = home / "lake" / "raw_klines_1m" / "ETHUSDT" / f"{DAYS[1]}.parquet"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # a torn file
    before = _tree(home)

    # daily_ohlcv (sorted first) is staged by Spark before raw_klines_1m's torn file is reached
    with pytest.raises(migrate.MigrationError, match=f"raw_klines_1m: old file .*ETHUSDT/{DAYS[1]}.parquet"):
        migrate.migrate(home, spark)
    assert _tree(home) == before and not (home / migrate.STAGING).exists()
    assert not (home / "lake" / "daily_ohlcv" / "_delta_log").exists()

    # a file whose rows lie in another day than its name says
    _write(_minutes("ETHUSDT", DAYS[2]), victim, KLINE_SCHEMA)
    with pytest.raises(migrate.MigrationError, match=f"raw_klines_1m: ETHUSDT {DAYS[1]}: 1440 of 1440 rows"):
        migrate.migrate(home, spark)
    assert legacy.old_layout_datasets(home) == ["daily_ohlcv", "raw_klines_1m"]


def test_checksums_name_the_day_that_differs() -> None:
    frame = _minutes("BTCUSDT", DAYS[0]).assign(date=DAYS[0])
    old = pa.Table.from_pandas(frame, preserve_index=False)
    tampered = frame.copy()
    tampered.loc[100, "close"] += 0.01
    new = pa.Table.from_pandas(tampered.iloc[::-1], preserve_index=False)  # order must not matter, values do
    columns = old.column_names
    migrate.compare("raw_klines_1m", migrate.checksums(old, columns),
                    migrate.checksums(pa.Table.from_pandas(frame.iloc[::-1], preserve_index=False), columns))
    with pytest.raises(migrate.MigrationError,
                       match=f"BTCUSDT {DAYS[0]}: old 1440 rows, table 1440 rows \\(same count, different values"):
        migrate.compare("raw_klines_1m", migrate.checksums(old, columns), migrate.checksums(new, columns))
    with pytest.raises(migrate.MigrationError, match="old 1440 rows, table 1439 rows"):
        migrate.compare("raw_klines_1m", migrate.checksums(old, columns),
                        migrate.checksums(old.slice(1), columns))


def test_cli_gate_and_dry_run(tmp_path: Path, monkeypatch, capsys) -> None:
    """Every command but `lake` refuses an old-layout home, naming the fix (old forecast outputs or quarantine
    files alone too: no writer produces them any more); --dry-run lists, moves nothing."""
    from crypto_lambda_app.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("CRYPTO_LAMBDA_HOME", str(home))
    _write(pa.table({"model": ["naive"]}), home / "lake" / "forecast_metrics" / "BTCUSDT.parquet")
    _write(pa.table({"reason": ["x"]}), home / "quarantine" / "import" / "a.parquet")
    with pytest.raises(Fault, match=r"\(forecast_metrics, quarantine\): run `crypto-lambda lake migrate` once"):
        legacy.check_migrated(home)

    build_old_home(home, full=False)
    before = _tree(home / "lake")
    assert main(["query", "SELECT 1"]) == 1
    assert "run `crypto-lambda lake migrate` once" in capsys.readouterr().err
    assert main(["lake", "migrate", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "raw_klines_1m: 6 old files" in out and "quarantine: 1 old files" in out
    assert _tree(home / "lake") == before and (home / "quarantine" / "import" / "a.parquet").exists()
