"""Forecast building blocks on small or synthetic data: metrics with known answers, cutoffs that cannot leak,
champion selection that cannot lose to naive, baseline intervals that mean what they say, outputs, checks."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crypto_lambda.forecast import cv
from crypto_lambda.forecast.config import (
    DEFAULT_GRID,
    DRIFT_SPEC,
    NAIVE,
    NAIVE_SPEC,
    SEEDS_SPEC,
    ForecastConfig,
    ModelSpec,
)
from crypto_lambda.forecast.metrics import by_horizon, choose_champion, coverage, mae, mape, mase, rmse, summarize
from crypto_lambda.forecast.models import build_forecaster
from crypto_lambda.forecast.pipeline import prepare_series, run_forecasts, sample_daily

DAY = pd.Timedelta(days=1)
SMALL = ForecastConfig(cv_days=180, grid=(), include_seeds=False)


def random_walk(days: int = 1500, sigma: float = 0.02, seed: int = 7) -> pd.DataFrame:
    """A geometric random walk: the naive forecast is optimal and its errors are known in distribution."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, sigma, days)))
    return pd.DataFrame({"date": pd.date_range("2020-01-01", periods=days).date, "close": close})


def btc_series() -> pd.DataFrame:
    return prepare_series(sample_daily("BTCUSDT"))[0]


# -- metrics ---------------------------------------------------------------------------------------------------


def test_metrics_on_a_toy_series_with_known_errors():
    actual, forecast = [100.0, 200.0, 400.0, 50.0], [110.0, 180.0, 400.0, 45.0]
    # APE: 10 %, 10 %, 0 %, 10 %; errors: 10, 20, 0, 5
    assert mape(actual, forecast) == pytest.approx(7.5)
    assert mae(actual, forecast) == pytest.approx(8.75)
    assert rmse(actual, forecast) == pytest.approx(np.sqrt((100 + 400 + 0 + 25) / 4))
    assert coverage(actual, [90, 201, 390, 51], [105, 210, 400, 60]) == pytest.approx(50.0)  # 2nd, 4th out
    assert coverage(actual, [np.nan] * 4, [1e9] * 4) == 0.0  # a missing bound is a miss
    assert mase(8.75, 17.5) == pytest.approx(0.5)


def test_per_horizon_table_scales_mase_by_naive_on_the_same_points():
    cut = pd.Timestamp("2024-01-01")
    rows = []
    for h, a, naive_f, model_f in [(1, 100, 90, 95), (2, 100, 80, 110)]:
        for model, f in ((NAIVE, naive_f), ("m", model_f)):
            rows.append({"model": model, "cutoff": cut, "ds": cut + h * DAY, "horizon": h, "actual": a, "yhat": f,
                         "lower": f - 5, "upper": f + 5})
    per_h = by_horizon(pd.DataFrame(rows))
    m = per_h[per_h["model"] == "m"].set_index("horizon")
    assert m.at[1, "mase"] == pytest.approx(5 / 10) and m.at[2, "mase"] == pytest.approx(10 / 20)
    assert m.at[1, "coverage80"] == 100.0 and m.at[2, "coverage80"] == 0.0
    summary = summarize(per_h, ForecastConfig(horizon=2, report_horizons=(1, 2)))
    mean = summary[(summary["model"] == "m") & (summary["horizon"] == "1-2")].iloc[0]
    assert mean["mape"] == pytest.approx(7.5) and mean["mase"] == pytest.approx(7.5 / 15) and mean["n"] == 2
    naive_mean = summary[(summary["model"] == NAIVE) & (summary["horizon"] == "1-2")].iloc[0]
    assert naive_mean["mase"] == pytest.approx(1.0)


# -- cutoffs and leakage -----------------------------------------------------------------------------------------


def test_default_cutoffs_every_30_days_over_3_years():
    series = btc_series()
    cutoffs = cv.make_cutoffs(series, ForecastConfig())
    last = series["ds"].max()
    assert len(cutoffs) == 36
    assert cutoffs[-1] == last - 30 * DAY
    assert set(np.diff(cutoffs)) == {30 * DAY}
    assert cutoffs[0] >= last - 3 * 365 * DAY


