"""Volatility from the shipped real minutes and daily bars, its forecasts through the rolling-origin CV, and the
price distributions' scores: formulas with known answers, HAR that cannot see past its cutoff (and a test that
would catch it if it did), QLIKE that prefers the truth, the champion's tie rule, coverage per horizon."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crypto_lambda.forecast import cv
from crypto_lambda.forecast.config import ForecastConfig
from crypto_lambda.forecast.metrics import pinball
from crypto_lambda.forecast.pipeline import sample_daily
from crypto_lambda.forecast.vol_models import (
    VOL_NAIVE,
    VOL_SPECS,
    build_vol_forecaster,
    fit_har,
    har_features,
    mse_log,
    qlike,
)
from crypto_lambda.forecast.vol_pipeline import choose_vol_champion
from crypto_lambda.volatility import (
    MINUTES,
    RANGE,
    agreement,
    garman_klass,
    realized_by_day,
    sample_minutes,
    variance_series,
)
from tests.support import VOL_SMALL, VOL_SYMBOLS

DAY = pd.Timedelta(days=1)
SYMBOLS, SMALL = VOL_SYMBOLS, VOL_SMALL  # `realized` and `results` are session fixtures (conftest.py)


@pytest.fixture(scope="module")
def btc_variance(realized) -> pd.DataFrame:
    return variance_series(sample_daily("BTCUSDT"), realized["BTCUSDT"])


# -- realized and range-based variance on the real sample ----------------------------------------------------


def test_garman_klass_known_values():
    assert garman_klass(100.0, 100.0, 100.0, 100.0) == 0.0  # a bar that never moved
    h, lo = 110.0, 100.0  # open = close: only the range term, 0.5 ln(1.1)^2
    assert garman_klass(100.0, h, lo, 100.0) == pytest.approx(0.5 * np.log(1.1) ** 2)
    full = garman_klass(100.0, h, lo, 105.0)
    assert full == pytest.approx(0.5 * np.log(1.1) ** 2 - (2 * np.log(2) - 1) * np.log(1.05) ** 2)


def test_realized_days_of_the_sample(realized):
    for symbol, rows in realized.items():
        complete = rows[rows["source"] == MINUTES]
        assert len(complete) == 90 and (complete["minutes_used"] == 1440).all(), symbol
        partial = rows[rows["source"] == RANGE]  # 2025-08-18 ends at 18:27: served by its range estimate
        assert list(partial["date"].astype(str)) == ["2025-08-18"] and (partial["minutes_used"] < 1440).all()
        assert (partial["variance"] == partial["range_var"]).all() and (complete["variance"] == complete["rv"]).all()
        assert np.allclose(rows["rvol"] ** 2, rows["rv"])
        # the minutes' own bar is Binance's 1d bar, so its range estimate equals the daily file's exactly
        daily = sample_daily(symbol).set_index("date")
        gk = garman_klass(daily["open"], daily["high"], daily["low"], daily["close"]).reindex(complete["date"])
        np.testing.assert_allclose(complete["range_var"].to_numpy(), gk.to_numpy(), rtol=1e-12)


def test_realized_variance_scales_with_the_square_of_the_moves(realized):
    """Stretch every log price of one day around its open by 2: every return doubles, RV quadruples."""
    minutes = sample_minutes("BTCUSDT")
    day = minutes[minutes["open_time"].dt.date == pd.Timestamp("2025-06-02").date()].copy()
    base = np.log(day["open"].iloc[0])
    for col in ("open", "high", "low", "close"):
        day[col] = np.exp(base + 2 * (np.log(day[col]) - base))
    [stretched] = realized_by_day(day)["rv"]
    original = realized["BTCUSDT"].set_index("date").loc[pd.Timestamp("2025-06-02").date(), "rv"]
    assert stretched == pytest.approx(4 * original, rel=1e-9)


def test_rv_and_range_estimates_agree_on_the_real_days(realized):
    for symbol, rows in realized.items():
        stats = agreement(rows)
        assert stats["days"] == 90
        assert stats["log_corr"] > 0.7, (symbol, stats)
        assert 1.0 < stats["median_ratio"] < 1.3, (symbol, stats)  # RV sees every minute's move, GK the extremes


def test_variance_series_splices_rv_into_the_range_history(realized, btc_variance):
    series = btc_variance
    assert series["ds"].is_monotonic_increasing and (series["y"] > 0).all()
    minutes = series[series["source"] == MINUTES]
    assert len(minutes) == 90 and str(minutes["ds"].min().date()) == "2025-05-20"
    rv = realized["BTCUSDT"].set_index("date")["rv"]
    assert np.allclose(minutes["y"].to_numpy(), rv.reindex(minutes["ds"].dt.date).to_numpy())
    assert len(variance_series(sample_daily("BTCUSDT"))) == len(series)  # without minutes: same days, range only


# -- scores ----------------------------------------------------------------------------------------------------


def test_qlike_and_mse_log_known_values_and_qlike_prefers_the_truth(btc_variance):
    assert qlike([2.0, 3.0], [2.0, 3.0]) == 0.0 and mse_log([2.0], [2.0]) == 0.0
    assert qlike([2.0], [1.0]) == pytest.approx(2 - np.log(2) - 1)
    assert mse_log([np.e ** 2], [1.0]) == pytest.approx(4.0)
    # proxies = true variance x chi2(1) noise (a squared return): the truth scores better than any bias
    rng = np.random.default_rng(3)
    true = np.tile(btc_variance["y"].to_numpy(), 20)
    proxy = true * rng.standard_normal(len(true)) ** 2
    honest = qlike(proxy, true)
    for bias in (0.5, 0.8, 1.25, 2.0):
        assert honest < qlike(proxy, bias * true), bias
    assert qlike(proxy, 0.5 * true) > qlike(proxy, 2.0 * true)  # under-forecasting risk costs more


def test_pinball_known_values():
    # actual 100; q10 = 90 (0.1 x 10), median 100 (0), q90 = 95 (0.9 x 5): mean 3.5/3, in % of 100
    assert pinball([100.0], [90.0], [100.0], [95.0]) == pytest.approx((1.0 + 0.0 + 4.5) / 3)
    assert pinball([100.0], [110.0], [100.0], [120.0]) == pytest.approx((9.0 + 0.0 + 2.0) / 3)
    assert np.isnan(pinball([100.0], [np.nan], [100.0], [np.nan]))  # no interval: no distribution score


def _vol_summary(qlikes: dict[str, float], n: dict[str, int] | None = None) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "horizon": "1-30", "n": (n or {}).get(m, 100), "qlike": v}
                         for m, v in qlikes.items()])


def test_vol_champion_lowest_mean_qlike_ties_to_the_simpler():
    cfg = ForecastConfig()
    assert choose_vol_champion(_vol_summary({VOL_NAIVE: 1.0, "ewma": 0.6, "har": 0.55, "har_log": 0.5}),
                               cfg) == "har_log"
    assert choose_vol_champion(_vol_summary({VOL_NAIVE: 1.0, "ewma": 0.6, "har": 0.5995, "har_log": 0.5992}),
                               cfg) == "ewma"  # within 0.001 of the best: the simpler one
    assert choose_vol_champion(_vol_summary({VOL_NAIVE: 0.5, "ewma": 0.6, "har": 0.4995}), cfg) == VOL_NAIVE
    assert choose_vol_champion(_vol_summary({VOL_NAIVE: 1.0, "har": 0.1}, n={"har": 50}), cfg) == VOL_NAIVE


# -- no leakage --------------------------------------------------------------------------------------------------


def _poisoned(series: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    out = series.copy()
    out.loc[out["ds"] > cutoff, "y"] *= 50.0
    return out


@pytest.mark.parametrize("spec", VOL_SPECS, ids=lambda s: s.name)
def test_vol_forecasts_ignore_the_future(spec, btc_variance):
    """Multiplying every variance after the cutoff by 50 must not move a single forecast of any fold."""
    series = btc_variance[["ds", "y"]]
    model = build_vol_forecaster(spec, ForecastConfig())
    for cutoff in cv.make_cutoffs(series, ForecastConfig())[::5]:
        clean = cv.forecast_at(model, series, cutoff, 30)
        dirty = cv.forecast_at(model, _poisoned(series, cutoff), cutoff, 30)
        pd.testing.assert_frame_equal(clean, dirty)


def test_a_leaky_training_slice_is_caught(monkeypatch: pytest.MonkeyPatch, btc_variance):
    """Sensitivity of the test above: a CV whose slice reaches 3 days past the cutoff is refused by every
    volatility model (and so can never produce a forecast that quietly used the future)."""
    series = btc_variance[["ds", "y"]]
    cutoff = series["ds"].max() - 200 * DAY
    monkeypatch.setattr(cv, "training_slice", lambda s, c: s[s["ds"] <= c + 3 * DAY].copy())
    for spec in VOL_SPECS:
        with pytest.raises(cv.LeakageError):
            cv.forecast_at(build_vol_forecaster(spec, ForecastConfig()), series, cutoff, 30)


def test_har_uses_only_pairs_whose_target_is_in_training(btc_variance):
    """fit_har equals least squares on exactly the pairs (t, t+h) with t+h <= the last training day."""
    y = btc_variance["y"].to_numpy()[-731:] / btc_variance["y"].mean()
    betas, _, now = fit_har(y, 30)
    x = har_features(y)
    for h in (1, 7, 30):
        xs, ys = x[:-h], y[h:]
        ok = ~np.isnan(xs).any(axis=1)
        expected, *_ = np.linalg.lstsq(xs[ok], ys[ok], rcond=None)
        np.testing.assert_allclose(betas[h - 1], expected, rtol=1e-8, atol=1e-12)
    assert np.allclose(now, x[-1])


# -- the whole thing on the real bars ---------------------------------------------------------------------------


def test_vol_cv_on_the_real_bars_beats_naive_and_scores_every_model(results, capsys):
    from crypto_lambda.forecast.outputs import summary
    from crypto_lambda.forecast.report import format_report

    for symbol, res in results.items():
        vol = res.volatility
        assert vol is not None and not vol.failures
        assert set(vol.metrics["model"]) == {s.name for s in VOL_SPECS}
        assert set(vol.metrics["horizon"]) == {"1", "7", "30", "1-30"}
        n = vol.metrics.set_index(["model", "horizon"])["n"]
        assert n.loc[(VOL_NAIVE, "1")] == len(vol.cutoffs) and n.xs("1-30", level="horizon").nunique() == 1
        assert (vol.points["ds"] > vol.points["cutoff"]).all()
        assert vol.cutoffs == cv.make_cutoffs(vol.series, SMALL.replace(period=SMALL.vol_period))
        # the finding on this data: HAR / EWMA beat tomorrow = today by a wide margin, at every horizon
        assert vol.champion != VOL_NAIVE and vol.skill() < 0.8, (symbol, vol.skill())
        assert len(vol.forecast) == 30 and (vol.forecast["variance"] > 0).all()
        assert int(vol.metrics["target_days_minutes"].iloc[0]) > 0  # some CV targets are 1-minute RV days
    infos = [summary(r, "stamp", {}) for r in results.values()]
    text = format_report(infos)
    with capsys.disabled():
        print("\n" + text)
    for symbol, res in results.items():
        assert f"{symbol} volatility champion {res.volatility.champion}: skill vs naive" in text
        assert f"{res.volatility.skill():.3f}" in text
    assert "har_log" in text and "naive [champion]" in text and "pinball" in text


def test_price_metrics_have_pinball_and_coverage_per_horizon(results):
    for res in results.values():
        rows = res.metrics.set_index(["model", "horizon"])
        for h in ("1", "7", "14", "30"):
            assert 0 < rows.at[("naive", h), "pinball"] < rows.at[("naive", h), "mape"]  # pinball < MAE-like MAPE
            assert 0 <= rows.at[("naive", h), "coverage80"] <= 100
        assert rows.at[("naive", "1"), "pinball"] < rows.at[("naive", "30"), "pinball"]
