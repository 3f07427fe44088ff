"""Importing into the staging area, on the real shipped sample and formats written from it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from crypto_lambda.config import load_settings
from crypto_lambda.imports import import_paths, read_staged, staged_days
from crypto_lambda.lake import quarantine
from crypto_lambda.lake import read as lake_read
from crypto_lambda_app.cli import main
from tests.support import BTC_FEATHER, DAY, dump_lines, real_rows, write_checksum, write_lines

FIRST, LAST = dt.date(2025, 5, 20), dt.date(2025, 8, 18)


def staged_snapshot(settings, symbol: str) -> dict[dt.date, pd.DataFrame]:
    return {day: read_staged(settings, symbol, day) for day in staged_days(settings, symbol)}


def test_sample_feather_stages_91_days_and_reimport_is_idempotent(lambda_home: Path) -> None:
    settings = load_settings()
    summary = import_paths([BTC_FEATHER], settings, progress=False)
    assert summary.rows_good == 130_708 and summary.rows_quarantined == 0 and summary.duplicates == 0
    assert summary.quarantine_version is None and not lake_read.exists(settings.lake, "quarantine")
    days = staged_days(settings, "BTCUSDT")
    assert len(days) == 91 and days[0] == FIRST and days[-1] == LAST
    assert len(list((settings.imports / "BTCUSDT").glob("*.parquet"))) == 91
    info = summary.symbols["BTCUSDT"]
    assert (info.first, info.last, info.days) == (FIRST, LAST, 91)
    assert len(read_staged(settings, "BTCUSDT", DAY)) == 1440
    assert len(read_staged(settings, "BTCUSDT", LAST)) == 18 * 60 + 28
    assert read_staged(settings, "BTCUSDT", dt.date(2025, 9, 1)) is None

    before = staged_snapshot(settings, "BTCUSDT")
    import_paths([BTC_FEATHER], settings, progress=False)
    after = staged_snapshot(settings, "BTCUSDT")
    assert before.keys() == after.keys()
    for day in before:
        pd.testing.assert_frame_equal(before[day], after[day])
    assert sum(len(f) for f in after.values()) == 130_708


def test_shift_and_window(lambda_home: Path) -> None:
    settings = load_settings()
    summary = import_paths([BTC_FEATHER], settings, shift_days=100, start=dt.date(2025, 9, 8),
                           end=dt.date(2025, 9, 10), progress=False)
    shifted_day = DAY + dt.timedelta(days=100)  # 2025-06-01 -> 2025-09-09
    assert staged_days(settings, "BTCUSDT") == [dt.date(2025, 9, 8), shifted_day, dt.date(2025, 9, 10)]
    assert summary.rows_good == 3 * 1440 and summary.rows_outside_window == 130_708 - 3 * 1440
    staged = read_staged(settings, "BTCUSDT", shifted_day)
    original = real_rows()
    assert (staged["close"].to_numpy() == original["close"].to_numpy()).all()
    expected = (original["date"] + pd.Timedelta(days=100)).dt.as_unit("ms")
    assert (staged["open_time"].to_numpy() == expected.to_numpy()).all()


def test_bad_rows_are_quarantined_and_counted(lambda_home: Path, tmp_path: Path) -> None:
    settings = load_settings()
    rows = real_rows(DAY, DAY + dt.timedelta(days=1))
    rows.loc[[5, 6, 7], "volume"] = -1.0  # day 1
    rows.loc[1440 + 3, "high"] = 1.0  # day 2: high below low
    path = tmp_path / "ETH_USDT-1m.feather"
    rows.to_feather(path)

    windowed = import_paths([path], settings, start=DAY, end=DAY, progress=False)
    assert windowed.rows_quarantined == 3 and windowed.rows_good == 1437
    full = import_paths([path], settings, progress=False)
    assert full.rows_quarantined == 4 and full.rows_good == 2 * 1440 - 4
    quarantined = quarantine.read(settings.lake, "import")
    # one commit per import, in the Delta table (not a file per batch); no JVM involved
    assert len(quarantined) == 7 and (windowed.quarantine_version, full.quarantine_version) == (0, 1)
    assert len(quarantine.read(settings.lake, "rest")) == 0 and set(quarantined["kind"]) == {"import"}
    assert not settings.quarantine.exists()
    assert sorted(quarantined["reason"].unique()) == ["negative_volume", "ohlc_violation"]
    assert set(quarantined["source_file"]) == {str(path)} and set(quarantined["symbol"]) == {"ETHUSDT"}
    assert staged_days(settings, "ETHUSDT") == [DAY, DAY + dt.timedelta(days=1)]


def test_directory_import_merges_days_later_wins(lambda_home: Path, tmp_path: Path) -> None:
    settings = load_settings()
    rows = real_rows()
    folder = tmp_path / "dumps"
    folder.mkdir()
    dump = write_lines(folder / "BTCUSDT-1m-2025-06-01.csv", dump_lines(rows))
    write_checksum(dump)
    (folder / "README.txt").write_text("not data")
    summary = import_paths([folder], settings, progress=False)
    assert summary.files == [dump] and summary.rows_good == 1440

    fix = dump_lines(rows.iloc[:10], "ms")
    fields = fix[0].split(",")
    fields[5] = f"{rows.volume[0] + 1:.8f}"  # a corrected volume for the first minute
    fix[0] = ",".join(fields)
    correction = write_lines(tmp_path / "BTCUSDT-1m-2025-06-01.csv", fix)
    import_paths([correction], settings, progress=False)
    staged = read_staged(settings, "BTCUSDT", DAY)
    assert len(staged) == 1440 and staged["open_time"].is_unique
    assert staged["volume"].iloc[0] == pytest.approx(rows.volume[0] + 1)
    assert staged["volume"].iloc[1] == rows.volume[1] and staged["close"].iloc[0] == rows.close[0]


def test_bad_batch_writes_nothing(lambda_home: Path, tmp_path: Path) -> None:
    settings = load_settings()
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt"):
        import_paths([BTC_FEATHER, bad], settings, progress=False)
    with pytest.raises(FileNotFoundError, match="missing.zip"):
        import_paths([BTC_FEATHER, tmp_path / "missing.zip"], settings, progress=False)
    with pytest.raises(ValueError, match="start"):
        import_paths([BTC_FEATHER], settings, start=LAST, end=FIRST, progress=False)
    assert staged_days(settings, "BTCUSDT") == []


# ------------------------------------------------------------------------------------------------------ CLI

def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["import", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--shift-days" in out and "Kaggle" in out and "data.binance.vision" in out


def test_cli_bad_path_exits_2(lambda_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing-here.zip"
    assert main(["import", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["import", str(BTC_FEATHER), "--start", "2025-13-01"]) == 2
    assert "--start '2025-13-01' is not a valid date" in capsys.readouterr().err


def test_cli_imports_and_reports_json(lambda_home: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "day.csv", dump_lines(real_rows()) + ["broken,line"])
    assert main(["import", str(path), "--symbol", "btcusdt", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows_good"] == 1440 and summary["rows_quarantined"] == 1
    assert summary["symbols"] == {"BTCUSDT": {"first": "2025-06-01", "last": "2025-06-01", "days": 1}}
    assert main(["import", str(path), "--symbol", "BTCUSDT"]) == 0
    out = capsys.readouterr().out
    assert "good rows: 1,440" in out and "BTCUSDT: 1 day(s) staged, 2025-06-01 .. 2025-06-01" in out
