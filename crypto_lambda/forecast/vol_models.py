"""Volatility candidates: naive (tomorrow's variance = today's), EWMA (RiskMetrics, lambda 0.94) and HAR-RV
(Corsi 2009) in levels and in logs; and their scores, QLIKE and the MSE of log variance.

Same contract as the price forecasters (``forecaster(train, cutoff, horizon)`` -> ``ds``, ``yhat``, ``lower``,
``upper`` for cutoff+1 .. cutoff+horizon), so ``cv.py`` runs them through the same rolling origin and leakage
guard; ``y`` is the daily variance (``crypto_lambda.volatility.variance_series``) and ``yhat`` a variance.
No interval is forecast (``lower``/``upper`` NaN).

HAR is fitted by least squares on the training window only, one regression per horizon h (direct forecast:
v[t+h] on 1, v[t], mean v[t-4..t], mean v[t-21..t]), using only pairs whose target day t+h is <= the cutoff.
EWMA smooths the daily variance measure itself (RV or range) rather than squared close-to-close returns:
the same recursion as RiskMetrics with a less noisy input. GARCH(1,1) is not here: it needs a new
dependency (``arch``) or a hand-written optimizer, and HAR is the literature's benchmark on realized measures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crypto_lambda.forecast.config import ForecastConfig, ModelSpec
from crypto_lambda.forecast.cv import LeakageError
from crypto_lambda.forecast.models import Forecaster, future_days

HAR_LAGS = (1, 5, 22)  # daily, weekly, monthly components (trading-day convention of Corsi; crypto trades daily)
VOL_NAIVE = "vol_naive"
VOL_SPECS = (
    ModelSpec(name=VOL_NAIVE, family="vol_naive", complexity=0, role="baseline"),
    ModelSpec(name="ewma", family="ewma", params={"lambda": 0.94}, complexity=1, role="baseline"),
    ModelSpec(name="har", family="har", complexity=2, role="candidate"),
    ModelSpec(name="har_log", family="har", params={"log": True}, complexity=3, role="candidate"),
)


def qlike(actual, forecast) -> float:
    """Mean QLIKE loss a/f - ln(a/f) - 1 (Patton 2011): 0 when f = a, robust to a noisy variance proxy, and it
    punishes under-forecasting risk more than over-forecasting it."""
    ratio = np.asarray(actual, float) / np.asarray(forecast, float)
    return float(np.mean(ratio - np.log(ratio) - 1))


def mse_log(actual, forecast) -> float:
    """Mean squared error of log variance."""
    return float(np.mean((np.log(np.asarray(actual, float)) - np.log(np.asarray(forecast, float))) ** 2))


def _frame(cutoff: pd.Timestamp, yhat: np.ndarray) -> pd.DataFrame:
    nan = np.full(len(yhat), np.nan)
    return pd.DataFrame({"ds": future_days(cutoff, len(yhat)), "yhat": yhat, "lower": nan, "upper": nan})


def daily_variance(train: pd.DataFrame, cutoff: pd.Timestamp, window_days: int | None) -> np.ndarray:
    """Training variance on every calendar day of the window up to the cutoff, NaN where a day is missing
    (numpy day offsets rather than a pandas reindex: this runs once per model x cutoff). A row after the
    cutoff is refused, not silently dropped: the CV handed over data it must not have."""
    days = (pd.DatetimeIndex(train["ds"]).asi8 // 86_400_000_000_000).astype(np.int64)
    last = cutoff.value // 86_400_000_000_000
    if len(days) and days[-1] > last:
        raise LeakageError(f"variance after cutoff {cutoff.date()} in a training window")
    first = int(days[0]) if window_days is None else max(int(days[0]), last - window_days + 1)
    keep = days >= first
    out = np.full(last - first + 1, np.nan)
    out[days[keep] - first] = train["y"].to_numpy(float)[keep]
    return out


def _trailing_mean(v: np.ndarray, n: int) -> np.ndarray:
    """Mean of the observed values among the last ``n`` days (NaN when fewer than half were observed)."""
    ok = ~np.isnan(v)
    cs = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    cnt = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - n, 0)
    k = cnt[idx] - cnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k >= max(1, n // 2), (cs[idx] - cs[lo]) / k, np.nan)


def har_features(v: np.ndarray) -> np.ndarray:
    """Rows [1, v_d, v_w, v_m] for every day (NaN until 22 days of history or where a component has no day)."""
    x = np.column_stack([np.ones(len(v)), *[_trailing_mean(v, n) for n in HAR_LAGS]])
    x[: max(HAR_LAGS) - 1] = np.nan
    return x


def fit_har(y: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares of y[t+h] on har_features(y)[t] for h = 1..H on the given (training) days only:
    (betas H x 4, residual variances H, features at the last day). A pair is used only when its target day
    t+h is in ``y`` (<= the cutoff). All H regressions at once through their normal equations (H 4 x 4 solves),
    ~20x cheaper than H ``lstsq`` calls and equal to them to 1e-14."""
    x = har_features(y)
    now = x[-1]
    if np.isnan(now).any():
        raise ValueError("HAR needs every component at the cutoff (22 days of history)")
    n = len(y)
    target = np.arange(n)[:, None] + np.arange(1, horizon + 1)[None, :]  # day t+h for every (t, h)
    ylag = np.concatenate([y, [np.nan]])[np.minimum(target, n)]  # past the cutoff: NaN, never a value
    use = ~np.isnan(x).any(axis=1)[:, None] & ~np.isnan(ylag)
    xz, yz = np.nan_to_num(x), np.where(use, ylag, 0.0)
    outer = (xz[:, :, None] * xz[:, None, :]).reshape(n, -1)
    grams = (use.T.astype(float) @ outer).reshape(horizon, x.shape[1], x.shape[1])
    betas = np.linalg.solve(grams, (xz.T @ yz).T[..., None])[..., 0]
    resid = np.where(use, ylag - xz @ betas.T, np.nan)
    return betas, np.nanvar(resid, axis=0), now


