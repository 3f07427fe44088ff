"""Helpers the tests of every tier share (fixtures live in conftest.py): paths, a real Dagster instance, a
throwaway PostgreSQL server, the system Chromium, and real sample rows written in every history-file format the
readers accept."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from crypto_lambda.config import SAMPLE_1M, SAMPLE_DIR
from crypto_lambda.forecast.config import ForecastConfig
from crypto_lambda.machine import free_port

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


@dataclass(frozen=True)
class PostgresServer:
    """Where a throwaway server listens and the login of its one role and database; ``psql`` runs SQL on it."""

    host: str
    port: int
    user: str
    password: str
    db: str
    bin_dir: Path

    def psql(self, sql: str) -> str:
        """Run ``sql`` over TCP with password auth (what Dagster does) and return the unaligned rows."""
        env = {**os.environ, "PGPASSWORD": self.password}
        out = subprocess.run([str(self.bin_dir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                              "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", self.db, "-c", sql],
                             env=env, capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip()


def postgres_bin() -> Path:
    """The newest Debian PostgreSQL server binaries. Missing is a FAILURE: CI installs ``postgresql`` (.ci/run)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql/<version>/bin: install "
                    "Debian's package (apt-get install postgresql)", pytrace=False)
    return found[-1].parent


@contextlib.contextmanager
def postgres_server(user: str = "dagster", db: str = "dagster") -> Iterator[PostgresServer]:
    """initdb + start a private server on 127.0.0.1 (a free port, its socket inside its own temp dir, scram
    passwords generated here), create ``user`` and ``db``, and stop and delete it all on exit. Postgres refuses
    to run as root, so as root the server runs as the ``postgres`` OS user, which owns the dir (a pytest temp
    dir is 0700 root's, hence mkdtemp under /tmp)."""
    bin_dir = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="crypto-lambda-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres", "postgres")
    data, admin_pw, password, port = folder / "data", secrets.token_urlsafe(18), secrets.token_urlsafe(18), free_port()
    pwfile = folder / "admin.pw"
    pwfile.write_text(admin_pw + "\n")
    if as_owner:
        shutil.chown(pwfile, "postgres", "postgres")

    def pg(*args: str) -> None:
        done = subprocess.run([*as_owner, *args], cwd=folder, capture_output=True, text=True, timeout=60)
        if done.returncode:
            log = folder / "server.log"
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()}"
                               + (f"\nserver log:\n{log.read_text()[-2000:]}" if log.exists() else ""))

    # fsync off: the cluster is thrown away, its durability is not what the tests are about
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c synchronous_commit=off"
    started = False
    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}", "-A", "scram-sha-256",
           "-E", "UTF8", "--locale=C")
        pwfile.unlink()
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-o", options, "-w", "start")
        started = True
        admin = PostgresServer("127.0.0.1", port, "postgres", admin_pw, "postgres", bin_dir)
        admin.psql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        admin.psql(f"CREATE DATABASE {db} OWNER {user}")
        yield PostgresServer("127.0.0.1", port, user, password, db, bin_dir)
    finally:
        if started:
            pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def dagster_pg_env(server: PostgresServer, dagster_yaml: Path) -> dict[str, str]:
    """The environment ``dagster_yaml``'s Postgres storage reads, by the variable names written in that file."""
    import yaml

    db = yaml.safe_load(dagster_yaml.read_text())["storage"]["postgres"]["postgres_db"]
    values = {"hostname": server.host, "port": str(server.port), "username": server.user,
              "password": server.password, "db_name": server.db}
    return {db[field]["env"]: value for field, value in values.items() if isinstance(db.get(field), dict)}


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


def assert_bars_equal_recording(bars: pd.DataFrame, recording, symbols, start_ms: int, end_ms: int) -> None:
    """Streamed 1-minute bars: none twice, and for each symbol every recorded minute of [start, end) present with
    the recording's O/H/L/C (exactly) and volume (to 1e-9): nothing lost, nothing invented."""
    assert not bars.duplicated(["symbol", "open_time"]).any(), "duplicated minute bars"
    for symbol in symbols:
        want = recording.minutes(symbol, start_ms, end_ms).set_index("open_time")
        got = bars[bars["symbol"] == symbol].set_index("open_time").reindex(want.index)
        assert got["open"].notna().all(), f"{symbol}: missing minute bars"
        for col in ("open", "high", "low", "close"):
            assert (got[col].to_numpy() == want[col].to_numpy()).all(), (symbol, col)
        np.testing.assert_allclose(got["volume"], want["volume"], rtol=1e-9, atol=0)


def yaml_leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of parsed YAML/JSON with its dotted path (``services.kafka-1.ports[0]``), for checks that
    look at every value of a deployment file."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from yaml_leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from yaml_leaves(value, f"{path}[{i}]")
    else:
        yield path, node
