"""The candidates: naive (tomorrow = today), drift (random walk with drift on log price), and Prophet.

Every forecaster is called with the history up to a cutoff and nothing else, so it cannot see the future:
``forecaster(train, cutoff, horizon)`` -> one row per day cutoff+1 .. cutoff+horizon with ``yhat``, ``lower``,
``upper`` (the central ``interval`` band, 80 % by default).

Intervals of the baselines are empirical: the quantiles, per horizon h, of the model's own h-step log errors
from a rolling origin on EVERY day of the last ``interval_window_days`` before the cutoff (the densest
rolling-origin CV there is, on training data only). Log errors make the band scale with the price, and using
only pre-cutoff origins means the coverage measured in CV is out of sample for exactly the method that is
served. Prophet's intervals are Prophet's own (trend-change simulation plus noise).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np
import pandas as pd

from crypto_lambda.forecast.config import ForecastConfig, ModelSpec

Forecaster = Callable[[pd.DataFrame, pd.Timestamp, int], pd.DataFrame]
DAY = pd.Timedelta(days=1)
_QUIET = threading.Lock()
_quieted = False


def quiet_stan() -> None:
    """cmdstanpy logs two INFO lines per fit and Prophet one per disabled seasonality: thousands per run."""
    global _quieted
    with _QUIET:
        if not _quieted:
            for name in ("cmdstanpy", "prophet", "prophet.forecaster", "prophet.models"):
                logging.getLogger(name).setLevel(logging.WARNING)
            _quieted = True


def future_days(cutoff: pd.Timestamp, horizon: int) -> pd.DatetimeIndex:
    return pd.date_range(cutoff + DAY, periods=horizon, freq="D")


def _frame(cutoff: pd.Timestamp, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"ds": future_days(cutoff, len(yhat)), "yhat": yhat, "lower": lower, "upper": upper})


def daily_log(train: pd.DataFrame, cutoff: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """log(close) on every calendar day from the first observation to the cutoff: (observed with NaN on days
    without a bar, forward-filled for use as a forecast origin)."""
    logs = pd.Series(np.log(train["y"].to_numpy()), index=pd.DatetimeIndex(train["ds"]))
    observed = logs.reindex(pd.date_range(logs.index[0], cutoff, freq="D")).to_numpy()
    return observed, pd.Series(observed).ffill().to_numpy()


def _drift_slope(filled: np.ndarray, idx: np.ndarray, window: int) -> np.ndarray:
    """Mean daily log change over the ``window`` days before each origin (fewer when history is shorter)."""
    start = np.maximum(idx - window, 0)
    span = np.maximum(idx - start, 1)
    return (filled[idx] - filled[start]) / span


def residual_quantiles(observed: np.ndarray, filled: np.ndarray, horizon: int, window_days: int, drift_days: int,
                       kind: str, interval: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) log-error quantiles per horizon 1..H from origins whose target falls in the last
    ``window_days`` days. Only days up to the cutoff are involved."""
    n = len(observed)
    q = ((1 - interval) / 2, (1 + interval) / 2)
    lower, upper = np.full(horizon, np.nan), np.full(horizon, np.nan)
    for h in range(1, horizon + 1):
        origins = np.arange(max(n - window_days - h, 0), n - h)
        if len(origins) == 0:
            continue
        pred = filled[origins]
        if kind == "drift":
            pred = pred + h * _drift_slope(filled, origins, drift_days)
        err = observed[origins + h] - pred
        err = err[~np.isnan(err)]
        if len(err):
            lower[h - 1], upper[h - 1] = np.quantile(err, q)
    return lower, upper


class Baseline:
    """naive: the last close for every horizon. drift: the last close moved by the mean daily log change over
    the training window (Hyndman's drift method, on log price so it compounds like a price does)."""

    def __init__(self, kind: str, config: ForecastConfig) -> None:
        self.kind = kind
        self.config = config

    def __call__(self, train: pd.DataFrame, cutoff: pd.Timestamp, horizon: int) -> pd.DataFrame:
        observed, filled = daily_log(train, cutoff)
        drift_days = self.config.train_days or len(filled)
        level = filled[-1]
        steps = np.arange(1, horizon + 1)
        slope = _drift_slope(filled, np.array([len(filled) - 1]), drift_days)[0] if self.kind == "drift" else 0.0
        center = level + steps * slope
        lo, hi = residual_quantiles(observed, filled, horizon, self.config.interval_window_days, drift_days,
                                    self.kind, self.config.interval)
        return _frame(cutoff, np.exp(center), np.exp(center + lo), np.exp(center + hi))


class ProphetModel:
    """Prophet fitted by MAP (Prophet's default, no MCMC) on the training window, log(close) or close.

    The seeds' method is ``Prophet()`` with every default on the raw close; the log variants take their
    trend and seasonality settings from the spec.
    """

    def __init__(self, spec: ModelSpec, config: ForecastConfig) -> None:
        self.log = bool(spec.params.get("log", False))
        self.kwargs = {k: v for k, v in spec.params.items() if k != "log"}
        self.config = config
        reference = spec.role == "reference"
        self.samples = config.seeds_uncertainty_samples if reference else config.uncertainty_samples
        self.train_days = None if reference and config.seeds_full_history else config.train_days

    def __call__(self, train: pd.DataFrame, cutoff: pd.Timestamp, horizon: int) -> pd.DataFrame:
        quiet_stan()
        from prophet import Prophet  # imported lazily: ~1.5 s, only when a Prophet model runs

        window = train
        if self.train_days:
            window = train[train["ds"] > cutoff - pd.Timedelta(days=self.train_days)]
        y = np.log(window["y"].to_numpy()) if self.log else window["y"].to_numpy()
        model = Prophet(interval_width=self.config.interval, uncertainty_samples=self.samples, **self.kwargs)
        model.fit(pd.DataFrame({"ds": window["ds"].to_numpy(), "y": y}))
        pred = model.predict(pd.DataFrame({"ds": future_days(cutoff, horizon)}))
        nan = np.full(len(pred), np.nan)  # uncertainty_samples=0: Prophet gives no interval
        cols = [pred[c].to_numpy() if c in pred else nan for c in ("yhat", "yhat_lower", "yhat_upper")]
        if self.log:
            cols = [np.exp(c) for c in cols]
        return _frame(cutoff, *cols)


def build_forecaster(spec: ModelSpec, config: ForecastConfig) -> Forecaster:
    if spec.family in ("naive", "drift"):
        return Baseline(spec.family, config)
    if spec.family == "prophet":
        return ProphetModel(spec, config)
    raise ValueError(f"unknown model family {spec.family!r} for {spec.name}")
