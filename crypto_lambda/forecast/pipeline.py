"""From a daily series to a proven forecast: CV every candidate, score, pick the champion, forecast with it.

Input is any per-symbol daily frame with ``date`` and ``close`` (the asset reads ``serving_daily``; the
shipped sample and ``daily_filled`` have the same columns). Forward-filled days (``is_filled`` or
``source == "filled"``) are dropped before anything else: their close is a copy of the previous day's, so
training on them teaches the models that prices stand still (flattering naive) and scoring on them grades
forecasts against a price that never traded. Prophet takes the gaps natively; the baselines forward-fill
their origin and skip a missing target. A provisional bar (``serving_daily``'s current day from the speed
layer) is dropped for the same reason as a partial day.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_lambda.config import SAMPLE_DAILY
from crypto_lambda.forecast.config import ForecastConfig, ModelSpec
from crypto_lambda.forecast.cv import CVRun, forecast_at, make_cutoffs, submit_cv
from crypto_lambda.forecast.metrics import by_horizon, choose_champion, summarize
from crypto_lambda.forecast.models import build_forecaster
from crypto_lambda.forecast.vol_pipeline import VolResult, finish_vol, submit_vol
from crypto_lambda.volatility import variance_series


@dataclass
class ForecastResult:
    """Everything one symbol's evaluation produced; ``metrics`` is the table the view and checks read."""

    symbol: str
    config: ForecastConfig
    history: pd.DataFrame  # ds, y: the observed days that were used
    filled_days_dropped: int
    cutoffs: list[pd.Timestamp]
    points: pd.DataFrame  # every CV forecast point with its actual
    per_horizon: pd.DataFrame  # model x horizon 1..H
    metrics: pd.DataFrame  # reported horizons + mean, with is_champion
    champion: str
    forecast: pd.DataFrame  # the champion's next H days
    failures: dict[str, str] = field(default_factory=dict)
    finalists: list[str] = field(default_factory=list)  # grid configs that passed screening
    seconds: float = 0.0
    volatility: VolResult | None = None  # the daily-variance forecasts of the same symbol and run

    def metric(self, model: str, horizon: str, name: str = "mape") -> float:
        row = self.metrics[(self.metrics["model"] == model) & (self.metrics["horizon"] == horizon)]
        return float(row[name].iloc[0]) if len(row) else float("nan")


