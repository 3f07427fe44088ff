"""The code location loads as the UI would load it; CLI inputs fail with errors that name the input;
the daily schedule asks for yesterday x every symbol in one run."""

from __future__ import annotations

import datetime as dt
import json
import os

import dagster as dg
import pytest

from crypto_lambda_app.cli import main


def test_code_location_loads_with_assets_checks_jobs_schedules():
    from crypto_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    names = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_klines_1m", "daily_ohlcv", "daily_history_1d", "daily_filled", "realized_vol_daily"} <= names
    checks = {k.name for k in graph.asset_check_keys}
    assert {"no_duplicate_minutes", "ohlc_sane", "no_gaps", "rv_range_agreement"} <= checks
    assert defs.resolve_job_def("batch_minutes_job") and defs.resolve_job_def("batch_series_job")
    assert defs.resolve_job_def("realized_vol_job")
    assert {s.name for s in defs.schedules} == {"daily_batch_schedule", "daily_series_schedule",
                                                "daily_volatility_schedule", "lake_maintenance_schedule"}
    assert defs.resolve_job_def("lake_maintenance_job") and "lake_maintenance" in names


@pytest.mark.parametrize("automation", ["on", "off"])
def test_automation_env_decides_whether_schedules_and_sensors_start(automation, lambda_home, monkeypatch):
    from crypto_assets.definitions import build_defs
    from crypto_lambda.config import AUTOMATION_ENV, load_settings

    monkeypatch.setenv(AUTOMATION_ENV, automation)
    repo = build_defs(load_settings()).get_repository_def()
    want = "RUNNING" if automation == "on" else "STOPPED"
    assert {s.name: s.default_status.value for s in repo.sensor_defs} == {
        "speed_output_sensor": want, "gap_repair_sensor": want, "automation_condition_sensor": want}
    assert {s.default_status.value for s in repo.schedule_defs} == {want}
    # our automation sensor covers every asset with a condition, so Dagster adds no stopped default one
    [automation_sensor] = [s for s in repo.sensor_defs if isinstance(s, dg.AutomationConditionSensorDefinition)]
    targeted = automation_sensor.asset_selection.resolve(repo.asset_graph)
    assert {dg.AssetKey("serving_daily"), dg.AssetKey("daily_filled"), dg.AssetKey("forecasts")} <= targeted


def test_serving_daily_follows_a_speed_update_although_most_speed_days_are_missing(lambda_home):
    """Every day of speed_daily maps onto a symbol's serving partition and most never exist (the batch layer has
    them): plain eager() would wait for them forever. One new speed bar must request that symbol's serving."""
    from crypto_assets.definitions import build_defs
    from crypto_lambda.config import load_settings
    from crypto_lambda.timeutil import today_utc

    defs = build_defs(load_settings())
    selection = dg.AssetSelection.assets("serving_daily")
    with dg.instance_for_test() as instance:
        first = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection)
        assert first.total_requested == 0  # nothing changed yet
        instance.report_runless_asset_event(
            dg.AssetMaterialization("speed_daily", partition=f"{today_utc()}|BTCUSDT"))
        second = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=first.cursor)
        assert second.get_requested_partitions(dg.AssetKey("serving_daily")) == {"BTCUSDT"}


def test_schedule_requests_yesterday_for_all_symbols_in_one_run(lambda_home):
    from crypto_assets.definitions import build_defs
    from crypto_lambda.config import load_settings

    defs = build_defs(load_settings())
    schedule = defs.resolve_schedule_def("daily_batch_schedule")
    when = dt.datetime(2026, 3, 2, 0, 10, tzinfo=dt.UTC)
    request = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=when)).run_requests[0]
    assert request.tags["dagster/asset_partition_range_start"] == "2026-03-01|BTCUSDT"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-03-01|ETHUSDT"
    assert request.run_key == "batch-2026-03-01"


