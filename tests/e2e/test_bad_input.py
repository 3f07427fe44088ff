"""Bad input and faults, tried as a hostile new user would (issue 14): every case runs the real CLI on real data
(through ``main()``, or as a subprocess where the JVM has to die) and must give the expected exit code, exactly
one error line that names the input or the service, and no Python traceback or Java stack trace.

``BEFORE`` records which cases commit 049fe35 (before issue 14) already handled: the test file was run once
against that commit's code to count them (see the closing note of the issue).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from crypto_lambda.timeutil import today_utc
from crypto_lambda_app.cli import main
from tests.support import BTC_FEATHER, dump_lines, real_rows, write_checksum, write_lines

CLI = [sys.executable, "-c", "import sys; from crypto_lambda_app.cli import main; sys.exit(main(sys.argv[1:]))"]
# a Java stack frame, printed by the JVM or inside PySpark's JSON error log (where newlines are escaped)
JAVA_FRAME = re.compile(r"(?:^\s+|\\n\\t)at (?:org\.apache|java\.|scala\.|py4j\.)", re.M)
DAY_FILE = "BTCUSDT-1m-2025-06-01.csv"


@dataclass
class Expect:
    argv: list[str]
    rc: int
    needle: str  # must appear in the output (stderr for errors)
    env: dict[str, str] = field(default_factory=dict)
    in_subprocess: bool = False
    after: Callable[[str, str], None] | None = None  # more assertions on (stdout, stderr)


@dataclass
class Ctx:
    tmp: Path
    home: Path


CASES: dict[str, Callable[[Ctx], Expect]] = {}
BEFORE: dict[str, bool] = {}  # case -> did 049fe35 already pass it


def case(ok_before: bool):
    def register(fn: Callable[[Ctx], Expect]) -> Callable[[Ctx], Expect]:
        CASES[fn.__name__] = fn
        BEFORE[fn.__name__] = ok_before
        return fn
    return register


def busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def day_lines(edit: Callable[[list[str]], None] | None = None) -> list[str]:
    """The real BTCUSDT minutes of 2025-06-01 as dump lines (ms), with ``edit`` applied to row 100's fields."""
    lines = dump_lines(real_rows(), "ms")
    if edit:
        fields = lines[100].split(",")
        edit(fields)
        lines[100] = ",".join(fields)
    return lines


def one_bad_row(ctx: Ctx, reason: str, edit: Callable[[list[str]], None], name: str = DAY_FILE) -> Expect:
    """A real day with one implausible row: exit 0, that row (only) quarantined under ``reason``."""
    path = write_lines(ctx.tmp / name, day_lines(edit))

    def after(out: str, err: str) -> None:
        summary = json.loads(out)
        assert summary["rows_good"] == 1439 and summary["rows_quarantined"] == 1, summary
        assert summary["quarantine_reasons"] == {reason: 1}

    return Expect(["import", str(path), "--json"], 0, reason, after=after)


def nothing_staged(home: Path) -> Callable[[str, str], None]:
    def after(out: str, err: str) -> None:
        assert not list((home / "imports").rglob("*.parquet")), "a refused import staged files"
    return after


# ------------------------------------------------------------------------------- inputs 049fe35 already refused

@case(True)
def backfill_bad_date(ctx):
    return Expect(["backfill", "--start", "2025-13-01"], 2, "--start '2025-13-01'")


@case(True)
def backfill_path_like_symbol(ctx):
    return Expect(["backfill", "--symbols", "btc/../x"], 2, "'BTC/../X'")


@case(True)
def backfill_unconfigured_symbol(ctx):
    return Expect(["backfill", "--symbols", "XRPUSDT"], 2, "XRPUSDT are not configured")


@case(True)
def bad_environment_date(ctx):
    return Expect(["status"], 2, "CRYPTO_LAMBDA_START 'yesterday'", env={"CRYPTO_LAMBDA_START": "yesterday"})


@case(True)
def import_missing_file(ctx):
    return Expect(["import", str(ctx.tmp / "nothing-here.zip")], 2, "nothing-here.zip")


@case(True)
def import_unsupported_file(ctx):
    (ctx.tmp / "notes.txt").write_text("hello")
    return Expect(["import", str(ctx.tmp / "notes.txt")], 2, "notes.txt: unsupported file type")


@case(True)
def import_hourly_dump(ctx):
    path = write_lines(ctx.tmp / "BTCUSDT-1h-2025-06.csv", day_lines()[:5])
    return Expect(["import", str(path)], 2, "interval '1h'")