class VolModel:
    """One volatility forecaster; ``family`` is vol_naive, ewma or har (``log`` param: HAR on log variance)."""

    def __init__(self, spec: ModelSpec, config: ForecastConfig) -> None:
        self.family = spec.family
        self.lam = float(spec.params.get("lambda", 0.94))
        self.log = bool(spec.params.get("log", False))
        self.window = config.train_days

    def __call__(self, train: pd.DataFrame, cutoff: pd.Timestamp, horizon: int) -> pd.DataFrame:
        v = daily_variance(train, cutoff, self.window)
        observed = v[~np.isnan(v)]
        if self.family == "vol_naive":
            return _frame(cutoff, np.full(horizon, observed[-1]))
        if self.family == "ewma":
            return _frame(cutoff, np.full(horizon, ewma(observed, self.lam)))
        return _frame(cutoff, self._har(v, horizon, floor=observed.min()))

    def _har(self, v: np.ndarray, horizon: int, floor: float) -> np.ndarray:
        scale = float(np.nanmean(v))  # levels ~1e-3: fit on v / mean so the normal equations are well scaled
        y = np.log(v / scale) if self.log else v / scale
        betas, resid_var, now = fit_har(y, horizon)
        pred = betas @ now
        # log HAR forecasts the log; E[v] of a log-normal is exp(mean + s2 / 2), s2 the fit's residual variance
        out = np.exp(pred + 0.5 * resid_var) if self.log else pred
        return np.maximum(out * scale, floor)  # a level HAR can go negative; never below the training minimum


def ewma(v: np.ndarray, lam: float) -> float:
    """RiskMetrics recursion s[t+1] = lam s[t] + (1 - lam) v[t] over the observed days, started at the mean of
    the first 30, in closed form: lam^n s0 + (1 - lam) sum lam^(n-1-i) v[i]."""
    n = len(v)
    weights = (1 - lam) * lam ** np.arange(n - 1, -1, -1, dtype=float)
    return float(lam ** n * np.mean(v[:30]) + weights @ v)


def build_vol_forecaster(spec: ModelSpec, config: ForecastConfig) -> Forecaster:
    if spec.family in ("vol_naive", "ewma", "har"):
        return VolModel(spec, config)
    raise ValueError(f"unknown volatility model family {spec.family!r} for {spec.name}")