def test_cv_hands_each_model_only_the_past():
    series = btc_series()
    seen = []

    def spy(train: pd.DataFrame, cutoff: pd.Timestamp, horizon: int) -> pd.DataFrame:
        seen.append((cutoff, train["ds"].max(), len(train)))
        days = pd.date_range(cutoff + DAY, periods=horizon)
        return pd.DataFrame({"ds": days, "yhat": 1.0, "lower": 0.0, "upper": 2.0})

    cutoffs = cv.make_cutoffs(series, SMALL)
    with ThreadPoolExecutor(2) as pool:
        points, failures = cv.submit_cv(series, {"spy": spy}, cutoffs, 30, pool).collect()
    assert not failures and len(seen) == len(cutoffs)
    for cutoff, last_seen, n in seen:
        assert last_seen <= cutoff and n == int((series["ds"] <= cutoff).sum())
    assert (points["ds"] > points["cutoff"]).all()
    assert (points["ds"] - points["cutoff"] == points["horizon"] * DAY).all()


def _poisoned_after(series: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    out = series.copy()
    out.loc[out["ds"] > cutoff, "y"] *= 100.0
    return out


@pytest.mark.parametrize("spec", [NAIVE_SPEC, DRIFT_SPEC], ids=lambda s: s.name)
def test_baseline_forecasts_ignore_the_future(spec: ModelSpec):
    """Multiplying every price after the cutoff by 100 must not change a single forecast or bound."""
    series = btc_series()
    model = build_forecaster(spec, ForecastConfig())
    for cutoff in cv.make_cutoffs(series, ForecastConfig())[::7]:
        clean = cv.forecast_at(model, series, cutoff, 30)
        dirty = cv.forecast_at(model, _poisoned_after(series, cutoff), cutoff, 30)
        pd.testing.assert_frame_equal(clean, dirty)


def test_prophet_forecast_ignores_the_future():
    series = btc_series()
    cfg = ForecastConfig(uncertainty_samples=0)
    model = build_forecaster(DEFAULT_GRID[2], cfg)  # log, cps 0.05, cr 0.95, no seasonality: the cheapest fit
    cutoff = series["ds"].max() - 200 * DAY
    clean = cv.forecast_at(model, series, cutoff, 30)
    dirty = cv.forecast_at(model, _poisoned_after(series, cutoff), cutoff, 30)
    np.testing.assert_allclose(clean["yhat"], dirty["yhat"], rtol=1e-9)


def test_the_poison_test_would_catch_a_leaky_slice(monkeypatch: pytest.MonkeyPatch):
    """Sensitivity of the test above: a CV whose training slice reaches 5 days past the cutoff is caught."""
    series = btc_series()
    cutoff = series["ds"].max() - 100 * DAY
    def last_row(train: pd.DataFrame, cut: pd.Timestamp, horizon: int) -> pd.DataFrame:
        """A naive that trusts its input (the project's naive also ignores rows after the cutoff)."""
        days = pd.date_range(cut + DAY, periods=horizon)
        return pd.DataFrame({"ds": days, "yhat": train["y"].iloc[-1], "lower": 0.0, "upper": np.inf})

    honest = [cv.forecast_at(last_row, s, cutoff, 30)["yhat"] for s in (series, _poisoned_after(series, cutoff))]
    assert np.allclose(*honest)
    monkeypatch.setattr(cv, "training_slice", lambda s, c: s[s["ds"] <= c + 5 * DAY].copy())
    leaky = [cv.forecast_at(last_row, s, cutoff, 30)["yhat"] for s in (series, _poisoned_after(series, cutoff))]
    assert not np.allclose(*leaky)


def test_a_forecast_not_starting_the_day_after_the_cutoff_is_rejected():
    series = btc_series()

    def early(train: pd.DataFrame, cutoff: pd.Timestamp, horizon: int) -> pd.DataFrame:
        return pd.DataFrame({"ds": pd.date_range(cutoff, periods=horizon), "yhat": 1.0, "lower": 0, "upper": 2})

    with pytest.raises(cv.LeakageError):
        cv.forecast_at(early, series, series["ds"].max() - 60 * DAY, 30)


def test_naive_forecasts_the_close_at_the_cutoff_not_after():
    res = run_forecasts({"BTCUSDT": sample_daily("BTCUSDT")}, SMALL)["BTCUSDT"]
    close = res.history.set_index("ds")["y"]
    naive = res.points[res.points["model"] == NAIVE]
    assert np.allclose(naive["yhat"].to_numpy(), close.reindex(naive["cutoff"]).to_numpy())


# -- forward-filled days ------------------------------------------------------------------------------------------


def test_filled_and_provisional_days_are_neither_trained_on_nor_scored():
    frame = random_walk(900).assign(is_filled=False, source="exchange_1d")
    frame.loc[500:504, "is_filled"] = True
    frame.loc[700, "source"] = "filled"
    frame["is_provisional"] = False
    frame.loc[899, "is_provisional"] = True
    series, dropped = prepare_series(frame)
    assert dropped == 7 and len(series) == 893
    res = run_forecasts({"TESTUSDT": frame}, SMALL.replace(cv_days=400))["TESTUSDT"]
    skipped = set(pd.to_datetime(frame.loc[[*range(500, 505), 700, 899], "date"]))
    assert not set(res.points["ds"]) & skipped
    assert res.history["ds"].max() == pd.Timestamp(frame.loc[898, "date"])


# -- baselines and champion -----------------------------------------------------------------------------------------


def test_baselines_on_a_random_walk_have_honest_errors_and_intervals():
    sigma = 0.02
    res = run_forecasts({"WALKUSDT": random_walk(sigma=sigma)}, SMALL.replace(cv_days=900, period=7))["WALKUSDT"]
    per_h = res.per_horizon.set_index(["model", "horizon"])
    # E|N(0, s)| = s * sqrt(2 / pi): ~1.6 % at one day, growing like sqrt(h)
    assert per_h.at[(NAIVE, 1), "mape"] == pytest.approx(100 * sigma * np.sqrt(2 / np.pi), rel=0.25)
    assert per_h.at[(NAIVE, 30), "mape"] == pytest.approx(100 * sigma * np.sqrt(30 * 2 / np.pi), rel=0.35)
    assert 70 <= res.metric(NAIVE, "1-30", "coverage80") <= 90
    assert 70 <= res.metric("drift", "1-30", "coverage80") <= 90


def _summary(mapes: dict[str, float], n: dict[str, int] | None = None) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "horizon": "1-30", "n": (n or {}).get(m, 100), "mape": v}
                         for m, v in mapes.items()])


