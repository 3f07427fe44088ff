"""Volatility forecasts cross-validated like the price: the same ``cv.py`` rolling origin (every model sees rows
up to its cutoff only; forecasts must cover exactly the days after it), the same window and horizon, cutoffs
every ``vol_period`` days (the models cost ~1 ms a fit, so the denser origin is free; 5 rather than 7, because
every weekly cutoff falls on the same weekday and crypto volatility dips at weekends).

Scores per horizon: QLIKE and MSE of log variance; the champion is the lowest mean QLIKE over 1..H, ties
(``vol_tie_tolerance``) to the simpler model, so it is never worse than naive. ``skill`` is the champion's
mean QLIKE / naive's: below 1 beats doing nothing, 1 means naive kept the title.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crypto_lambda.forecast.config import ForecastConfig
from crypto_lambda.forecast.cv import CVRun, forecast_at, make_cutoffs, submit_cv
from crypto_lambda.forecast.metrics import pick_champion
from crypto_lambda.forecast.vol_models import VOL_NAIVE, VOL_SPECS, build_vol_forecaster, mse_log, qlike
from crypto_lambda.volatility import MINUTES

VOL_METRICS = ["qlike", "mse_log"]


@dataclass
class VolResult:
    """One symbol's volatility evaluation; ``metrics`` rows are (model, horizon label) like the price's."""

    symbol: str
    config: ForecastConfig
    series: pd.DataFrame  # ds, y (daily variance), source
    cutoffs: list[pd.Timestamp]
    points: pd.DataFrame
    per_horizon: pd.DataFrame
    metrics: pd.DataFrame
    champion: str
    forecast: pd.DataFrame  # champion's next H days: date, horizon, variance, vol (sqrt)
    failures: dict[str, str] = field(default_factory=dict)

    def metric(self, model: str, horizon: str, name: str = "qlike") -> float:
        row = self.metrics[(self.metrics["model"] == model) & (self.metrics["horizon"] == horizon)]
        return float(row[name].iloc[0]) if len(row) else float("nan")

    def skill(self, name: str = "qlike") -> float:
        """Champion's mean loss / naive's mean loss (below 1: better than tomorrow = today)."""
        label = self.config.mean_label
        return self.metric(self.champion, label, name) / self.metric(VOL_NAIVE, label, name)


def vol_cutoffs(series: pd.DataFrame, config: ForecastConfig) -> list[pd.Timestamp]:
    return make_cutoffs(series, config.replace(period=config.vol_period))


def submit_vol(series: pd.DataFrame, config: ForecastConfig, pool: Executor) -> tuple[list[pd.Timestamp], CVRun]:
    cutoffs = vol_cutoffs(series, config)
    if not cutoffs:
        raise ValueError(f"{len(series)} days of variance are too few for a {config.horizon}-day CV")
    models = {s.name: build_vol_forecaster(s, config) for s in VOL_SPECS}
    return cutoffs, submit_cv(series[["ds", "y"]], models, cutoffs, config.horizon, pool)


def vol_by_horizon(points: pd.DataFrame) -> pd.DataFrame:
    rows = [{"model": model, "horizon": int(h), "n": len(g), "cutoffs": g["cutoff"].nunique(),
             "qlike": qlike(g["actual"], g["yhat"]), "mse_log": mse_log(g["actual"], g["yhat"])}
            for (model, h), g in points.groupby(["model", "horizon"], sort=True)]
    return pd.DataFrame(rows, columns=["model", "horizon", "n", "cutoffs", *VOL_METRICS])


def vol_summary(per_h: pd.DataFrame, config: ForecastConfig) -> pd.DataFrame:
    """``vol_report_horizons`` rows plus the mean over 1..H of each per-horizon loss."""
    rows = []
    for model, g in per_h.groupby("model", sort=False):
        g = g.set_index("horizon")
        base = {"model": model, "cutoffs": int(g["cutoffs"].max())}
        rows += [{**base, "horizon": str(h), "n": int(g.at[h, "n"]), **{m: float(g.at[h, m]) for m in VOL_METRICS}}
                 for h in config.vol_report_horizons if h in g.index]
        rows.append({**base, "horizon": config.mean_label, "n": int(g["n"].sum()),
                     **{m: float(g[m].mean()) for m in VOL_METRICS}})
    return pd.DataFrame(rows, columns=["model", "horizon", "n", "cutoffs", *VOL_METRICS])


def choose_vol_champion(summary: pd.DataFrame, config: ForecastConfig) -> str:
    mean = summary[summary["horizon"] == config.mean_label].set_index("model")
    return pick_champion(mean, VOL_SPECS, "qlike", config.vol_tie_tolerance, VOL_NAIVE)


def finish_vol(symbol: str, series: pd.DataFrame, cutoffs: list[pd.Timestamp], run: CVRun,
               config: ForecastConfig) -> VolResult:
    """Score the collected CV, crown the champion and forecast the next H days with it (cheap: inline)."""
    points, failures = run.collect()
    per_h = vol_by_horizon(points)
    summary = vol_summary(per_h, config)
    champion = choose_vol_champion(summary, config)
    by_name = {s.name: s for s in VOL_SPECS}
    last = series["ds"].max()
    fc = forecast_at(build_vol_forecaster(by_name[champion], config), series[["ds", "y"]], last, config.horizon)
    forecast = pd.DataFrame({"symbol": symbol, "model": champion, "date": fc["ds"].dt.date,
                             "horizon": np.arange(1, len(fc) + 1), "variance": fc["yhat"],
                             "vol": np.sqrt(fc["yhat"]), "trained_through": last.date()})
    table = summary.copy()
    table.insert(0, "symbol", symbol)
    table["is_champion"] = table["model"] == champion
    table["family"] = table["model"].map(lambda m: by_name[m].family)
    table["params"] = table["model"].map(lambda m: by_name[m].describe())
    table["first_cutoff"], table["last_cutoff"] = cutoffs[0].date(), cutoffs[-1].date()
    table["trained_through"] = last.date()
    naive = points[points["model"] == VOL_NAIVE]  # how many scored targets are realized (not range) variances
    table["target_days_minutes"] = int(naive.merge(series, on="ds")["source"].eq(MINUTES).sum())
    return VolResult(symbol=symbol, config=config, series=series, cutoffs=cutoffs, points=points,
                     per_horizon=per_h, metrics=table, champion=champion, forecast=forecast, failures=failures)
