"""Daily variance of a symbol: realized from its 1-minute closes, or range-based from its daily bar.

Why both: realized variance (RV, the sum of squared 1-minute log returns) is the sharpest measure of a day's
variance, but the platform holds minutes only for the recent window; older days have only their daily bar, so
their variance is the Garman-Klass (1980) range estimate. Each row says which one it is (``source``), and the
check compares the two on days that have both (a drifting ratio means the two series cannot be spliced).

Every rule is written here once and works on one day's minutes in pandas; the ``realized_vol_daily`` asset runs
the same function inside Spark (``groupBy(symbol, date).applyInPandas``), and the forecasts and tests call it
directly on the shipped sample. Units: variance of the daily log return (BTC ~ 4e-4, i.e. 2 % a day).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_lambda.config import SAMPLE_1M
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.tables import REALIZED_VOL
from crypto_lambda.quality import is_complete_day
from crypto_lambda.schema import REALIZED_VOL_SCHEMA

MINUTES = "minutes"  # source: realized variance of a (>= 99 %) complete day of minutes
RANGE = "range_gk"  # source: Garman-Klass from the daily bar
VOL_DATASET = REALIZED_VOL  # lake table and asset name; range-only rows before the minutes are its rows with
# date < CRYPTO_LAMBDA_MINUTE_START (minutes_used 0, rv null), rewritten by every run from daily_history_1d
COLUMNS = REALIZED_VOL_SCHEMA.names
GK_CO = 2 * math.log(2) - 1


def garman_klass(o, h, lo, c, log: Callable = np.log):
    """Garman-Klass variance of one bar: 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2. ``log`` lets the same rule run
    on numpy arrays, pandas Series or Spark columns (``F.log``)."""
    hl, co = log(h / lo), log(c / o)
    return 0.5 * hl * hl - GK_CO * co * co


def realized_day(minutes: pd.DataFrame) -> pd.DataFrame:
    """One (symbol, UTC day) of 1-minute klines -> one row of COLUMNS.

    Returns: r_0 = ln(close_0 / open_0), then r_i = ln(close_i / close_{i-1}) in open-time order, so a full day
    has 1,440 returns spanning its open to its close (a missing minute makes one return span two; RV still
    measures the covered time). ``range_var`` is Garman-Klass of the bar built from the same minutes, which
    equals Binance's 1d bar. A day below 99 % of its minutes keeps its RV for inspection but is served by the
    range estimate (``variance``/``source``), since a partial RV understates the day.
    """
    m = minutes.sort_values("open_time")
    close = m["close"].to_numpy(float)
    prev = np.concatenate([m["open"].to_numpy(float)[:1], close[:-1]])
    r = np.log(close / prev)
    rv = float(np.sum(r * r))
    gk = float(garman_klass(float(m["open"].iloc[0]), float(m["high"].max()), float(m["low"].min()),
                            float(close[-1])))
    complete = is_complete_day(len(r))
    day = pd.to_datetime(m["open_time"].iloc[0], utc=True).date()  # naive times (Spark, UTC session) are UTC
    return pd.DataFrame([{"symbol": str(m["symbol"].iloc[0]), "date": day, "rv": rv, "rvol": math.sqrt(rv),
                          "minutes_used": len(r), "range_var": gk, "variance": rv if complete else gk,
                          "source": MINUTES if complete else RANGE}], columns=COLUMNS)


def realized_by_day(minutes: pd.DataFrame) -> pd.DataFrame:
    """``realized_day`` for every (symbol, UTC day) of a minute frame (symbol, open_time, open, high, low,
    close); the pandas path of what the asset computes in Spark."""
    day = pd.to_datetime(minutes["open_time"], utc=True).dt.date
    rows = [realized_day(g) for _, g in minutes.groupby([minutes["symbol"], day], sort=True)]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=COLUMNS)


def range_rows(bars: pd.DataFrame) -> pd.DataFrame:
    """Daily bars (symbol, date, open, high, low, close) -> COLUMNS rows with only the range estimate."""
    gk = garman_klass(bars["open"].to_numpy(float), bars["high"].to_numpy(float), bars["low"].to_numpy(float),
                      bars["close"].to_numpy(float))
    return pd.DataFrame({"symbol": bars["symbol"].to_numpy(), "date": pd.to_datetime(bars["date"]).dt.date,
                         "rv": np.nan, "rvol": np.nan, "minutes_used": 0, "range_var": gk, "variance": gk,
                         "source": RANGE}, columns=COLUMNS)


def variance_series(bars: pd.DataFrame, realized: pd.DataFrame | None = None) -> pd.DataFrame:
    """The series the volatility forecasts train and score on: ``ds``, ``y`` (daily variance), ``source``.

    ``bars`` are the observed daily bars (forward-filled and provisional days already dropped, see
    ``forecast.pipeline.prepare_series``); each day's variance is its range estimate unless ``realized``
    (rows of ``realized_vol_daily``) has a complete-minutes RV for it. Days with a non-positive estimate
    (a bar with high == low) are dropped: no variance forecast can be scored against zero.
    """
    out = range_rows(bars.assign(symbol=bars.get("symbol", "")))
    if realized is not None and len(realized):
        rv = realized[realized["source"] == MINUTES].drop_duplicates("date", keep="last").set_index("date")
        hit = out["date"].isin(rv.index)
        out.loc[hit, "variance"] = rv.loc[out.loc[hit, "date"], "variance"].to_numpy()
        out.loc[hit, "source"] = MINUTES
    out = out[np.isfinite(out["variance"]) & (out["variance"] > 0)]
    series = pd.DataFrame({"ds": pd.to_datetime(out["date"]), "y": out["variance"].astype(float),
                           "source": out["source"]})
    return series.drop_duplicates("ds", keep="last").sort_values("ds").reset_index(drop=True)


def agreement(rows: pd.DataFrame) -> dict[str, float | int]:
    """RV vs Garman-Klass on complete-minute days: count, correlation of log variances, mean and median of
    RV / GK. The log correlation because both are heavy-tailed (one crash day would dominate a linear one)."""
    both = rows[(rows["source"] == MINUTES) & (rows["range_var"] > 0) & (rows["rv"] > 0)]
    if len(both) < 3:
        return {"days": len(both), "log_corr": float("nan"), "mean_ratio": float("nan"),
                "median_ratio": float("nan")}
    ratio = both["rv"] / both["range_var"]
    return {"days": len(both), "log_corr": float(np.corrcoef(np.log(both["rv"]), np.log(both["range_var"]))[0, 1]),
            "mean_ratio": float(ratio.mean()), "median_ratio": float(ratio.median())}


def sample_minutes(symbol: str, folder: Path | None = None) -> pd.DataFrame:
    """The shipped 1-minute klines of a symbol (freqtrade feather) as symbol, open_time, open, high, low, close."""
    folder = folder or SAMPLE_1M
    [path] = sorted(folder.glob(f"{symbol}-1m-*.feather"))
    raw = pd.read_feather(path)
    return pd.DataFrame({"symbol": symbol, "open_time": raw["date"], "open": raw["open"], "high": raw["high"],
                         "low": raw["low"], "close": raw["close"]})


def read_realized(lake: Path, symbol: str) -> pd.DataFrame | None:
    """Every row of ``realized_vol_daily`` for a symbol (minute days and the range history, by date), or None."""
    rows = lake_read.read(lake, VOL_DATASET, [symbol])
    return rows if len(rows) else None