def observed_bars(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(the rows that are real daily closes, number of forward-filled or provisional days dropped)."""
    skip = pd.Series(False, index=frame.index)
    if "is_filled" in frame:
        skip |= frame["is_filled"].fillna(False).astype(bool)
    if "source" in frame:
        skip |= frame["source"].eq("filled")
    if "is_provisional" in frame:  # serving_daily: today's speed bar is not a daily close yet
        skip |= frame["is_provisional"].fillna(False).astype(bool)
    return frame[~skip & frame["close"].notna() & (frame["close"] > 0)], int(skip.sum())


def prepare_series(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(observed ``ds``/``y`` rows sorted by day, number of forward-filled or provisional days dropped)."""
    good, dropped = observed_bars(frame)
    series = pd.DataFrame({"ds": pd.to_datetime(good["date"]).dt.tz_localize(None).dt.normalize(),
                           "y": good["close"].astype(float)})
    series = series.drop_duplicates("ds", keep="last").sort_values("ds").reset_index(drop=True)
    return series, dropped


def sample_daily(symbol: str, folder: Path = SAMPLE_DAILY) -> pd.DataFrame:
    """The shipped Binance 1d bars as a daily-series frame (date, close, ...). The file's last row is a partial
    day (see the sample README), so it is dropped: a half day's close is not a daily close."""
    raw = pd.read_csv(folder / f"{symbol}_1d.csv").iloc[:-1]
    return pd.DataFrame({"symbol": symbol, "date": pd.to_datetime(raw["timestamp"]).dt.date,
                         "open": raw["open"], "high": raw["high"], "low": raw["low"], "close": raw["close"],
                         "volume": raw["volume"], "source": "exchange_1d", "is_filled": False})


def _slowest_first(specs: list[ModelSpec]) -> list[ModelSpec]:
    return sorted(specs, key=lambda s: (s.family != "prophet", s.role != "reference", -s.complexity))


def _metrics_table(symbol: str, summary: pd.DataFrame, specs: list[ModelSpec], champion: str,
                   cutoffs: list[pd.Timestamp], history: pd.DataFrame) -> pd.DataFrame:
    by_name = {s.name: s for s in specs}
    table = summary.copy()
    table.insert(0, "symbol", symbol)
    table["is_champion"] = table["model"] == champion
    table["stage"] = table["cutoffs"].map(lambda n: "full" if n == len(cutoffs) else "screened")
    table["family"] = table["model"].map(lambda m: by_name[m].family)
    table["role"] = table["model"].map(lambda m: by_name[m].role)
    table["params"] = table["model"].map(lambda m: by_name[m].describe())
    table["first_cutoff"] = cutoffs[0].date()
    table["last_cutoff"] = cutoffs[-1].date()
    table["trained_through"] = history["ds"].max().date()
    return table


@dataclass
class _Plan:
    """One symbol's CV in flight: the grid on the screening cutoffs, the fixed models (baselines, seeds) on
    every cutoff, then the finalists on the remaining cutoffs."""

    series: pd.DataFrame
    dropped: int
    cutoffs: list[pd.Timestamp]
    variance: pd.DataFrame | None = None  # ds, y, source: the volatility target (None: not forecast)
    vol: tuple[list[pd.Timestamp], CVRun] | None = None
    screen: CVRun | None = None
    fixed: CVRun | None = None
    rest: CVRun | None = None
    finalists: list[str] = field(default_factory=list)


def _screen_cutoffs(cutoffs: list[pd.Timestamp], every: int) -> list[pd.Timestamp]:
    """Every ``every``-th cutoff counting back from the latest, so the newest regime is always screened."""
    return sorted(cutoffs[::-1][::max(every, 1)])


def _best(points: pd.DataFrame, k: int) -> list[str]:
    """The k grid configs with the lowest MAPE over all their screening points (= mean over horizons)."""
    ape = ((points["actual"] - points["yhat"]).abs() / points["actual"]).groupby(points["model"]).mean()
    return list(ape.sort_values(kind="stable").index[:k])


def _plan(sym: str, frame: pd.DataFrame, config: ForecastConfig, realized: pd.DataFrame | None) -> _Plan:
    series, dropped = prepare_series(frame)
    cutoffs = make_cutoffs(series, config)
    if not cutoffs:
        raise ValueError(f"{sym}: {len(series)} days are too few for a {config.horizon}-day CV with "
                         f"{config.min_train_days} training days")
    variance = None
    if config.volatility and {"open", "high", "low"} <= set(frame.columns):
        variance = variance_series(observed_bars(frame)[0], realized)
    return _Plan(series=series, dropped=dropped, cutoffs=cutoffs, variance=variance)


def _submit(plans: dict[str, _Plan], specs: list[ModelSpec], config: ForecastConfig, pool: Executor) -> None:
    """Queue the screening of every symbol first (the finalists wait on it), then the fixed models."""
    grid = [s for s in specs if s.role == "candidate"]
    screened = config.screen_every > 1 and len(grid) > config.finalists
    fixed = [s for s in specs if not (screened and s in grid)]
    for plan in plans.values() if screened else ():
        plan.screen = submit_cv(plan.series, {s.name: build_forecaster(s, config) for s in grid},
                                _screen_cutoffs(plan.cutoffs, config.screen_every), config.horizon, pool)
    for plan in plans.values():
        plan.fixed = submit_cv(plan.series, {s.name: build_forecaster(s, config) for s in fixed}, plan.cutoffs,
                               config.horizon, pool)
        if plan.variance is not None:
            plan.vol = submit_vol(plan.variance, config, pool)


def run_forecasts(frames: Mapping[str, pd.DataFrame], config: ForecastConfig | None = None,
                  specs: list[ModelSpec] | None = None,
                  realized: Mapping[str, pd.DataFrame] | None = None) -> dict[str, ForecastResult]:
    """Evaluate every candidate on every symbol in ONE thread pool (fits of both symbols interleave, so both
    cores stay busy), then forecast the next H days with each symbol's champion. With OHLC bars (and
    ``config.volatility``) the daily variance is forecast too: range-based, or ``realized`` (rows of
    ``realized_vol_daily`` per symbol) where the minutes gave a complete day."""
    config = config or ForecastConfig()
    specs = _slowest_first(specs or config.specs())
    by_name = {s.name: s for s in specs}
    started = time.perf_counter()
    results: dict[str, ForecastResult] = {}
    with ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="forecast") as pool:
        plans = {sym: _plan(sym, frame, config, (realized or {}).get(sym)) for sym, frame in frames.items()}
        _submit(plans, specs, config, pool)
        screens: dict[str, tuple[pd.DataFrame, dict[str, str]]] = {}
        for sym, plan in plans.items():
            if plan.screen is None:
                continue
            screens[sym] = plan.screen.collect()
            plan.finalists = _best(screens[sym][0], config.finalists)
            screened = set(_screen_cutoffs(plan.cutoffs, config.screen_every))
            rest = [c for c in plan.cutoffs if c not in screened]
            plan.rest = submit_cv(plan.series, {n: build_forecaster(by_name[n], config) for n in plan.finalists},
                                  rest, config.horizon, pool)
        finals = {}
        for sym, plan in plans.items():
            points, failures = plan.fixed.collect()
            parts = [points]
            if plan.screen is not None and plan.rest is not None:
                rest_points, rest_failures = plan.rest.collect()
                failures = {**failures, **screens[sym][1], **rest_failures}
                parts += [screens[sym][0], rest_points]
            points = pd.concat(parts, ignore_index=True)
            points = points[~points["model"].isin(failures)].reset_index(drop=True)
            per_h = by_horizon(points)
            summary = summarize(per_h, config)
            champion = choose_champion(summary, specs, config)
            finals[sym] = pool.submit(forecast_at, build_forecaster(by_name[champion], config), plan.series,
                                      plan.series["ds"].max(), config.horizon)
            results[sym] = ForecastResult(
                symbol=sym, config=config, history=plan.series, filled_days_dropped=plan.dropped,
                cutoffs=plan.cutoffs, points=points, per_horizon=per_h, champion=champion, failures=failures,
                metrics=_metrics_table(sym, summary, specs, champion, plan.cutoffs, plan.series),
                forecast=pd.DataFrame(), finalists=plan.finalists,
                volatility=finish_vol(sym, plan.variance, *plan.vol, config) if plan.vol else None)
        for sym, future in finals.items():
            fc = future.result()
            res = results[sym]
            res.forecast = pd.DataFrame({
                "symbol": sym, "model": res.champion, "date": fc["ds"].dt.date, "horizon": np.arange(1, len(fc) + 1),
                "yhat": fc["yhat"], "lower": fc["lower"], "upper": fc["upper"], "interval": config.interval,
                "trained_through": res.history["ds"].max().date()})
            res.seconds = time.perf_counter() - started
    return results
