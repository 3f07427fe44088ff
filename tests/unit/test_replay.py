"""The replay exchange against a real running server, on the shipped real sample."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.machinery
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import types

import aiohttp
import pandas as pd
import pytest
import requests

from crypto_lambda import schema
from crypto_lambda.config import SAMPLE_1M, SAMPLE_DIR  # noqa: I001
from crypto_lambda.timeutil import DAY_MS, MINUTE_MS, day_start_ms, now_ms, today_utc
from replay_exchange.recording import Recording, decimal_str
from replay_exchange.server import WS_MODULE, ReplayKnobs, ReplayServer, build_app

SAMPLE = SAMPLE_DIR
JUNE_1 = day_start_ms(dt.date(2025, 6, 1))
FIRST_MINUTE = day_start_ms(dt.date(2025, 5, 20))
CLI = [sys.executable, "-c", "import sys; from crypto_lambda_app.cli import main; sys.exit(main(sys.argv[1:]))"]
LAST_MINUTE = day_start_ms(dt.date(2025, 8, 18)) + (18 * 60 + 27) * MINUTE_MS


@pytest.fixture(scope="module")
def feather() -> dict[str, pd.DataFrame]:
    out = {}
    for symbol in ("BTCUSDT", "ETHUSDT"):
        frame = pd.read_feather(SAMPLE / "klines_1m" / f"{symbol}-1m-2025-05-20_2025-08-18.freqtrade.feather")
        frame["open_ms"] = frame["date"].dt.as_unit("ms").astype("int64")
        out[symbol] = frame.set_index("open_ms")
    return out


def get(srv: ReplayServer, path: str, **params) -> requests.Response:
    return requests.get(f"{srv.url}{path}", params=params, timeout=10)


def klines(srv: ReplayServer, **params) -> list[list]:
    params = {"symbol": "BTCUSDT", "interval": "1m", **params}
    resp = get(srv, "/api/v3/klines", **params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_klines_are_open_time_inclusive_at_both_ends(server):
    rows = klines(server, startTime=JUNE_1, endTime=JUNE_1 + 9 * MINUTE_MS)
    assert [r[0] for r in rows] == [JUNE_1 + i * MINUTE_MS for i in range(10)]
    # endTime inside the last minute still includes it; startTime just after an open excludes that bar
    rows = klines(server, startTime=JUNE_1 + 1, endTime=JUNE_1 + 9 * MINUTE_MS + 59_999)
    assert [r[0] for r in rows] == [JUNE_1 + i * MINUTE_MS for i in range(1, 10)]
    assert klines(server, startTime=JUNE_1, endTime=JUNE_1) == klines(server, startTime=JUNE_1, limit=1)


def test_limit_default_max_and_too_large(server):
    assert len(klines(server, startTime=JUNE_1)) == 500
    assert len(klines(server, startTime=JUNE_1, limit=1000)) == 1000
    for bad in (1001, 0):
        resp = get(server, "/api/v3/klines", symbol="BTCUSDT", interval="1m", startTime=JUNE_1, limit=bad)
        assert resp.status_code == 400
        assert resp.json()["code"] == -1130


def test_without_start_time_returns_most_recent(server):
    rows = klines(server, limit=5)
    assert [r[0] for r in rows] == [LAST_MINUTE - i * MINUTE_MS for i in range(4, -1, -1)]
    rows = klines(server, endTime=JUNE_1, limit=3)
    assert [r[0] for r in rows] == [JUNE_1 - 2 * MINUTE_MS, JUNE_1 - MINUTE_MS, JUNE_1]
    assert klines(server, startTime=LAST_MINUTE + MINUTE_MS) == []
    assert klines(server, endTime=FIRST_MINUTE - 1) == []


def test_rows_have_12_fields_and_exact_decimal_strings(server, feather):
    for symbol in ("BTCUSDT", "ETHUSDT"):
        rows = klines(server, symbol=symbol, startTime=JUNE_1, limit=1000)
        source = feather[symbol]
        for row in rows:
            assert len(row) == 12
            open_ms, close_ms = row[0], row[6]
            assert isinstance(open_ms, int) and close_ms == open_ms + MINUTE_MS - 1
            recorded = source.loc[open_ms]
            for i, col in enumerate(("open", "high", "low", "close", "volume"), start=1):
                assert isinstance(row[i], str) and "e" not in row[i]
                assert float(row[i]) == recorded[col]  # identical float64, not merely close
            assert row[7:11] == [None, None, None, None]  # not in the recording: null, not invented
            assert row[11] == "0"


def test_decimal_str_round_trips_without_exponents():
    for value in (1e-5, 0.1 + 0.2, 123456789.123, 1e17, 5e-324, 0.0, 4285.08):
        text = decimal_str(value)
        assert "e" not in text.lower() and float(text) == value


def test_daily_rows_equal_binance_1d_file(server, recording):
    for symbol in ("BTCUSDT", "ETHUSDT"):
        csv = pd.read_csv(SAMPLE / "daily" / f"{symbol}_1d.csv")
        csv["open_ms"] = pd.to_datetime(csv["timestamp"], utc=True).dt.as_unit("ms").astype("int64")
        csv = csv.set_index("open_ms")
        first, last = FIRST_MINUTE, day_start_ms(dt.date(2025, 8, 17))
        rows = klines(server, symbol=symbol, interval="1d", startTime=first, endTime=last)
        assert len(rows) == 90  # the full days of the 1m window, aggregated from minutes
        for row in rows:
            expected = csv.loc[row[0]]
            assert row[6] == row[0] + DAY_MS - 1
            assert [float(v) for v in row[1:5]] == [expected[c] for c in ("open", "high", "low", "close")]
            assert float(row[5]) == pytest.approx(expected["volume"], rel=1e-9)
        # days outside the 1m window (and the partial 1m day 2025-08-18) are the file's rows as is
        for day in (dt.date(2017, 8, 17), dt.date(2025, 8, 18), dt.date(2026, 1, 6)):
            (row,) = klines(server, symbol=symbol, interval="1d", startTime=day_start_ms(day), limit=1)
            expected = csv.loc[row[0]]
            assert [float(v) for v in row[1:6]] == [expected[c] for c in ("open", "high", "low", "close",
                                                                           "volume")]
        assert len(klines(server, symbol=symbol, interval="1d", limit=1000)) == 1000
    assert recording.day_span("BTCUSDT") == (day_start_ms(dt.date(2017, 8, 17)),
                                             day_start_ms(dt.date(2026, 1, 6)))


def test_hourly_rows_aggregate_minutes(server, feather):
    (row,) = klines(server, interval="1h", startTime=JUNE_1, limit=1)
    hour = feather["BTCUSDT"].loc[JUNE_1: JUNE_1 + 59 * MINUTE_MS]
    assert len(hour) == 60 and row[0] == JUNE_1 and row[6] == JUNE_1 + 3_600_000 - 1
    assert float(row[1]) == hour["open"].iloc[0] and float(row[4]) == hour["close"].iloc[-1]
    assert float(row[2]) == hour["high"].max() and float(row[3]) == hour["low"].min()
    assert float(row[5]) == pytest.approx(hour["volume"].sum(), rel=1e-12)


def test_request_errors_are_binance_style(server):
    cases = [
        ({"symbol": "NOPEUSDT", "interval": "1m"}, -1121),
        ({"interval": "1m"}, -1102),
        ({"symbol": "BTCUSDT", "interval": "7m"}, -1120),
        ({"symbol": "BTCUSDT", "interval": "1w"}, -1120),  # valid on Binance, not served by the replay
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": "abc"}, -1100),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": JUNE_1, "endTime": JUNE_1 - 1}, -1023),
    ]
    for params, code in cases:
        resp = get(server, "/api/v3/klines", **params)
        assert resp.status_code == 400, params
        assert resp.json()["code"] == code, params
    assert get(server, "/api/v3/klines", symbol="NOPEUSDT", interval="1m").json() == {
        "code": -1121, "msg": "Invalid symbol."}


def test_exchange_info_time_and_ping(server):
    info = get(server, "/api/v3/exchangeInfo").json()
    assert {s["symbol"] for s in info["symbols"]} == {"BTCUSDT", "ETHUSDT"}
    assert all(s["status"] == "TRADING" and s["quoteAsset"] == "USDT" for s in info["symbols"])
    (eth,) = get(server, "/api/v3/exchangeInfo", symbol="ETHUSDT").json()["symbols"]
    assert (eth["baseAsset"], eth["quoteAsset"]) == ("ETH", "USDT")
    assert get(server, "/api/v3/exchangeInfo", symbol="NOPEUSDT").json()["code"] == -1121
    assert get(server, "/api/v3/ping").json() == {}
    assert abs(get(server, "/api/v3/time").json()["serverTime"] - now_ms()) < 5_000


def _away_from_minute_boundary() -> None:
    """Weight windows are wall-clock minutes; keep a short test inside one window."""
    remaining = 60 - time.time() % 60
    if remaining < 3:
        time.sleep(remaining + 0.1)


def test_weight_header_and_budget(recording):
    with ReplayServer(recording, ReplayKnobs(weight_budget=25)) as srv:
        _away_from_minute_boundary()
        used = [get(srv, path, **params).headers["X-MBX-USED-WEIGHT-1M"] for path, params in (
            ("/api/v3/exchangeInfo", {}), ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m"}),
            ("/api/v3/klines", {"symbol": "ETHUSDT", "interval": "1d"}), ("/api/v3/ping", {}))]
        assert used == ["20", "22", "24", "25"]
        over = get(srv, "/api/v3/ping")
        assert over.status_code == 429
        assert over.json()["code"] == -1003
        assert 1 <= int(over.headers["Retry-After"]) <= 60


def test_fault_knobs(recording):
    knobs = ReplayKnobs(force_429_first_n=1, fail_first_n=2, retry_after_s=3, latency_ms=150)
    with ReplayServer(recording, knobs) as srv:
        started = time.perf_counter()
        statuses = [get(srv, "/api/v3/ping") for _ in range(4)]
        assert time.perf_counter() - started >= 0.6  # 4 x 150 ms latency
        assert [r.status_code for r in statuses] == [429, 503, 503, 200]
        assert statuses[0].headers["Retry-After"] == "3"
    with ReplayServer(recording, ReplayKnobs(error_rate=1.0, seed=7)) as srv:
        assert {get(srv, "/api/v3/ping").status_code for _ in range(6)} <= {500, 503}
    with ReplayServer(recording, ReplayKnobs(error_rate=0.5, seed=7)) as srv:
        first = [get(srv, "/api/v3/ping").status_code for _ in range(10)]
    with ReplayServer(recording, ReplayKnobs(error_rate=0.5, seed=7)) as srv:
        assert [get(srv, "/api/v3/ping").status_code for _ in range(10)] == first  # seeded: reproducible
    assert 200 in first and set(first) - {200}


def test_time_shift_serves_today_and_nothing_after_now():
    today = today_utc()
    clock_ms = [day_start_ms(today) + 12 * 3_600_000]  # today 12:00 UTC, before the last recorded 18:27
    rec = Recording.from_sample(shift_to_today=True, clock=lambda: clock_ms[0])
    assert rec.shift_ms % DAY_MS == 0
    assert rec.shift_ms == (today - dt.date(2025, 8, 18)).days * DAY_MS
    first, last = rec.minute_span("BTCUSDT")
    assert first == FIRST_MINUTE + rec.shift_ms
    assert last == clock_ms[0] - MINUTE_MS  # the 11:59 bar closed at 12:00; 12:00 is still open
    assert rec.served_until(["BTCUSDT", "ETHUSDT"]) == clock_ms[0]  # both symbols, up to the 11:59 bar's end
    with ReplayServer(rec) as srv:
        rows = klines(srv, limit=1000)
        assert rows[-1][0] == last and rows[-1][6] < clock_ms[0]
        assert klines(srv, startTime=clock_ms[0]) == []
        (daily,) = klines(srv, interval="1d", limit=1)  # today's bar is in progress up to now
        today_minutes = klines(srv, startTime=day_start_ms(today), limit=1000)
        assert daily[0] == day_start_ms(today) and len(today_minutes) == 720
        assert daily[4] == today_minutes[-1][4] and daily[1] == today_minutes[0][1]
        assert float(daily[2]) == max(float(r[2]) for r in today_minutes)
        assert klines(srv, interval="1d", startTime=day_start_ms(today) + DAY_MS) == []
        clock_ms[0] += 5 * MINUTE_MS  # time passes: five more minutes are revealed
        assert klines(srv, limit=1)[0][0] == last + 5 * MINUTE_MS
        clock_ms[0] += DAY_MS  # past the end of the recording: it simply ends, nothing is invented
        assert klines(srv, limit=1)[0][0] == day_start_ms(today) + (18 * 60 + 27) * MINUTE_MS
        assert rec.served_until(["BTCUSDT"]) == day_start_ms(today) + (18 * 60 + 28) * MINUTE_MS  # then it ends
    frame = rec.minutes("BTCUSDT", day_start_ms(today), day_start_ms(today) + DAY_MS)
    assert len(frame) == 18 * 60 + 28


def test_time_shift_keeps_minutes_ahead_for_a_live_replay():
    """The sample ends at 18:27 of its last day: asked to keep 6 h ahead, the shift adds a day once now + 6 h
    passes the end, so a replay "live from now" always has minutes to stream; without it, evenings stream
    nothing."""
    today = today_utc()
    base = (today - dt.date(2025, 8, 18)).days * DAY_MS
    end_of_recording = day_start_ms(today) + (18 * 60 + 28) * MINUTE_MS  # close of the last recorded minute
    for hour, ahead_h, extra_days in [(12, 6, 0), (12.5, 6, 1), (20, 6, 1), (20, 0, 0), (1, 18, 1), (0, 6, 0)]:
        now = day_start_ms(today) + int(hour * 3_600_000)
        rec = Recording.from_sample(shift_to_today=True, ahead_ms=ahead_h * 3_600_000, clock=lambda now=now: now)
        assert rec.shift_ms == base + extra_days * DAY_MS, (hour, ahead_h)
        last_served = rec.minute_span("BTCUSDT")[1]
        if not ahead_h:  # the old behaviour: the last day is today, and it simply ends at 18:27
            assert last_served == min(now, end_of_recording) - MINUTE_MS
        else:  # served up to now, whichever recorded day that is, with hours to spare
            assert last_served == now - MINUTE_MS
            assert end_of_recording + extra_days * DAY_MS >= now + ahead_h * 3_600_000


def test_time_shift_against_the_real_clock():
    rec = Recording.from_sample(shift_to_today=True)
    with ReplayServer(rec) as srv:
        rows = klines(srv, limit=1000)
        done = now_ms()
    assert rows[-1][0] + MINUTE_MS <= done  # nothing after now
    if done - day_start_ms(today_utc()) >= MINUTE_MS:
        assert dt.datetime.fromtimestamp(rows[-1][0] / 1000, dt.UTC).date() == today_utc()


def test_minutes_frame_is_canonical(recording):
    frame = recording.minutes("ETHUSDT", JUNE_1, JUNE_1 + 10 * MINUTE_MS)
    assert list(frame.columns) == list(schema.KLINE_COLUMNS)
    assert str(frame["open_time"].dtype) == "datetime64[ms, UTC]"
    assert frame["open_time"].iloc[0].value // 1_000_000 == JUNE_1 and len(frame) == 10  # [start, end)
    assert (frame["source"] == "replay").all() and frame["trades"].isna().all()
    assert schema.to_table(frame).num_rows == 10
    with pytest.raises(KeyError):
        recording.minutes("NOPEUSDT", JUNE_1, JUNE_1 + MINUTE_MS)


def test_1000_rows_are_fast(recording, server):
    def timed(call) -> float:
        samples = []
        for i in range(15):
            started = time.perf_counter()
            call(i)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    direct = timed(lambda i: recording.klines_rows("BTCUSDT", "1m", JUNE_1 + i * MINUTE_MS, None, 1000))
    http = timed(lambda i: klines(server, startTime=JUNE_1 + i * MINUTE_MS, limit=1000))
    assert direct < 0.010, f"1000 rows took {direct * 1000:.1f} ms in process"
    assert http < 0.100, f"1000 rows took {http * 1000:.1f} ms over HTTP"


def test_from_paths_reads_files_through_readers(recording):
    rec = Recording.from_paths([SAMPLE / "klines_1m" / "ETHUSDT-1m-2025-05-20_2025-08-18.freqtrade.feather",
                                SAMPLE / "daily"])
    assert rec.symbols == ("BTCUSDT", "ETHUSDT")
    assert rec.minute_span("ETHUSDT") == recording.minute_span("ETHUSDT")
    for interval in ("1m", "1d"):
        assert (rec.klines_rows("ETHUSDT", interval, JUNE_1, None, 1000)
                == recording.klines_rows("ETHUSDT", interval, JUNE_1, None, 1000))


def test_stream_routes_hook_is_called(recording, monkeypatch):
    calls = []
    fake = types.ModuleType(WS_MODULE)
    fake.__spec__ = importlib.machinery.ModuleSpec(WS_MODULE, None)
    fake.add_stream_routes = calls.append
    monkeypatch.setitem(sys.modules, WS_MODULE, fake)
    app = build_app(recording, ReplayKnobs())
    assert calls == [app] and app["recording"] is recording and isinstance(app["knobs"], ReplayKnobs)


def test_from_paths_daily_only(tmp_path):
    rec = Recording.from_paths([SAMPLE / "daily" / "ETHUSDT_1d.csv"])
    assert rec.symbols == ("ETHUSDT",)
    rows = rec.klines_rows("ETHUSDT", "1d", None, None, 2)
    assert rows[-1][0] == day_start_ms(dt.date(2026, 1, 6)) and rows[-1][4] == "3242.13"
    with pytest.raises(LookupError):
        rec.minute_span("ETHUSDT")
    with pytest.raises(FileNotFoundError):
        Recording.from_paths([tmp_path / "missing.feather"])


def test_cli_serves_until_sigterm(recording: Recording):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "REPLAY_WS_SPEED": "7"}  # the option wins over the env
    start_ms = recording.minute_span("BTCUSDT")[0] + 86_400_000
    proc = subprocess.Popen([*CLI, "replay-exchange", "--port", "0", "--ws-speed", "60", "--ws-start-ms",
                             str(start_ms), "--ws-trades-per-minute", "5"], stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        url, lines = None, []
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "listening on " in line:
                url = line.split("listening on ")[1].split()[0]
        assert url, "".join(lines)
        assert requests.get(f"{url}/api/v3/ping", timeout=10).json() == {}
        assert "speed x60 from" in proc.stderr.readline()
        first = asyncio.run(_first_ws_event(url.replace("http", "ws", 1) + "/ws/btcusdt@trade"))
        assert start_ms <= first["T"] < start_ms + 60_000
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _first_ws_event(url: str) -> dict:
    async with aiohttp.ClientSession() as session, session.ws_connect(url, timeout=10) as ws:
        return json.loads((await ws.receive(timeout=10)).data)


def test_cli_refuses_non_loopback_host():
    result = subprocess.run([*CLI, "replay-exchange", "--host", "0.0.0.0"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "--allow-remote" in result.stderr


def test_sample_check_refuses_bars_that_break_the_bar_rule():
    """The shipped sample bypasses schema.validate; its check applies quality.bar_violations to every minute."""
    from replay_exchange import recording as rec_module

    path = sorted(SAMPLE_1M.glob("*.feather"))[0]
    rec_module._check_minutes("BTCUSDT", rec_module.read_freqtrade_feather(path, "BTCUSDT"), str(path))
    for column, value in (("high", -1.0), ("open", float("nan")), ("volume", -1.0)):
        bars = rec_module.read_freqtrade_feather(path, "BTCUSDT")
        bars.cols[column][5] = value
        with pytest.raises(ValueError, match=r"BTCUSDT has 1 invalid 1m rows, first at \d+ ms"):
            rec_module._check_minutes("BTCUSDT", bars, str(path))
