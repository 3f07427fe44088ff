"""The truth on the real Binance daily bars the project ships: the seeds' method vs naive vs the champion, per
horizon, printed. Reduced so the suite stays fast (a cutoff every 90 days over 3 years, one Prophet-on-log
config); ``bench/bench_forecast.py`` runs the full default CV (every 30 days, the whole grid)."""

from __future__ import annotations

import pandas as pd
import pytest

from crypto_lambda.forecast.config import DEFAULT_GRID, NAIVE, SEEDS, ForecastConfig
from crypto_lambda.forecast.outputs import comparison
from crypto_lambda.forecast.pipeline import run_forecasts, sample_daily

REDUCED = ForecastConfig(period=90, grid=(DEFAULT_GRID[2],), screen_every=1)


@pytest.fixture(scope="module")
def results():
    return run_forecasts({s: sample_daily(s) for s in ("BTCUSDT", "ETHUSDT")}, REDUCED)


def test_real_bars_table_seeds_vs_naive_vs_champion(results, capsys: pytest.CaptureFixture):
    with capsys.disabled(), pd.option_context("display.width", 160, "display.max_columns", 12):
        for symbol, res in results.items():
            print(f"\n{symbol}: {len(res.cutoffs)} cutoffs {res.cutoffs[0].date()}..{res.cutoffs[-1].date()}, "
                  f"{REDUCED.horizon}-day horizon, trained through {res.history['ds'].max().date()}; "
                  f"MAPE and 80 % coverage in %")
            print(comparison(res).to_string())
    for symbol, res in results.items():
        mean = REDUCED.mean_label
        assert len(res.cutoffs) == 12
        assert res.metric(res.champion, mean) <= res.metric(NAIVE, mean), symbol
        # the seeds' default Prophet on the close is far worse than doing nothing, on every horizon
        for h in ("1", "7", "14", "30", mean):
            assert res.metric(SEEDS, h) > 1.5 * res.metric(NAIVE, h), (symbol, h)
        assert res.champion != SEEDS
        assert res.metric(SEEDS, mean, "coverage80") < res.metric(NAIVE, mean, "coverage80")
