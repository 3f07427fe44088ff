"""gap_repair_sensor on a real lake layout and a real Dagster instance: the days a switched-off machine missed
are requested again as one range run, with incomplete days; a symbol without history is left alone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd

from crypto_lambda.lake import tables as lt
from crypto_lambda.lake import write as lw
from crypto_lambda.timeutil import today_utc, yesterday_utc


def _write_days(spark, lake: Path, symbol: str, minutes_by_day: dict[dt.date, int]) -> None:
    """What the batch layer leaves for materialized days: a minute in raw_klines_1m and a daily bar each."""
    days = sorted(minutes_by_day)
    raw = pd.DataFrame({"symbol": symbol, "open_time": pd.to_datetime(days, utc=True).as_unit("ms"), "open": 1.0,
                        "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0, "quote_volume": None, "trades": None,
                        "taker_buy_base": None, "taker_buy_quote": None, "source": "rest", "date": days})
    bars = pd.DataFrame({"symbol": symbol, "date": days, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
                         "volume": 1.0, "quote_volume": None, "trades": None, "source": "minutes",
                         "minutes_present": [minutes_by_day[d] for d in days]})
    lw.replace(spark, lake, lt.RAW_KLINES, raw, symbols=[symbol], start=days[0], end=days[-1])
    lw.replace(spark, lake, lt.DAILY_OHLCV, bars, symbols=[symbol], start=days[0], end=days[-1])


def test_downtime_and_incomplete_days_are_requested_once_as_one_range(lambda_home, monkeypatch, spark) -> None:
    from crypto_assets.definitions import build_defs
    from crypto_assets.defs.batch.sensors import repair_targets
    from crypto_assets.lib.partitions import range_tags
    from crypto_lambda.config import load_settings

    last = yesterday_utc()
    day = {n: last - dt.timedelta(days=n) for n in range(10)}
    monkeypatch.setenv("CRYPTO_LAMBDA_SYMBOLS", "BTCUSDT,ETHUSDT")
    monkeypatch.setenv("CRYPTO_LAMBDA_MINUTE_START", day[9].isoformat())
    settings = load_settings()
    _write_days(spark, settings.lake, "BTCUSDT", {**{day[n]: 1440 for n in (9, 8, 7)},
                                                 day[4]: 100})  # a day the stack saw only part of

    targets = repair_targets(settings)
    missing = f"missing:{today_utc()}"
    assert targets == {**{f"{day[n]}|BTCUSDT": missing for n in (6, 5, 3, 2, 1, 0)},
                       f"{day[4]}|BTCUSDT": "incomplete:100"}  # ETHUSDT has no history: not a repair

    defs = build_defs(settings)
    sensor = defs.resolve_sensor_def("gap_repair_sensor")
    with dg.instance_for_test() as instance:
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        [request] = tick.run_requests  # day 6 .. yesterday is contiguous: one single-run backfill
        assert request.tags.items() >= range_tags(day[6], day[0], ["BTCUSDT"]).items()
        assert set(request.tags["crypto_lambda/repair"].split(",")) == set(targets)
        again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs,
                                                             cursor=tick.cursor))
        assert not again.run_requests  # tried once; a failed "missing" day is retried the next day


def test_sensor_resource_and_partitions_see_the_settings_build_defs_was_given(lambda_home, monkeypatch, spark) -> None:
    """One source of truth: build_defs with one symbol while the environment names two. The lake resource the
    assets and checks read, the partitions, and the repair sensor's requests all use that one symbol."""
    from crypto_assets.definitions import build_defs
    from crypto_assets.lib.partitions import SYMBOL_DIM
    from crypto_lambda.config import Settings

    last = yesterday_utc()
    day = {n: last - dt.timedelta(days=n) for n in range(5)}
    monkeypatch.setenv("CRYPTO_LAMBDA_SYMBOLS", "BTCUSDT,ETHUSDT")  # what LakeResource used to re-read
    settings = Settings(home=lambda_home, symbols=("ETHUSDT",), start=day[4] - dt.timedelta(days=30),
                        minute_start=day[4], api_url="http://127.0.0.1:9")
    for symbol in ("BTCUSDT", "ETHUSDT"):  # both symbols have a hole: only the configured one is repaired
        _write_days(spark, settings.lake, symbol, {day[4]: 1440, day[0]: 1440})

    defs = build_defs(settings)
    lake = defs.resources["lake"]
    assert lake.settings() == settings
    raw = defs.resolve_assets_def(lt.RAW_KLINES).partitions_def
    assert raw.get_partitions_def_for_dimension(SYMBOL_DIM).get_partition_keys() == ["ETHUSDT"]
    with dg.instance_for_test() as instance:
        tick = defs.resolve_sensor_def("gap_repair_sensor").evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs))
    [request] = tick.run_requests
    assert request.tags["dagster/asset_partition_range_start"] == f"{day[3]}|ETHUSDT"
    assert request.tags["dagster/asset_partition_range_end"] == f"{day[1]}|ETHUSDT"
    assert all(key.endswith("|ETHUSDT") for key in request.tags["crypto_lambda/repair"].split(","))
