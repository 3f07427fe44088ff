"""Malformed klines from the exchange are quarantined (the Delta table ``quarantine``, kind ``rest``) with a
reason and counted in the asset's metadata, while their good neighbours land in the partition."""

from __future__ import annotations

import dagster as dg
import pytest

from crypto_lambda.config import load_settings
from crypto_lambda.lake import quarantine
from crypto_lambda.lake import read as lr
from crypto_lambda.lake import tables as lt
from crypto_lambda.quality import is_complete_day  # noqa: I001
from crypto_lambda.timeutil import day_bounds_ms, yesterday_utc
from tests.support import temp_instance

EVERY = 97


@pytest.fixture()
def corrupt_stack(tmp_path, monkeypatch, spark):
    from replay_exchange.recording import Recording
    from replay_exchange.server import ReplayKnobs, ReplayServer

    home = tmp_path / "home"
    day = yesterday_utc()
    with ReplayServer(Recording.from_sample(shift_to_today=True), ReplayKnobs(corrupt_every_n=EVERY)) as server:
        monkeypatch.setenv("CRYPTO_LAMBDA_HOME", str(home))
        monkeypatch.setenv("BINANCE_API_URL", server.url)
        monkeypatch.setenv("CRYPTO_LAMBDA_SYMBOLS", "BTCUSDT")
        monkeypatch.setenv("CRYPTO_LAMBDA_START", day.isoformat())
        monkeypatch.setenv("CRYPTO_LAMBDA_MINUTE_START", day.isoformat())
        yield load_settings(), temp_instance(home / "dagster"), day


def test_corrupt_rows_are_quarantined_and_counted(corrupt_stack):
    from crypto_assets.backfill import run_backfill
    from crypto_assets.definitions import build_defs

    settings, instance, day = corrupt_stack
    start, end = day_bounds_ms(day)
    expected_bad = sum(1 for m in range(start // 60_000, end // 60_000) if m % EVERY == 0)
    assert expected_bad > 10

    outcome = run_backfill(build_defs(settings), settings, instance)
    assert outcome.success
    event = instance.get_latest_materialization_event(dg.AssetKey("raw_klines_1m"))
    assert event.asset_materialization.metadata["quarantined_rows"].value == expected_bad

    bad = quarantine.read(settings.lake, "rest")
    assert len(bad) == expected_bad and not settings.quarantine.exists()  # no side files any more
    assert set(bad["symbol"]) == {"BTCUSDT"} and bad["quarantined_at"].notna().all()
    assert set(bad["reason"]) == {"ohlc_violation"}
    assert (bad["open_time_ms"] // 60_000 % EVERY == 0).all()

    raw = lr.read(settings.lake, lt.RAW_KLINES, ["BTCUSDT"], start=day, end=day)
    assert len(raw) == 1440 - expected_bad == len(lr.read(settings.lake, lt.RAW_KLINES))
    assert raw["open_time"].dt.date.eq(day).all() and raw["date"].eq(day).all()
    # fewer than 99 % of minutes survived? then no_gaps must say so; otherwise it passes
    complete = is_complete_day(len(raw))
    assert outcome.checks["daily_filled:no_gaps"] is complete
