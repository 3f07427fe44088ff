"""Forecast outputs in the lake (Delta tables written by Spark): past runs stay reachable, the latest pointer
moves, and the forecast checks read what was written. The models themselves are unit-tested
(tests/unit/test_forecast_units.py, test_forecast_volatility.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from crypto_lambda.forecast.config import NAIVE, ForecastConfig
from crypto_lambda.forecast.pipeline import run_forecasts, sample_daily
from tests.support import VOL_SYMBOLS as SYMBOLS
from tests.unit.test_forecast_units import SMALL


@pytest.fixture(scope="module")
def small_results():
    return run_forecasts({s: sample_daily(s) for s in ("BTCUSDT", "ETHUSDT")}, SMALL)


def test_outputs_keep_past_runs_and_point_to_the_latest(tmp_path: Path, small_results, spark):
    from crypto_lambda.forecast.outputs import VIEW_COLUMNS, read_latest, read_metrics, write_outputs, write_run
    from crypto_lambda.lake import read as lr

    res = small_results["BTCUSDT"]
    first = write_outputs(res, tmp_path, tmp_path / "lake", "20260101T000000Z-aaaaaaaa", spark=spark)
    second = write_run(small_results, tmp_path, tmp_path / "lake", "20260102T000000Z-bbbbbbbb", spark=spark,
                       run_id="run-2")["BTCUSDT"]
    for info in (first, second):
        assert all(Path(p).exists() for p in info["files"].values())
    assert read_latest(tmp_path, "BTCUSDT")["stamp"] == "20260102T000000Z-bbbbbbbb"
    metrics = read_metrics(tmp_path / "lake", "BTCUSDT")
    assert set(VIEW_COLUMNS) <= set(metrics.columns) and set(metrics["run_stamp"]) == {second["stamp"]}
    assert metrics["is_champion"].sum() == len(ForecastConfig().report_horizons) + 1
    # one commit per table for both symbols of the run; the first run's rows stay reachable by time travel
    versions = second["lake_versions"]
    assert versions["forecast_metrics"] == first["lake_versions"]["forecast_metrics"] + 1
    assert set(lr.read(tmp_path / "lake", "forecasts")["symbol"]) == {"BTCUSDT", "ETHUSDT"}
    old = read_metrics(tmp_path / "lake", "BTCUSDT", as_of=first["lake_versions"]["forecast_metrics"])
    assert set(old["run_stamp"]) == {first["stamp"]}
    assert lr.history(tmp_path / "lake", "forecasts", limit=1)[0]["user_metadata"]["run_id"] == "run-2"
    csv = pd.read_csv(first["files"]["metrics_csv"])
    assert len(csv) == len(metrics) and json.loads(Path(first["files"]["summary"]).read_text())["champion"]


def test_checks_pass_on_honest_metrics_and_flag_tampered_ones(tmp_path: Path, small_results, spark):
    from crypto_assets.defs.forecast.checks import interval_coverage_report, mape_vs_naive_report
    from crypto_lambda.config import Settings
    from crypto_lambda.forecast.outputs import read_metrics, write_run
    from crypto_lambda.lake import write as lw
    from crypto_lambda.lake.tables import FORECAST_METRICS

    settings = Settings(home=tmp_path, symbols=("BTCUSDT", "ETHUSDT"))
    passed, severity, meta = mape_vs_naive_report(settings)
    assert not passed and severity.value == "ERROR" and meta["reason"]  # nothing on disk yet
    write_run(small_results, tmp_path, settings.lake, "20260101T000000Z-cccccccc", spark=spark)
    assert mape_vs_naive_report(settings)[0] is True
    per_h = {s: [r.metric(r.champion, h, "coverage80") for h in ("1", "7", "14", "30")]
             for s, r in small_results.items()}
    assert interval_coverage_report(settings)[0] is all(70 <= c <= 90 for v in per_h.values() for c in v), per_h

    def overwrite(frame):
        lw.replace(spark, settings.lake, FORECAST_METRICS, frame, symbols=["ETHUSDT"])

    honest = read_metrics(settings.lake, "ETHUSDT", target=None)
    tampered = honest.assign(is_champion=honest["model"] == "drift")  # crown drift, then make it lose to naive
    tampered.loc[tampered["is_champion"], "mape"] = tampered.loc[tampered["model"] == NAIVE, "mape"].to_numpy() + 1
    overwrite(tampered)
    passed, severity, meta = mape_vs_naive_report(settings)
    assert not passed and severity.value == "ERROR" and meta["worse_than_naive"].value == ["ETHUSDT"]

    tampered = honest.copy()
    tampered.loc[tampered["is_champion"], "coverage80"] = 50.0
    overwrite(tampered)
    pointer = tmp_path / "forecasts" / "latest" / "ETHUSDT.json"
    info = json.loads(pointer.read_text())
    info["thresholds"]["mape_ceiling_30d"] = 1.0
    pointer.write_text(json.dumps(info))
    passed, severity, meta = mape_vs_naive_report(settings)
    assert not passed and severity.value == "WARN" and meta["above_ceiling"].value == ["ETHUSDT"]
    passed, severity, meta = interval_coverage_report(settings)
    assert not passed and severity.value == "WARN" and "ETHUSDT" in meta["outside_band"].value


def test_outputs_hold_both_targets_and_the_checks_read_the_price_rows(tmp_path: Path, results, spark):
    from crypto_assets.defs.forecast.checks import interval_coverage_report, mape_vs_naive_report
    from crypto_lambda.config import Settings
    from crypto_lambda.forecast.outputs import read_metrics, write_run
    from crypto_lambda.lake import read as lr
    from crypto_lambda.lake import write as lw
    from crypto_lambda.lake.tables import FORECAST_METRICS, VOL_FORECASTS

    settings = Settings(home=tmp_path, symbols=SYMBOLS)
    infos = write_run(results, tmp_path, settings.lake, "20260101T000000Z-dddddddd", spark=spark)
    vol_rows = lr.read(settings.lake, VOL_FORECASTS)
    assert set(vol_rows["symbol"]) == set(results) and vol_rows["vol"].gt(0).all()
    for symbol, res in results.items():
        info = infos[symbol]
        for key in ("vol_forecast", "vol_metrics", "vol_metrics_csv", "vol_cv_points", "vol_chart_html",
                    "vol_chart_png", "lake_vol_forecast"):
            assert Path(info["files"][key]).exists(), key
        assert info["volatility"]["champion"] == res.volatility.champion
    both = read_metrics(settings.lake, "BTCUSDT", target=None)
    assert set(both["target"]) == {"price", "volatility"}
    assert both.groupby("target")["is_champion"].sum().to_dict() == {"price": 5, "volatility": 4}
    price = read_metrics(settings.lake, "BTCUSDT")
    assert set(price["target"]) == {"price"} and price["qlike"].isna().all() and price["mape"].notna().all()
    assert mape_vs_naive_report(settings)[0] is True

    passed, _, meta = interval_coverage_report(settings)
    for symbol, res in results.items():
        per_h = {h: res.metric(res.champion, h, "coverage80") for h in ("1", "7", "14", "30")}
        assert meta["by_symbol"].value[symbol]["coverage80_by_horizon"] == pytest.approx(per_h)
        assert meta["by_symbol"].value[symbol]["horizons_outside"] == [h for h, c in per_h.items()
                                                                       if not 70 <= c <= 90]
    # one horizon outside the band is enough for a WARN, even when the mean is fine
    frame = read_metrics(settings.lake, "BTCUSDT", target=None)
    champ = frame["is_champion"] & (frame["target"] == "price")
    frame.loc[champ & frame["horizon"].isin(["1", "7", "14"]), "coverage80"] = 80.0
    frame.loc[champ & (frame["horizon"] == "30"), "coverage80"] = 60.0
    frame.loc[champ & (frame["horizon"] == "1-30"), "coverage80"] = 80.0
    lw.replace(spark, settings.lake, FORECAST_METRICS, frame, symbols=["BTCUSDT"])
    passed, severity, meta = interval_coverage_report(settings)
    assert not passed and severity.value == "WARN" and "BTCUSDT" in meta["outside_band"].value
    assert meta["by_symbol"].value["BTCUSDT"]["horizons_outside"] == ["30"]
    pointer = json.loads((tmp_path / "forecasts" / "latest" / "BTCUSDT.json").read_text())
    assert pointer["thresholds"]["coverage_horizons"] == [1, 7, 14, 30]