SPECS = [NAIVE_SPEC, DRIFT_SPEC, SEEDS_SPEC, *DEFAULT_GRID[:2]]


def test_champion_is_lowest_mape_with_ties_to_the_simpler_model():
    cfg = ForecastConfig()
    p1 = DEFAULT_GRID[0].name
    assert choose_champion(_summary({NAIVE: 7.0, "drift": 6.5, p1: 6.0}), SPECS, cfg) == p1
    assert choose_champion(_summary({NAIVE: 7.0, "drift": 6.995, p1: 6.992}), SPECS, cfg) == NAIVE  # a tie
    assert choose_champion(_summary({NAIVE: 7.0, "drift": 6.0, p1: 6.005}), SPECS, cfg) == "drift"
    # a model not scored on every point cannot win, however good it looks
    assert choose_champion(_summary({NAIVE: 7.0, p1: 1.0}, n={p1: 40}), SPECS, cfg) == NAIVE


def test_champion_is_never_worse_than_naive():
    rng = np.random.default_rng(5)
    names = [s.name for s in SPECS]
    for _ in range(500):
        values = dict(zip(names, rng.choice([5.0, 5.004, 5.01, 6.0, 8.0, 20.0], len(names)), strict=True))
        champ = choose_champion(_summary(values), SPECS, ForecastConfig())
        assert values[champ] <= values[NAIVE]


# -- outputs and checks --------------------------------------------------------------------------------------------


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
    from crypto_assets.checks.forecast import interval_coverage_report, mape_vs_naive_report
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


def test_grid_is_screened_then_the_finalist_gets_the_full_cv():
    from crypto_lambda.forecast.pipeline import _screen_cutoffs

    grid = (DEFAULT_GRID[0], DEFAULT_GRID[2])  # the two cheapest Prophet-on-log fits (no seasonality)
    cfg = ForecastConfig(cv_days=180, grid=grid, include_seeds=False, screen_every=3, uncertainty_samples=0)
    res = run_forecasts({"BTCUSDT": sample_daily("BTCUSDT")}, cfg)["BTCUSDT"]
    screen = _screen_cutoffs(res.cutoffs, 3)
    assert len(res.cutoffs) == 6 and screen == [res.cutoffs[2], res.cutoffs[5]]  # latest always screened
    [finalist] = res.finalists
    [loser] = [s.name for s in grid if s.name != finalist]
    on_screen = res.points[res.points["cutoff"].isin(screen)]
    ape = ((on_screen["actual"] - on_screen["yhat"]).abs() / on_screen["actual"]).groupby(on_screen["model"]).mean()
    assert ape[finalist] <= ape[loser]
    mean = res.metrics[res.metrics["horizon"] == cfg.mean_label].set_index("model")
    assert mean.at[finalist, "cutoffs"] == 6 and mean.at[finalist, "stage"] == "full"
    assert mean.at[loser, "cutoffs"] == 2 and mean.at[loser, "stage"] == "screened"
    assert res.champion != loser
