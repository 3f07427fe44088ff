"""BinanceClient against a real running replay exchange: pagination, retries and errors."""

from __future__ import annotations

import datetime as dt
import time

import pandas as pd
import pytest

from crypto_lambda.exchange.client import BinanceClient, ExchangeError
from crypto_lambda.timeutil import DAY_MS, MINUTE_MS, day_start_ms, now_ms
from replay_exchange.server import ReplayKnobs, ReplayServer

JUNE_1 = day_start_ms(dt.date(2025, 6, 1))


class Sleeps(list):
    """Records requested sleeps instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_one_day_is_1440_rows_in_two_pages_end_exclusive(server):
    with BinanceClient(server.url) as client:
        rows = client.klines_rows("BTCUSDT", "1m", JUNE_1, JUNE_1 + DAY_MS)
        assert client.requests_sent == 2
        assert client.last_used_weight is not None and client.last_used_weight >= 4
    opens = [r[0] for r in rows]
    assert len(rows) == 1440 and opens == sorted(set(opens))
    assert opens[0] == JUNE_1 and opens[-1] == JUNE_1 + DAY_MS - MINUTE_MS  # end is exclusive


def test_three_days_validated(server):
    with BinanceClient(server.url) as client:
        result = client.klines("ETHUSDT", JUNE_1, JUNE_1 + 3 * DAY_MS)
    good = result.good
    assert len(good) == 4320 and len(result.bad) == 0 and result.duplicates == 0
    assert good["open_time"].is_unique and (good["source"] == "rest").all()
    expected = pd.date_range("2025-06-01", periods=4320, freq="1min", tz="UTC")
    assert (good["open_time"].to_numpy() == expected.as_unit("ms").to_numpy()).all()
    assert good["quote_volume"].isna().all()  # served as null by the replay, kept null


def test_daily_interval_and_general_endpoints(server):
    with BinanceClient(server.url) as client:
        result = client.klines("BTCUSDT", JUNE_1, JUNE_1 + 30 * DAY_MS, interval="1d")
        assert len(result.good) == 30
        assert client.exchange_symbols() == {"BTCUSDT", "ETHUSDT"}
        assert abs(client.server_time() - now_ms()) < 5_000
        client.ping()


def test_base_url_from_environment(server, monkeypatch):
    monkeypatch.setenv("BINANCE_API_URL", server.url + "/")
    with BinanceClient() as client:
        assert client.base_url == server.url
        client.ping()
    monkeypatch.delenv("BINANCE_API_URL")
    assert BinanceClient().base_url == "https://api.binance.com"


def test_429_retry_after_is_honoured(recording):
    with ReplayServer(recording, ReplayKnobs(force_429_first_n=1, retry_after_s=1)) as srv:
        with BinanceClient(srv.url) as client:
            started = time.monotonic()
            rows = client.klines_rows("BTCUSDT", "1m", JUNE_1, JUNE_1 + 10 * MINUTE_MS)
            elapsed = time.monotonic() - started
    assert len(rows) == 10 and client.requests_sent == 2
    assert elapsed >= 1.0  # really waited Retry-After


def test_429_sleep_uses_retry_after_not_backoff(recording):
    sleeps = Sleeps()
    with ReplayServer(recording, ReplayKnobs(force_429_first_n=2, retry_after_s=7)) as srv:
        with BinanceClient(srv.url, sleep=sleeps, backoff_base=0.01) as client:
            client.ping()
    assert sleeps == [7.0, 7.0]


def test_5xx_are_retried_with_jittered_backoff(recording):
    sleeps = Sleeps()
    with ReplayServer(recording, ReplayKnobs(fail_first_n=3)) as srv:
        with BinanceClient(srv.url, sleep=sleeps, backoff_base=0.5, backoff_max=1.5) as client:
            rows = client.klines_rows("BTCUSDT", "1m", JUNE_1, JUNE_1 + 5 * MINUTE_MS)
    assert len(rows) == 5
    assert len(sleeps) == 3
    assert all(0 <= s <= cap for s, cap in zip(sleeps, (0.5, 1.0, 1.5), strict=True))  # full jitter, capped


def test_persistent_failure_names_symbol_interval_and_range(recording):
    sleeps = Sleeps()
    with ReplayServer(recording, ReplayKnobs(error_rate=1.0, seed=3)) as srv:
        with BinanceClient(srv.url, max_attempts=3, sleep=sleeps) as client:
            with pytest.raises(ExchangeError) as info:
                client.klines("ETHUSDT", JUNE_1, JUNE_1 + DAY_MS)
            assert client.requests_sent == 3
    message = str(info.value)
    for part in ("ETHUSDT", "1m", "2025-06-01T00:00:00Z", "2025-06-02T00:00:00Z", "3 attempts", "HTTP 50"):
        assert part in message, message
    assert info.value.status in (500, 503) and len(sleeps) == 2


def test_unknown_symbol_fails_immediately(server):
    sleeps = Sleeps()
    with BinanceClient(server.url, sleep=sleeps) as client:
        with pytest.raises(ExchangeError, match="Invalid symbol") as info:
            client.klines_rows("NOPEUSDT", "1m", JUNE_1, JUNE_1 + MINUTE_MS)
        assert client.requests_sent == 1 and sleeps == []
    assert (info.value.status, info.value.code) == (400, -1121)
    assert "NOPEUSDT" in str(info.value)


def test_connection_errors_are_retried_then_reported(recording):
    with ReplayServer(recording) as srv:
        url = srv.url
    sleeps = Sleeps()
    with BinanceClient(url, max_attempts=2, sleep=sleeps, timeout=2) as client:
        with pytest.raises(ExchangeError, match="connection error"):
            client.klines_rows("BTCUSDT", "1m", JUNE_1, JUNE_1 + MINUTE_MS)
    assert len(sleeps) == 1


def test_over_budget_429_is_waited_out(recording):
    """A real weight budget: the client sleeps the server's Retry-After (to the next minute window)."""
    sleeps = Sleeps()
    if 60 - time.time() % 60 < 3:  # weight windows are wall-clock minutes: stay inside one
        time.sleep(60 - time.time() % 60 + 0.1)
    with ReplayServer(recording, ReplayKnobs(weight_budget=3)) as srv:
        with BinanceClient(srv.url, sleep=sleeps, max_attempts=2) as client:
            client.ping()
            client.klines_rows("BTCUSDT", "1m", JUNE_1, JUNE_1 + MINUTE_MS)  # weight 1 + 2 = budget
            with pytest.raises(ExchangeError, match="HTTP 429"):
                client.ping()
    assert len(sleeps) == 1 and 1 <= sleeps[0] <= 60
