"""Where a forecast run's outputs live, how they are written, and how to read the latest ones back.

Layout (everything under ``CRYPTO_LAMBDA_HOME``):
- ``forecasts/<stamp>/<SYMBOL>/``: ``forecast.parquet`` (champion, next H days, 80 % band), ``metrics.parquet``
  and ``metrics.csv`` (the reported table), ``cv_by_horizon.parquet`` (every model x horizon 1..H),
  ``cv_points.parquet`` (every CV forecast with its actual), ``chart.html``, ``chart.png``, ``summary.json``.
  ``<stamp>`` is ``YYYYmmddTHHMMSSZ-<run id prefix>``, so every run keeps its own outputs (no ``_old`` copies).
- ``forecasts/latest/<SYMBOL>.json``: the pointer to the newest run of that symbol (paths, champion,
  thresholds), replaced atomically. One file per symbol, so runs of different symbols never race.
  Beside them the volatility run: ``vol_forecast.parquet`` (champion's daily variance and vol, next H days),
  ``vol_metrics.parquet``/``.csv``, ``vol_cv_points.parquet``, ``vol_chart.html``, ``vol_chart.png``.
- ``lake/forecast_metrics/<SYMBOL>.parquet`` and ``lake/forecasts/<SYMBOL>.parquet``: stable copies of the
  newest metrics and forecast, for the ``forecast_metrics`` query view and the serving layer. The metrics file
  holds both targets, told apart by ``target`` (``price`` | ``volatility``); each has its own columns (MAPE...
  for the price, QLIKE and MSE of log variance for the volatility) and its own champion.
  ``lake/volatility_forecasts/<SYMBOL>.parquet``: the newest volatility forecast.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from crypto_lambda import lake as lk
from crypto_lambda.config import validate_symbol
from crypto_lambda.forecast.config import DRIFT, NAIVE, SEEDS
from crypto_lambda.forecast.pipeline import ForecastResult

FORECASTS_DIR = "forecasts"
FORECAST_METRICS = "forecast_metrics"  # lake dataset, and the name of the query view
FORECASTS = "forecasts"  # lake dataset: the newest champion forecast per symbol
VOL_FORECASTS = "volatility_forecasts"  # lake dataset: the newest volatility forecast per symbol
PRICE, VOLATILITY = "price", "volatility"  # values of the metrics' ``target`` column
VIEW_COLUMNS = ["symbol", "target", "model", "horizon", "mape", "pinball", "mae", "rmse", "mase", "coverage80",
                "qlike", "mse_log", "is_champion"]


def run_stamp(run_id: str | None = None, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{(run_id or uuid.uuid4().hex)[:8]}"


def latest_pointer(home: Path, symbol: str) -> Path:
    return home / FORECASTS_DIR / "latest" / f"{validate_symbol(symbol)}.json"


def _row(result: ForecastResult, model: str) -> dict[str, Any]:
    """A model's mean and H-day figures, and MAPE / pinball / coverage per reported horizon, for the summary,
    the report and the checks."""
    cfg = result.config
    h = str(cfg.horizon)
    labels = [*(str(x) for x in cfg.report_horizons), cfg.mean_label]
    return {"mean_mape": result.metric(model, cfg.mean_label), f"mape_{h}d": result.metric(model, h),
            "coverage80": result.metric(model, cfg.mean_label, "coverage80"),
            "mase": result.metric(model, cfg.mean_label, "mase"),
            "by_horizon": {x: {m: result.metric(model, x, m) for m in ("mape", "pinball", "coverage80")}
                           for x in labels}}


def _volatility(result: ForecastResult) -> dict[str, Any] | None:
    vol = result.volatility
    if vol is None:
        return None
    labels = [*(str(x) for x in result.config.vol_report_horizons), result.config.mean_label]
    return {"champion": vol.champion, "skill_qlike": vol.skill("qlike"), "skill_mse_log": vol.skill("mse_log"),
            "cutoffs": {"count": len(vol.cutoffs), "first": str(vol.cutoffs[0].date()),
                        "last": str(vol.cutoffs[-1].date())},
            "target_days_minutes": int(vol.metrics["target_days_minutes"].iloc[0]),
            "failures": vol.failures,
            "models": {m: {x: {k: vol.metric(m, x, k) for k in ("qlike", "mse_log")} for x in labels}
                       for m in dict.fromkeys(vol.metrics["model"])}}


def summary(result: ForecastResult, stamp: str, files: dict[str, Path]) -> dict[str, Any]:
    cfg = result.config
    return {
        "symbol": result.symbol, "stamp": stamp, "generated_at": dt.datetime.now(dt.UTC).isoformat(),
        "trained_through": str(result.history["ds"].max().date()), "champion": result.champion,
        "finalists": result.finalists, "failures": result.failures,
        "cutoffs": {"count": len(result.cutoffs), "first": str(result.cutoffs[0].date()),
                    "last": str(result.cutoffs[-1].date())},
        "filled_days_dropped": result.filled_days_dropped, "seconds": round(result.seconds, 2),
        "figures": {m: _row(result, m)
                    for m in dict.fromkeys([result.champion, NAIVE, DRIFT, SEEDS, *result.finalists])
                    if m in set(result.metrics["model"])},
        "volatility": _volatility(result),
        "thresholds": {"mape_ceiling_30d": cfg.mape_ceiling_30d, "coverage_band": list(cfg.coverage_band),
                       "horizon": cfg.horizon, "coverage_horizons": list(cfg.report_horizons)},
        "config": cfg.as_dict(), "files": {k: str(v) for k, v in files.items()},
    }


def write_outputs(result: ForecastResult, home: Path, lake: Path, stamp: str) -> dict[str, Any]:
    """Write one symbol's run outputs, then the stable lake copies, then (last) the latest pointer, so a
    reader following the pointer never finds a file missing. Returns the summary (with file paths)."""
    from crypto_lambda.forecast.charts import write_html, write_png  # plotly/matplotlib only when writing
    from crypto_lambda.forecast.vol_charts import write_vol_html, write_vol_png

    sym = validate_symbol(result.symbol)
    root = home / FORECASTS_DIR
    folder = root / stamp / sym
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    metrics = result.metrics.assign(target=PRICE, run_stamp=stamp, generated_at=now)
    files = {
        "forecast": lk.write_frame(result.forecast, folder / "forecast.parquet"),
        "metrics": lk.write_frame(metrics, folder / "metrics.parquet"),
        "metrics_csv": lk.atomic_text(folder / "metrics.csv", metrics.to_csv(index=False, float_format="%.6g")),
        "cv_by_horizon": lk.write_frame(result.per_horizon.assign(symbol=sym), folder / "cv_by_horizon.parquet"),
        "cv_points": lk.write_frame(result.points.assign(symbol=sym), folder / "cv_points.parquet"),
        "chart_html": write_html(result, folder / "chart.html", root / "_static"),
        "chart_png": write_png(result, folder / "chart.png"),
    }
    both = metrics
    vol = result.volatility
    if vol is not None:
        vol_metrics = vol.metrics.assign(target=VOLATILITY, run_stamp=stamp, generated_at=now)
        files.update({
            "vol_forecast": lk.write_frame(vol.forecast, folder / "vol_forecast.parquet"),
            "vol_metrics": lk.write_frame(vol_metrics, folder / "vol_metrics.parquet"),
            "vol_metrics_csv": lk.atomic_text(folder / "vol_metrics.csv",
                                              vol_metrics.to_csv(index=False, float_format="%.6g")),
            "vol_cv_points": lk.write_frame(vol.points.assign(symbol=sym), folder / "vol_cv_points.parquet"),
            "vol_chart_html": write_vol_html(vol, folder / "vol_chart.html", root / "_static"),
            "vol_chart_png": write_vol_png(vol, folder / "vol_chart.png"),
        })
        both = pd.concat([metrics, vol_metrics], ignore_index=True)
        files["lake_vol_forecast"] = lk.write_frame(vol.forecast, lk.symbol_path(lake, VOL_FORECASTS, sym))
    both = both.reindex(columns=[*both.columns, *(c for c in VIEW_COLUMNS if c not in both)])  # the view's shape
    files["lake_metrics"] = lk.write_frame(both, lk.symbol_path(lake, FORECAST_METRICS, sym))
    files["lake_forecast"] = lk.write_frame(result.forecast, lk.symbol_path(lake, FORECASTS, sym))
    info = summary(result, stamp, files)
    files["summary"] = lk.atomic_text(folder / "summary.json", json.dumps(info, indent=2, default=str) + "\n")
    info["files"]["summary"] = str(files["summary"])
    lk.atomic_text(latest_pointer(home, sym), json.dumps(info, indent=2, default=str) + "\n")
    return info


def read_latest(home: Path, symbol: str) -> dict[str, Any] | None:
    path = latest_pointer(home, symbol)
    return json.loads(path.read_text()) if path.exists() else None


def read_metrics(lake: Path, symbol: str, target: str | None = PRICE) -> pd.DataFrame | None:
    """The newest metrics of a symbol, of one ``target`` (None: both). Files written before the volatility
    forecasts have no ``target`` column: all their rows are price rows."""
    path = lk.symbol_path(lake, FORECAST_METRICS, symbol)
    if not path.exists():
        return None
    frame = pq.read_table(path).to_pandas()
    if "target" not in frame:
        frame["target"] = PRICE
    return frame if target is None else frame[frame["target"] == target].reset_index(drop=True)


def metrics_markdown(metrics: pd.DataFrame, mean_label: str, horizons: tuple[int, ...]) -> str:
    """Compact table for Dagster metadata: one row per model, MAPE per horizon, then mean coverage and MASE."""
    cols = [*(str(h) for h in horizons), mean_label]
    head = ["symbol", "model", *(f"MAPE {c}" for c in cols), f"cov80 {mean_label}", f"MASE {mean_label}",
            "cutoffs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (sym, model), g in metrics.groupby(["symbol", "model"], sort=False):
        g = g.set_index("horizon")
        mean = g.loc[mean_label]
        name = f"**{model}** (champion)" if bool(mean["is_champion"]) else model
        cells = [sym, name, *(f"{g.at[c, 'mape']:.2f}" if c in g.index else "-" for c in cols),
                 f"{mean['coverage80']:.1f}", f"{mean['mase']:.2f}", str(int(mean["cutoffs"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison(result: ForecastResult) -> pd.DataFrame:
    """Seeds' method vs naive vs champion per reported horizon: MAPE and 80 % coverage, in percent."""
    cfg = result.config
    labels = [*(str(h) for h in cfg.report_horizons), cfg.mean_label]
    cols: dict[str, list[float]] = {}
    for tag, model in (("seeds", SEEDS), ("naive", NAIVE), (f"champion={result.champion}", result.champion)):
        if model in set(result.metrics["model"]):
            cols[f"{tag} MAPE"] = [result.metric(model, h) for h in labels]
            cols[f"{tag} cov80"] = [result.metric(model, h, "coverage80") for h in labels]
    return pd.DataFrame(cols, index=pd.Index(labels, name="horizon")).round(2)
