"""The Lambda loop end to end: replay exchange -> producer -> broker -> Spark streaming -> sensor ->
speed_daily -> serving_daily, then a batch backfill takes over the days it completes. Real WebSocket, real
Apache Kafka, real Spark, real Dagster instance."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pandas as pd
import pytest

from crypto_lambda.config import load_settings
from crypto_lambda.timeutil import MINUTE_MS, day_start_ms, yesterday_utc
from tests.support import temp_instance

pytestmark = pytest.mark.timeout(600)
SAMPLE_DAILY = "crypto_lambda/sample/daily/{}_1d.csv"


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, spark, today_server, broker):
    from crypto_lambda_app.harness import ReplayRun
    from streaming_service import consumer
    from streaming_service.topics import SpeedPaths, Topics

    home = tmp_path_factory.mktemp("loop") / "home"
    recording = today_server.recording
    full_day = yesterday_utc() - dt.timedelta(days=1)
    start = day_start_ms(full_day)
    end = start + 86_400_000 + 30 * MINUTE_MS  # a whole day plus half an hour of the next (partial) day
    with pytest.MonkeyPatch.context() as mp:  # the session's Kafka, topics of their own
        mp.setenv("CRYPTO_LAMBDA_HOME", str(home))
        mp.setenv("BINANCE_API_URL", today_server.url)
        mp.setenv("CRYPTO_LAMBDA_START", full_day.isoformat())
        mp.setenv("CRYPTO_LAMBDA_MINUTE_START", full_day.isoformat())
        settings = load_settings()
        paths = SpeedPaths.of(settings)
        topics = Topics.with_prefix("loop")
        broker.create_topics(topics.all(), partitions=2)
        with ReplayRun(recording, broker.bootstrap, topics, paths.spill, start, end, speed=7200,
                       trades_per_minute=6) as run:
            run.wait_until_done(timeout=240)
        consumer.run(consumer.ConsumerConfig(bootstrap=broker.bootstrap, paths=paths, topics=topics,
                                             available_now=True), spark)
        from crypto_assets.definitions import build_defs

        yield {"settings": settings, "defs": build_defs(settings), "day": full_day,
               "instance": temp_instance(home / "dagster"), "recording": recording}


def recorded(symbol: str, day: dt.date, shift_days: int) -> pd.Series:
    frame = pd.read_csv(SAMPLE_DAILY.format(symbol))
    frame["date"] = pd.to_datetime(frame["timestamp"]).dt.date + dt.timedelta(days=shift_days)
    return frame.set_index("date").loc[day]


def _sensor(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    sensor = defs.resolve_sensor_def("speed_output_sensor")
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def test_sensor_requests_each_changed_partition_once_then_serving_matches_binance(loop):
    from crypto_assets.defs.serving.jobs import SERVING_JOB
    from crypto_assets.defs.speed.jobs import SPEED_JOB
    from crypto_assets.lib.partitions import symbol_range_tags
    from crypto_lambda.timeutil import DAY_MS

    settings, defs, instance, day = loop["settings"], loop["defs"], loop["instance"], loop["day"]
    next_day = day + dt.timedelta(days=1)
    tick = _sensor(defs, instance, None)
    keys = sorted(r.partition_key for r in tick.run_requests)
    assert keys == sorted(f"{d}|{s}" for d in (day, next_day) for s in settings.symbols)
    assert len({r.run_key for r in tick.run_requests}) == 4
    again = _sensor(defs, instance, tick.cursor)
    assert not again.run_requests  # nothing changed since: no second request

    job = defs.resolve_job_def(SPEED_JOB)
    for request in tick.run_requests:
        assert job.execute_in_process(instance=instance, partition_key=request.partition_key).success
    result = defs.resolve_job_def(SERVING_JOB).execute_in_process(
        instance=instance, tags=symbol_range_tags(settings.symbols))
    assert result.success

    shift_days = loop["recording"].shift_ms // DAY_MS
    from crypto_lambda.serving import read_serving

    for symbol in settings.symbols:
        served = read_serving(settings, symbol).set_index("date")
        bar, want = served.loc[day], recorded(symbol, day, shift_days)
        assert bar["source"] == "speed" and not bar["is_provisional"]
        assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (
            want["open"], want["high"], want["low"], want["close"])
        assert bar["volume"] == pytest.approx(want["volume"], rel=1e-9)
        assert served.loc[next_day, "source"] == "speed" and served.loc[next_day, "is_provisional"]


def test_batch_backfill_takes_over_speed_days(loop, capsys):
    from crypto_assets.backfill import run_backfill
    from crypto_assets.defs.serving.jobs import SERVING_JOB
    from crypto_assets.lib.partitions import symbol_range_tags
    from crypto_lambda_app.cli import main

    settings, defs, instance, day = loop["settings"], loop["defs"], loop["instance"], loop["day"]
    assert run_backfill(defs, settings, instance).success
    result = defs.resolve_job_def(SERVING_JOB).execute_in_process(
        instance=instance, tags=symbol_range_tags(settings.symbols))
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["speed_batch_agreement"].passed  # the stream reproduced the exchange's bars
    assert checks["speed_batch_agreement"].metadata["days_compared"].value == 2
    assert checks["serving_fresh"].passed
    from crypto_lambda.serving import read_serving

    for symbol in settings.symbols:
        served = read_serving(settings, symbol).set_index("date")
        assert served.loc[day, "source"] == "batch"
        assert served.loc[day + dt.timedelta(days=1), "source"] == "batch"  # provisional day replaced
    assert main(["query", "SELECT count(*) AS n FROM speed_klines_1m", "--format", "json"]) == 0
    # 30 streamed minutes of the next day, a 2-minute watermark: minutes 0-26 are committed
    assert json.loads(capsys.readouterr().out)[0]["n"] == 2 * (1440 + 27)
