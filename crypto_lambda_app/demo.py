"""`make demo`: the whole Lambda loop on REAL recorded Binance data, bounded, then a summary.

1. Batch: start the replay exchange (recording shifted so its last day is today), import the first half of
   the recorded minutes from the shipped freqtrade files, backfill every day of the minute window x 2 symbols
   through Dagster (the rest from the exchange's REST API; older history from its 1d klines).
2. Speed: start the embedded broker, the producer (Binance WebSocket protocol from the replay exchange ->
   Kafka) and the Spark streaming consumer (continuous, 5 s trigger); replay today's recorded minutes so far,
   compressed into about ``stream_seconds``; stop once the consumer has caught up.
3. Serving: the speed-output sensor's tick -> speed_daily runs -> serving_job (batch wins, speed for today).
4. Forecasts: realized_vol_job over the minute window (realized variance from the minutes), then forecast_job
   on serving_daily for every symbol (full rolling-origin CV of the price and the daily variance), with checks.
5. Summary: rows per layer, the sources of the last 7 days, check results, forecast table, chart paths, phase
   timings. Everything started here is stopped before returning; exit code 0 only if every layer delivered.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from crypto_lambda import lake as lk
from crypto_lambda.config import SAMPLE_1M, Settings, ensure_dagster_home, load_settings, save_settings
from crypto_lambda.timeutil import DAY_MS, MINUTE_MS, day_start_ms, now_ms, today_utc, yesterday_utc

log = logging.getLogger("crypto_lambda_app.demo")
TRADES_PER_MINUTE = 20  # synthetic trades per recorded minute: consistent with its OHLCV (see replay_ws)


@dataclass
class DemoState:
    settings: Settings | None = None
    phases: dict[str, float] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)
    ok: dict[str, bool] = field(default_factory=dict)


class _Phase:
    """Times a phase and logs its start/end, so a long demo shows progress."""

    def __init__(self, state: DemoState, name: str) -> None:
        self.state, self.name = state, name

    def __enter__(self) -> None:
        self.started = time.monotonic()
        log.info("=== %s ===", self.name)

    def __exit__(self, *exc: object) -> None:
        self.state.phases[self.name] = time.monotonic() - self.started
        log.info("=== %s done in %.1f s ===", self.name, self.state.phases[self.name])


def run_demo(days: int = 90, stream_seconds: float = 60.0, forecasts: bool = True) -> int:
    from replay_exchange.recording import Recording
    from replay_exchange.server import ReplayKnobs, ReplayServer

    started = time.monotonic()
    state = DemoState()
    recording = Recording.from_sample(shift_to_today=True)
    last = yesterday_utc()
    first = last - dt.timedelta(days=days - 1)
    with ReplayServer(recording, ReplayKnobs()) as server:
        os.environ["BINANCE_API_URL"] = server.url
        os.environ.setdefault("CRYPTO_LAMBDA_MINUTE_START", first.isoformat())
        settings = state.settings = load_settings()
        save_settings(settings)
        log.info("replay exchange at %s (recording shifted by %d days); state in %s", server.url,
                 recording.shift_ms // DAY_MS, settings.home)
        import dagster as dg

        from crypto_assets.definitions import build_defs

        ensure_dagster_home(settings)
        instance = dg.DagsterInstance.get()
        defs = build_defs(settings)
        with _Phase(state, "batch: import + backfill"):
            _batch(state, defs, instance, recording, first, last, days)
        with _Phase(state, "speed: replayed live stream"):
            _stream(state, recording, stream_seconds)
        with _Phase(state, "serving: sensor -> speed_daily -> serving_daily"):
            _serving(state, defs, instance)
        if forecasts:
            with _Phase(state, "forecasts"):
                _forecasts(state, defs, instance, first, last)
        from crypto_assets.status import collect_status

        status = collect_status(settings, instance)
    state.phases["total"] = time.monotonic() - started
    print(summary(state, status))
    ok = all(state.ok.values()) and status["healthy"]
    return 0 if ok else 1


def _batch(state: DemoState, defs, instance, recording, first: dt.date, last: dt.date, days: int) -> None:
    from crypto_assets.backfill import run_backfill
    from crypto_lambda.imports import import_paths

    settings = state.settings
    half = first + dt.timedelta(days=days // 2 - 1)
    imported = import_paths([SAMPLE_1M], settings, shift_days=recording.shift_ms // DAY_MS, start=first, end=half)
    log.info("imported %d rows (%d quarantined) for %s..%s", imported.rows_good, imported.rows_quarantined,
             first, half)
    outcome = run_backfill(defs, settings, instance, first=first, last=last)
    state.notes["batch_runs"] = f"{len(outcome.runs)} ({outcome.partitions} daily x symbol partitions)"
    state.ok["batch"] = outcome.success


def stream_window(now_ms: int, recorded_until_ms: int | None = None) -> tuple[int, int]:
    """Today's recorded minutes so far (at least the last hour, so a run just after midnight still streams),
    ending where the recording does when that is earlier (the sample's last day ends at 18:27 UTC)."""
    end = now_ms // MINUTE_MS * MINUTE_MS
    if recorded_until_ms is not None:
        end = min(end, recorded_until_ms)
    return min(day_start_ms(today_utc()), end - 60 * MINUTE_MS), end


def _stream(state: DemoState, recording, stream_seconds: float) -> None:
    from crypto_lambda.lake.speed import read_speed_bars
    from crypto_lambda_app.harness import ReplayRun
    from streaming_service import consumer
    from streaming_service.broker import EmbeddedBroker
    from streaming_service.topics import SpeedPaths, Topics

    settings = state.settings
    paths = SpeedPaths.of(settings)
    topics = Topics.with_prefix()
    recorded_until = recording.served_until(settings.symbols)
    start, end = stream_window(now_ms(), recorded_until)
    minutes = (end - start) // MINUTE_MS
    speed = max(1.0, minutes * 60 / stream_seconds)
    (settings.home / "logs").mkdir(parents=True, exist_ok=True)
    # The demo's broker is its own and new on every run (its data folder is removed before and after), so a
    # previous demo's checkpoint (offsets of other topics, a watermark past today's early minutes) and its
    # output would not fit: both are reset and today is replayed anew. `make up` keeps $HOME/kafka instead.
    data_dir = settings.home / "tmp" / "demo-kafka"
    shutil.rmtree(data_dir, ignore_errors=True)
    with EmbeddedBroker(data_dir, log_path=settings.home / "logs" / "demo-broker.log") as broker:
        broker.create_topics(topics.all(), partitions=2)
        config = consumer.ConsumerConfig(bootstrap=broker.bootstrap, paths=paths, topics=topics, trigger_seconds=5)
        consumer.reset(config)
        stop = threading.Event()
        failure: list[BaseException] = []

        def consume() -> None:
            try:
                consumer.run(config, stop=stop)
            except BaseException as exc:  # surfaced by the main thread
                failure.append(exc)

        thread = threading.Thread(target=consume, name="demo-consumer", daemon=True)
        thread.start()
        log.info("streaming %d recorded minutes x %d symbols at %.0fx (about %.0f s) through %s", minutes,
                 len(settings.symbols), speed, minutes * 60 / speed, broker.bootstrap)
        try:
            with ReplayRun(recording, broker.bootstrap, topics, paths.spill, start, end, speed=speed,
                           symbols=settings.symbols, trades_per_minute=TRADES_PER_MINUTE) as replay:
                replay.wait_until_done(timeout=stream_seconds * 3 + 120)
                stats = replay.producer.publisher.stats
                state.notes["messages"] = stats.acked
            # The watermark (2 minutes) holds back the newest minutes; the provisional bar already has them.
            wanted = pd.Timestamp(end - 4 * MINUTE_MS, unit="ms", tz="UTC")
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not failure:
                bars = read_speed_bars(settings)
                newest = bars.groupby("symbol")["open_time"].max() if len(bars) else pd.Series(dtype=object)
                if len(newest) == len(settings.symbols) and (newest >= wanted).all():
                    break
                time.sleep(2)
        finally:  # the queries must end before their broker does, also when the replay timed out
            stop.set()
            thread.join(timeout=120)
    shutil.rmtree(data_dir, ignore_errors=True)
    if failure:
        raise RuntimeError(f"streaming consumer failed: {failure[0]}") from failure[0]
    bars = read_speed_bars(settings)
    state.notes["speed_bars"] = len(bars)
    state.notes["stream_window"] = (f"{pd.Timestamp(start, unit='ms', tz='UTC'):%Y-%m-%d %H:%M}.."
                                    f"{pd.Timestamp(end, unit='ms', tz='UTC'):%H:%M} UTC, {minutes} minutes")
    state.ok["speed"] = len(bars) > 0 and not thread.is_alive()


def _serving(state: DemoState, defs, instance) -> None:
    import dagster as dg

    from crypto_assets.defs.serving.jobs import SERVING_JOB
    from crypto_assets.defs.speed.jobs import SPEED_JOB
    from crypto_assets.defs.speed.sensors import SPEED_OUTPUT_SENSOR
    from crypto_assets.lib.partitions import symbol_range_tags

    sensor = defs.resolve_sensor_def(SPEED_OUTPUT_SENSOR)
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    job = defs.resolve_job_def(SPEED_JOB)
    keys = [r.partition_key for r in tick.run_requests]
    log.info("speed_output_sensor requested %d speed_daily partitions: %s", len(keys), keys)
    speed_ok = all(job.execute_in_process(instance=instance, partition_key=k).success for k in keys)
    result = defs.resolve_job_def(SERVING_JOB).execute_in_process(
        instance=instance, tags=symbol_range_tags(state.settings.symbols), raise_on_error=False)
    state.notes["sensor_requests"] = len(keys)
    state.ok["serving"] = bool(keys) and speed_ok and result.success


def _forecasts(state: DemoState, defs, instance, first: dt.date, last: dt.date) -> None:
    from crypto_assets.defs.batch.jobs import VOLATILITY_JOB
    from crypto_assets.defs.forecast.jobs import FORECAST_JOB
    from crypto_assets.lib.partitions import range_tags, symbol_range_tags

    vol = defs.resolve_job_def(VOLATILITY_JOB).execute_in_process(
        instance=instance, tags=range_tags(first, last, state.settings.symbols), raise_on_error=False)
    result = defs.resolve_job_def(FORECAST_JOB).execute_in_process(
        instance=instance, tags=symbol_range_tags(state.settings.symbols), raise_on_error=False)
    state.ok["forecasts"] = vol.success and result.success


def _count_rows(folder: Path) -> int:
    """Rows in a Delta table's newest version (files older versions left behind do not count)."""
    from crypto_lambda.lake.read import open_folder
    from crypto_lambda.lake.tables import is_table

    return open_folder(folder).to_pyarrow_dataset().count_rows() if is_table(folder) else 0


def _last_days(settings: Settings, symbol: str, n: int = 7) -> list[str]:
    from crypto_lambda.serving import read_serving

    served = read_serving(settings, symbol)
    if served is None:
        return ["  (no serving_daily yet)"]
    rows = served.sort_values("date").tail(n)
    return [f"  {r.date}  {r.source:<12} close {r.close:>12,.2f}{'  provisional' if r.is_provisional else ''}"
            for r in rows.itertuples()]


def _forecast_lines(settings: Settings) -> list[str]:
    from crypto_lambda.forecast.outputs import read_latest
    from crypto_lambda.forecast.report import format_report

    lines = [f"  {'symbol':<9} {'champion':<28} {'MAPE 1-30':>9} {'naive':>7} {'seeds':>7} {'cov80':>6} "
             f"{'vol champion':<12} {'QLIKE vs naive':>14}"]
    charts, infos = [], []
    for symbol in settings.symbols:
        info = read_latest(settings.home, symbol)
        if info is None:
            lines.append(f"  {symbol:<9} (no forecast)")
            continue
        infos.append(info)
        vol = info.get("volatility") or {}
        fig = info["figures"]
        champ = fig[info["champion"]]
        naive = fig.get("naive", {}).get("mean_mape", float("nan"))
        seeds = fig.get("prophet_seeds", {}).get("mean_mape", float("nan"))
        lines.append(f"  {symbol:<9} {info['champion']:<28} {champ['mean_mape']:>8.2f}% {naive:>6.2f}% "
                     f"{seeds:>6.2f}% {champ['coverage80']:>5.1f}% {vol.get('champion', '-'):<12} "
                     f"{vol.get('skill_qlike', float('nan')):>14.3f}")
        charts += [f"  {symbol}: {info['files'][k]}" for k in ("chart_html", "chart_png", "vol_chart_html",
                                                               "vol_chart_png") if k in info["files"]]
    return lines + ["", format_report(infos), "", "charts:", *charts]


def summary(state: DemoState, status: dict) -> str:
    from crypto_assets.status import format_status
    from streaming_service.topics import SpeedPaths

    settings = state.settings
    rows = [(name, _count_rows(settings.lake / name)) for name in
            (lk.RAW_KLINES, lk.DAILY_OHLCV, lk.DAILY_HISTORY, lk.DAILY_FILLED)]
    rows += [("speed 1m bars", int(state.notes.get("speed_bars", 0))),
             (lk.SPEED_DAILY, _count_rows(settings.lake / lk.SPEED_DAILY)),
             (lk.SERVING_DAILY, _count_rows(settings.lake / lk.SERVING_DAILY))]
    quarantined = _count_rows(SpeedPaths.of(settings).quarantine)
    lines = ["", "=== crypto-lambda demo: batch + speed + serving + forecasts ===",
             f"state directory     {settings.home}",
             f"dagster batch runs  {state.notes.get('batch_runs', '-')}",
             f"stream              {state.notes.get('stream_window', '-')}, "
             f"{state.notes.get('messages', 0):,} Kafka messages, {quarantined} quarantined",
             f"sensor              {state.notes.get('sensor_requests', 0)} speed_daily partitions requested", "",
             "rows per layer:", *[f"  {name:<18} {n:>10,}" for name, n in rows], ""]
    for symbol in settings.symbols:
        lines += [f"{symbol}, last 7 days of serving_daily (batch wins, speed for today):",
                  *_last_days(settings, symbol), ""]
    lines += ["forecasts (rolling-origin CV; price: mean MAPE over 1-30 days, 80 % interval coverage; volatility: "
              "champion and its mean QLIKE / naive's):",
              *_forecast_lines(settings), "", format_status(status), "", "elapsed:"]
    lines += [f"  {name:<48} {seconds:>7.1f} s" for name, seconds in state.phases.items()]
    failed = [layer for layer, ok in state.ok.items() if not ok]
    lines.append("layers failed: " + ", ".join(failed) if failed else "every layer delivered")
    return "\n".join(lines)