@case(True)
def import_path_like_symbol(ctx):
    path = write_lines(ctx.tmp / "day.csv", day_lines())
    return Expect(["import", str(path), "--symbol", "../etc"], 2, "'../ETC' is invalid")


@case(True)
def import_bad_date(ctx):
    return Expect(["import", str(BTC_FEATHER), "--start", "2025-13-01"], 2, "--start '2025-13-01'")


@case(True)
def import_wrong_checksum(ctx):
    path = write_lines(ctx.tmp / DAY_FILE, day_lines())
    write_checksum(path, "0" * 64)
    return Expect(["import", str(path)], 2, f"{path}: sha256 mismatch", after=nothing_staged(ctx.home))


@case(True)
def replay_exchange_non_loopback(ctx):
    return Expect(["replay-exchange", "--host", "0.0.0.0"], 2, "--allow-remote")


@case(True)
def replay_exchange_bad_error_rate(ctx):
    return Expect(["replay-exchange", "--error-rate", "2"], 2, "--error-rate 2")


@case(True)
def demo_days_out_of_range(ctx):
    return Expect(["demo", "--days", "0"], 2, "--days 0")


@case(False)  # rc 2 already, but with PySpark's 7 KB Java stack trace on stderr
def query_unknown_view(ctx):
    return Expect(["query", "SELECT * FROM no_such_view"], 2, "no_such_view")


# -------------------------------------------------------------------------------------- what issue 14 fixed

@case(False)
def backfill_exchange_unreachable(ctx):
    return Expect(["backfill", "--start", "2025-06-01", "--end", "2025-06-02"], 1, "http://127.0.0.1:1",
                  env={"BINANCE_API_URL": "http://127.0.0.1:1"})


@case(False)
def backfill_range_in_the_future(ctx):
    future = (today_utc() + dt.timedelta(days=200)).isoformat()
    return Expect(["backfill", "--start", future], 2, f"--start {future} is in the future")


@case(False)
def backfill_minute_start_in_the_future(ctx):
    future = (today_utc() + dt.timedelta(days=30)).isoformat()
    return Expect(["backfill"], 2, f"{future} is in the future",
                  env={"CRYPTO_LAMBDA_START": future, "CRYPTO_LAMBDA_MINUTE_START": future})


@case(False)
def web_port_in_use(ctx):
    sock = busy_port()
    port = sock.getsockname()[1]
    return Expect(["web", "--port", str(port)], 1, f"127.0.0.1:{port}", after=lambda *_: sock.close())


@case(False)
def replay_exchange_port_in_use(ctx):
    sock = busy_port()
    port = sock.getsockname()[1]
    return Expect(["replay-exchange", "--port", str(port)], 1, f"127.0.0.1:{port}", after=lambda *_: sock.close())


@case(False)
def web_non_loopback(ctx):
    return Expect(["web", "--host", "0.0.0.0"], 2, "--allow-remote")


@case(False)
def corrupt_settings_file(ctx):
    (ctx.home / "settings.json").write_text('{"CRYPTO_LAMBDA_SYMBOLS": "BTCUSDT",')
    return Expect(["status"], 1, f"settings file {ctx.home / 'settings.json'} is corrupt")


@case(False)
def import_zero_price(ctx):
    return one_bad_row(ctx, "non_positive_price", lambda f: f.__setitem__(1, "0"))


@case(False)
def import_negative_price(ctx):
    return one_bad_row(ctx, "non_positive_price", lambda f: f.__setitem__(3, "-5.0"))


@case(False)
def import_negative_trade_count(ctx):
    return one_bad_row(ctx, "negative_trades", lambda f: f.__setitem__(8, "-3"))


@case(False)
def import_close_before_open(ctx):
    return one_bad_row(ctx, "close_time_mismatch", lambda f: f.__setitem__(6, str(int(f[0]) - 1)))