@pytest.mark.parametrize("argv, needle", [
    (["backfill", "--start", "2025-13-01"], "--start '2025-13-01'"),
    (["backfill", "--symbols", "btc/../x"], "'BTC/../X'"),
    (["backfill", "--symbols", "XRPUSDT"], "XRPUSDT are not configured"),
])
def test_cli_rejects_bad_input_naming_it(argv, needle, lambda_home, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert not (lambda_home / "lake").exists()


def test_bad_environment_is_named(lambda_home, monkeypatch, capsys):
    monkeypatch.setenv("CRYPTO_LAMBDA_START", "yesterday")
    assert main(["status"]) == 2
    assert "CRYPTO_LAMBDA_START 'yesterday'" in capsys.readouterr().err


def test_status_json_on_empty_home(lambda_home, capsys):
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert set(status["symbols"]) == {"BTCUSDT", "ETHUSDT"}
    assert status["healthy"] is False  # nothing materialized yet: every day is missing
    assert all(s["missing_days"] > 0 for s in status["symbols"].values())


def test_history_of_an_unknown_table_lists_the_tables(lambda_home, capsys):
    assert main(["history", "no_such_table"]) == 2
    err = capsys.readouterr().err
    assert "'no_such_table'" in err and "serving_daily" in err and "forecast_metrics" in err
    assert main(["history", "serving_daily"]) == 2  # known, never written: says so
    assert "no commits yet" in capsys.readouterr().err


@pytest.mark.parametrize("as_of, needle", [("yesterday", "--as-of 'yesterday'"),
                                           ("nope=3", "unknown table 'nope'")])
def test_query_rejects_a_bad_as_of_before_starting_spark(as_of, needle, lambda_home, capsys):
    assert main(["query", "SELECT 1", "--as-of", as_of]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("command", ["demo", "import", "backfill", "status", "replay-exchange", "history", "query",
                                     "cluster", "cluster up", "cluster down", "cluster status"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command.split(), "--help"])
    assert exc.value.code == 0
    assert "usage: crypto-lambda" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["BTCUSDT\n", "btcusdt", "BTC", "BTC/USDT", "../ETHUSDT", "A" * 21, ""])
def test_a_symbol_is_refused_unless_it_is_exactly_5_to_20_of_a_z_0_9(bad: str) -> None:
    from crypto_lambda.config import validate_symbol

    assert validate_symbol("BTCUSDT") == "BTCUSDT"
    with pytest.raises(ValueError, match="is invalid"):
        validate_symbol(bad)


def test_demo_streams_today_up_to_now_or_to_the_recordings_end() -> None:
    """The demo replays today's recorded minutes; after 18:27 UTC the sample's last day has ended, and a window
    ending at now would wait for minutes that never come (the demo then failed every evening)."""
    from crypto_lambda.timeutil import MINUTE_MS, day_start_ms, today_utc
    from crypto_lambda_app.demo import stream_window

    midnight = day_start_ms(today_utc())
    ends_at = midnight + (18 * 60 + 28) * MINUTE_MS
    assert stream_window(midnight + 12 * 3_600_000 + 30_000, ends_at) == (midnight, midnight + 12 * 3_600_000)
    assert stream_window(midnight + 20 * 3_600_000, ends_at) == (midnight, ends_at)
    assert stream_window(midnight + 10 * MINUTE_MS, ends_at) == (midnight - 50 * MINUTE_MS, midnight + 10 * MINUTE_MS)
    assert stream_window(midnight + 20 * 3_600_000) == (midnight, midnight + 20 * 3_600_000)  # no recording given


def test_cluster_refuses_a_remote_host_and_says_when_none_runs(lambda_home, monkeypatch, capsys):
    """Nothing is started: a non-loopback bind is refused before any process; status and down on a home without a
    cluster say so (status exits 3, like a service manager's "not running")."""
    assert main(["cluster", "up", "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert not (lambda_home / "spark-cluster").exists()
    assert main(["cluster", "status", "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["running"] is False
    assert main(["cluster", "down"]) == 0
    assert "nothing was running" in capsys.readouterr().out

    from crypto_lambda import spark

    monkeypatch.delenv(spark.SPARK_CONF_ENV, raising=False)
    monkeypatch.delenv("SPARK_MASTER", raising=False)
    assert "spark.executor.memory" not in spark.spark_conf()  # local[N]: executors live in the driver
    monkeypatch.setenv("SPARK_MASTER", "spark://127.0.0.1:7077")
    conf = spark.spark_conf()
    assert conf["spark.executor.memory"] == spark.CLUSTER_SPARK_CONF["spark.executor.memory"]
    assert {k: v for k, v in conf.items() if k not in spark.CLUSTER_SPARK_CONF and k != "spark.master"} == {
        k: v for k, v in spark.spark_conf(extra={"spark.master": "local[2]"}).items() if k != "spark.master"}
    monkeypatch.setenv(spark.SPARK_CONF_ENV, "spark.executor.memory=512m")  # the deployment's word wins
    assert spark.spark_conf()["spark.executor.memory"] == "512m"


def test_laptop_instance_is_sqlite_and_an_operators_dagster_yaml_is_kept(lambda_home, monkeypatch, tmp_path):
    """The default DAGSTER_HOME gets the top-level dagster.yaml: SQLite files under it, no DAGSTER_PG_* needed;
    a DAGSTER_HOME that already holds an instance config (deploy/dagster.yaml) keeps it untouched."""
    from dagster._core.storage.runs import SqliteRunStorage

    from crypto_lambda.config import ensure_dagster_home, load_settings
    from tests.support import REPO

    for key in [k for k in os.environ if k.startswith("DAGSTER_PG_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DAGSTER_HOME", "unset-below")  # so the value ensure_dagster_home exports is undone
    monkeypatch.delenv("DAGSTER_HOME")
    path = ensure_dagster_home(load_settings())
    assert path == lambda_home / "dagster"
    assert (path / "dagster.yaml").read_bytes() == (REPO / "dagster.yaml").read_bytes()
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, SqliteRunStorage)
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 2
    assert list(path.rglob("*.db"))

    operator = tmp_path / "operator"
    operator.mkdir()
    (operator / "dagster.yaml").write_bytes((REPO / "deploy" / "dagster.yaml").read_bytes())
    monkeypatch.setenv("DAGSTER_HOME", str(operator))
    assert ensure_dagster_home(load_settings()) == operator
    assert (operator / "dagster.yaml").read_bytes() == (REPO / "deploy" / "dagster.yaml").read_bytes()
