"""Helpers the tests of every tier share (fixtures live in conftest.py): paths, a real Dagster instance, the
system Chromium, and real sample rows written in every history-file format the readers accept."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from crypto_lambda.config import SAMPLE_1M, SAMPLE_DIR
from crypto_lambda.forecast.config import ForecastConfig

REPO = Path(__file__).resolve().parent.parent
SAMPLE = SAMPLE_DIR


def recorded_1d(symbol: str, shift_days: int) -> pd.DataFrame:
    """Binance's recorded 1d klines of the shipped sample, dated ``shift_days`` later (a shifted exchange)."""
    frame = pd.read_csv(SAMPLE / "daily" / f"{symbol}_1d.csv")
    frame["date"] = pd.to_datetime(frame["timestamp"]).dt.date + dt.timedelta(days=shift_days)
    return frame


def temp_instance(folder: Path):
    """A real, persistent Dagster instance in ``folder`` with telemetry off (local_temp ignores dagster.yaml)."""
    import dagster as dg

    folder.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.local_temp(str(folder), overrides={"telemetry": {"enabled": False}})


def chromium_path() -> str:
    """Debian's chromium (or $CHROMIUM). Missing is a FAILURE, not a skip: CI installs it (.ci/run)."""
    wanted = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    found = shutil.which(wanted) or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(f"headless Chromium not found at {wanted} (nor 'chromium' on PATH): install Debian's package "
                    "(apt-get install chromium) or set CHROMIUM=/path/to/chromium", pytrace=False)
    return found


BTC_FEATHER = SAMPLE_1M / "BTCUSDT-1m-2025-05-20_2025-08-18.freqtrade.feather"
DAY = dt.date(2025, 6, 1)
OHLCV = ["open", "high", "low", "close", "volume"]
DUMP_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
               "taker_buy_quote_volume,ignore")


def real_rows(first: dt.date = DAY, last: dt.date = DAY) -> pd.DataFrame:
    """Real BTCUSDT minutes of [first, last] from the shipped freqtrade sample."""
    frame = pd.read_feather(BTC_FEATHER)
    days = frame["date"].dt.date
    return frame[(days >= first) & (days <= last)].reset_index(drop=True)


def dump_lines(rows: pd.DataFrame, unit: str = "us") -> list[str]:
    """data.binance.vision CSV lines for real rows. The sample has no quote/taker/trade columns, so those
    are derived deterministically from the real values (they only need to round-trip)."""
    ms = rows["date"].dt.as_unit("ms").astype("int64")
    scale = {"ms": 1, "us": 1000}
    lines = []
    for i, (t, o, h, lo, c, v) in enumerate(zip(ms, rows.open, rows.high, rows.low, rows.close, rows.volume,
                                                strict=True)):
        k = scale[unit if unit != "mixed" else ("ms" if i % 2 else "us")]
        lines.append(f"{t * k},{o:.8f},{h:.8f},{lo:.8f},{c:.8f},{v:.8f},{(t + 59_999) * k},"
                     f"{v * c:.8f},{i % 97 + 1},{v / 2:.8f},{v * c / 2:.8f},0")
    return lines


def write_lines(path: Path, lines: list[str], header: str | None = None) -> Path:
    text = "\n".join(([header] if header else []) + lines) + "\n"
    path.write_text(text)
    return path


def write_zip(path: Path, lines: list[str]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(path.with_suffix(".csv").name, "\n".join(lines) + "\n")
    return path


def write_checksum(path: Path, digest: str | None = None) -> Path:
    digest = digest or hashlib.sha256(path.read_bytes()).hexdigest()
    sibling = path.with_name(path.name + ".CHECKSUM")
    sibling.write_text(f"{digest}  {path.name}\n")
    return sibling



VOL_SYMBOLS = ("BTCUSDT", "ETHUSDT")
# The small CV config of the volatility tests (a year of cutoffs, no grid, no seeds).
VOL_SMALL = ForecastConfig(cv_days=365, grid=(), include_seeds=False, vol_period=10)