@case(False)
def import_row_in_2200(ctx):
    far = int(dt.datetime(2200, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    return one_bad_row(ctx, "open_time_in_future",
                       lambda f: (f.__setitem__(0, str(far)), f.__setitem__(6, str(far + 59_999))))


@case(False)
def import_2024_row_in_2025_file(ctx):
    def to_2024(fields: list[str]) -> None:
        ms = int(fields[0]) - 365 * 86_400_000
        fields[0], fields[6] = str(ms), str(ms + 59_999)
    return one_bad_row(ctx, "outside_file_period", to_2024, name="BTCUSDT-1m-2025-06.csv")


@case(False)
def import_file_without_a_valid_row(ctx):
    path = write_lines(ctx.tmp / "BTCUSDT-1m-2024-06.csv", day_lines()[:50])  # rows of 2025 in a 2024 file
    return Expect(["import", str(path)], 2, f"{path}: no valid kline row", after=nothing_staged(ctx.home))


@case(False)
def import_batch_with_bad_second_checksum(ctx):
    first = write_lines(ctx.tmp / DAY_FILE, day_lines())
    second = write_lines(ctx.tmp / "BTCUSDT-1m-2025-06-02.csv", dump_lines(real_rows(dt.date(2025, 6, 2),
                                                                                     dt.date(2025, 6, 2)), "ms"))
    write_checksum(second, "f" * 64)
    return Expect(["import", str(first), str(second)], 2, f"{second}: sha256 mismatch",
                  after=nothing_staged(ctx.home))


@case(False)
def query_insert_overwrite_directory(ctx):
    victim = ctx.tmp / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")

    def after(out, err):
        assert [p.name for p in victim.iterdir()] == ["keep.txt"]
    return Expect(["query", f"INSERT OVERWRITE DIRECTORY '{victim}' USING parquet SELECT 1"], 2, "read-only",
                  after=after)


@case(False)
def query_create_table(ctx):
    def after(out, err):
        assert not (Path.cwd() / "spark-warehouse").exists()
    return Expect(["query", "CREATE TABLE t AS SELECT 1 AS a"], 2, "CreateTableAsSelect", after=after)


@case(False)
def query_drop_view(ctx):
    return Expect(["query", "DROP VIEW IF EXISTS serving_daily"], 2, "DropView")


@case(False)
def query_reflection(ctx):
    return Expect(["query", "SELECT reflect('java.lang.System', 'exit', 3)"], 2, "reflect")


@case(False)
def query_allow_writes_outside_home(ctx):
    target = ctx.tmp / "outside"

    def after(out, err):
        assert not target.exists()
    return Expect(["query", "--allow-writes", f"INSERT OVERWRITE DIRECTORY '{target}' USING parquet SELECT 1"],
                  2, "outside CRYPTO_LAMBDA_HOME", after=after)


@case(False)
def query_huge_result_is_truncated(ctx):
    def after(out, err):
        assert len(out.strip().splitlines()) == 10_001  # header + the default limit
    return Expect(["query", "SELECT id FROM range(50000)", "--format", "csv"], 0, "first 10,000 rows",
                  after=after)


@case(False)
def query_result_exhausts_the_jvm(ctx):
    return Expect(["query", "SELECT id, repeat('x', 20000000) AS s FROM range(200)", "--limit", "200"], 1,
                  "out of memory", env={"SPARK_DRIVER_MEMORY": "512m"}, in_subprocess=True)


@case(False)
def query_bad_limit(ctx):  # 049fe35 had no bound at all; --limit 0 printed "(no rows)" and exited 0
    return Expect(["query", "SELECT 1", "--limit", "0"], 2, "--limit 0")


# ---------------------------------------------------------------------------------------------------- runner

def run_in_process(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int | None, str, str]:
    capfd.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = int(exc.code or 0)
    except BaseException:  # noqa: BLE001 - an escaped exception is exactly what this test looks for
        rc = None
        print(traceback.format_exc(), file=sys.stderr)
    out, err = capfd.readouterr()
    return rc, out, err


def run_subprocess(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, **env})
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.timeout(300)  # before issue 14, `web --host 0.0.0.0` just served forever
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_clear_line_and_an_honest_exit_code(name, lambda_home, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)  # anything written to the current directory would show up here
    monkeypatch.delenv("BINANCE_API_URL", raising=False)
    expect = CASES[name](Ctx(tmp_path, lambda_home))
    for key, value in expect.env.items():
        monkeypatch.setenv(key, value)
    if expect.in_subprocess:
        rc, out, err = run_subprocess(expect.argv, expect.env, tmp_path)
    else:
        rc, out, err = run_in_process(expect.argv, capfd)
    output = out + err
    assert "Traceback" not in output, output[-3000:]
    assert not JAVA_FRAME.search(output), output[-3000:]
    assert rc == expect.rc, output[-3000:]
    if rc:
        assert err.count("crypto-lambda: error:") == 1, err[-3000:]
    assert expect.needle in (err if rc else output), output[-3000:]
    if expect.after:
        expect.after(out, err)
