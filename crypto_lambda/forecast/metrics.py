"""Error metrics per horizon, the summary table, and the champion.

Definitions (``a`` actual close, ``f`` forecast, over every CV point at a horizon):
- MAPE = mean(|a - f| / |a|) x 100 (percent), MAE = mean |a - f| and RMSE = sqrt(mean (a - f)^2) in quote
  currency (USDT), coverage80 = share of actuals inside [lower, upper] x 100 (percent).
- pinball = the mean over q in 10/50/90 % of the pinball (quantile) loss of ``lower``/``yhat``/``upper`` taken as
  those quantiles, divided by the actual and x 100 (percent of the price, so three years of prices that moved
  5x weigh alike; the mean over q approximates CRPS / 2). A model without an interval scores NaN.
- MASE = MAE(model, h) / MAE(naive, h): the scale is the naive forecast's CV error at the SAME horizon and on
  the same points. Why not Hyndman's in-sample one-step naive MAE: a 30-day forecast is compared with a
  1-day error then, so even the naive scores ~5 at h = 30 and the number stops answering the question the
  issue asks ("better than doing nothing?"). Here naive = 1 at every horizon and < 1 means better than naive.
- The mean row (label ``1-H``) averages each per-horizon MAPE, pinball, MAE, RMSE and coverage over h = 1..H; its
  MASE is mean MAE / naive mean MAE.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from crypto_lambda.forecast.config import NAIVE, ForecastConfig, ModelSpec

METRICS = ["mape", "pinball", "mae", "rmse", "mase", "coverage80"]
QUANTILES = (0.1, 0.5, 0.9)  # the 80 % interval's bounds and the point forecast


def _arrays(*values) -> list[np.ndarray]:
    return [np.asarray(v, dtype=float) for v in values]


def mape(actual, forecast) -> float:
    a, f = _arrays(actual, forecast)
    return float(np.mean(np.abs(a - f) / np.abs(a)) * 100)


def mae(actual, forecast) -> float:
    a, f = _arrays(actual, forecast)
    return float(np.mean(np.abs(a - f)))


def rmse(actual, forecast) -> float:
    a, f = _arrays(actual, forecast)
    return float(np.sqrt(np.mean((a - f) ** 2)))


def coverage(actual, lower, upper) -> float:
    """Percent of actuals inside the closed interval; a NaN bound counts as a miss."""
    a, lo, hi = _arrays(actual, lower, upper)
    return float(np.mean((a >= lo) & (a <= hi)) * 100)


def pinball(actual, lower, median, upper, quantiles: tuple[float, ...] = QUANTILES) -> float:
    """Mean pinball loss of (lower, median, upper) as the given quantiles, in percent of the actual."""
    a = np.asarray(actual, dtype=float)
    losses = []
    for q, f in zip(quantiles, _arrays(lower, median, upper), strict=True):
        d = a - f
        losses.append(np.maximum(q * d, (q - 1) * d) / np.abs(a))
    return float(np.mean(losses) * 100)


def mase(model_mae: float, naive_mae: float) -> float:
    return float(model_mae / naive_mae) if naive_mae else float("nan")


def by_horizon(points: pd.DataFrame, naive: str = NAIVE) -> pd.DataFrame:
    """One row per model x horizon (1..H): n, cutoffs, mape, mae, rmse, coverage80, naive_mae, mase. The naive
    MAE is taken on the model's own points (same cutoffs and days), so a model screened on fewer cutoffs is
    still compared like for like."""
    nv = points[points["model"] == naive]
    ref = pd.DataFrame({"cutoff": nv["cutoff"], "ds": nv["ds"], "naive_abs": (nv["actual"] - nv["yhat"]).abs()})
    merged = points.merge(ref, on=["cutoff", "ds"], how="left")
    rows = []
    for (model, h), g in merged.groupby(["model", "horizon"], sort=True):
        a, f = g["actual"], g["yhat"]
        rows.append({"model": model, "horizon": int(h), "n": len(g), "cutoffs": g["cutoff"].nunique(),
                     "mape": mape(a, f), "pinball": pinball(a, g["lower"], f, g["upper"]),
                     "mae": mae(a, f), "rmse": rmse(a, f),
                     "coverage80": coverage(a, g["lower"], g["upper"]), "naive_mae": g["naive_abs"].mean()})
    table = pd.DataFrame(rows, columns=["model", "horizon", "n", "cutoffs", "mape", "pinball", "mae", "rmse",
                                        "coverage80", "naive_mae"])
    table["mase"] = table["mae"] / table["naive_mae"]
    return table


def summarize(per_h: pd.DataFrame, config: ForecastConfig) -> pd.DataFrame:
    """The reported rows: each of ``report_horizons`` plus the mean over 1..H; ``horizon`` is a label."""
    rows = []
    for model, g in per_h.groupby("model", sort=False):
        g = g.set_index("horizon")
        base = {"model": model, "cutoffs": int(g["cutoffs"].max())}
        for h in config.report_horizons:
            if h in g.index:
                rows.append({**base, "horizon": str(h), "n": int(g.at[h, "n"]),
                             **{m: float(g.at[h, m]) for m in METRICS}})
        rows.append({**base, "horizon": config.mean_label, "n": int(g["n"].sum()),
                     "mape": g["mape"].mean(), "pinball": g["pinball"].mean(), "mae": g["mae"].mean(),
                     "rmse": g["rmse"].mean(),
                     "mase": mase(g["mae"].mean(), g["naive_mae"].mean()), "coverage80": g["coverage80"].mean()})
    return pd.DataFrame(rows, columns=["model", "horizon", "n", "cutoffs", *METRICS])


def pick_champion(mean: pd.DataFrame, specs: Sequence[ModelSpec], metric: str, tolerance: float,
                  naive: str) -> str:
    """The rule both targets share: among models scored on every point ``naive`` was scored on (``mean`` is
    indexed by model with ``n`` and ``metric``), the lowest ``metric``; models within ``tolerance`` of the best
    tie and the simplest of them wins. Naive is the simplest model, so the champion is never worse than it."""
    complexity = {s.name: s.complexity for s in specs}
    full = mean.at[naive, "n"] if naive in mean.index else mean["n"].max()
    eligible = mean[(mean["n"] == full) & np.isfinite(mean[metric]) & mean.index.isin(list(complexity))]
    if eligible.empty:
        raise ValueError("no model was scored on every CV point; nothing can be champion")
    best = eligible[metric].min()
    tied = eligible[eligible[metric] <= best + tolerance]
    return min(tied.index, key=lambda name: (complexity[name], name))


def choose_champion(summary: pd.DataFrame, specs: Sequence[ModelSpec], config: ForecastConfig) -> str:
    """Lowest mean MAPE over 1..H; ties within ``tie_tolerance`` percentage points go to the simpler model."""
    mean = summary[summary["horizon"] == config.mean_label].set_index("model")
    return pick_champion(mean, specs, "mape", config.tie_tolerance, NAIVE)
