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
- Delta tables in the lake (specified in :mod:`crypto_lambda.lake.tables`), one set of rows per symbol, rewritten by
  each run in ONE commit per table for all of the run's symbols: ``forecasts`` (the newest champion forecast),
  ``forecast_metrics`` (the ``forecast_metrics`` query view; both targets, told apart by ``target`` =
  ``price`` | ``volatility``, each with its own columns - MAPE... for the price, QLIKE and MSE of log variance
  for the volatility - and its own champion) and ``volatility_forecasts``. Time travel keeps earlier runs' rows.

The run folder is new for every run and the pointer is written last, so its files need no atomic writer.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from crypto_lambda.config import validate_symbol
from crypto_lambda.forecast.config import DRIFT, NAIVE, SEEDS
from crypto_lambda.forecast.pipeline import ForecastResult
from crypto_lambda.lake import atomic_text
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake import write as lake_write
from crypto_lambda.lake.tables import FORECAST_METRICS, FORECASTS, VOL_FORECASTS, table_path

FORECASTS_DIR = "forecasts"
__all__ = ["read_latest", "read_metrics", "write_outputs", "write_run"]
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


def _parquet(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


def _lake_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The run's rows of one table with stable column types, so run after run the table's schema only grows:
    numbers as float64 (a count column turns float when the other target lacks it), all-null as string."""
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for col in frame.columns:
        values = frame[col]
        if values.isna().all():
            frame[col] = values.astype("string")
        elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            frame[col] = values.astype("float64") if col != "horizon" or values.isna().any() else values
    return frame


def _run_files(result: ForecastResult, home: Path, stamp: str, now: dt.datetime
               ) -> tuple[dict[str, Path], pd.DataFrame]:
    """One symbol's run folder (tables, CSV, charts); returns its files and its rows of ``forecast_metrics``."""
    from crypto_lambda.forecast.charts import write_html, write_png  # plotly/matplotlib only when writing
    from crypto_lambda.forecast.vol_charts import write_vol_html, write_vol_png

    sym = validate_symbol(result.symbol)
    root = home / FORECASTS_DIR
    folder = root / stamp / sym
    folder.mkdir(parents=True, exist_ok=True)
    metrics = result.metrics.assign(target=PRICE, run_stamp=stamp, generated_at=now)
    files = {
        "forecast": _parquet(result.forecast, folder / "forecast.parquet"),
        "metrics": _parquet(metrics, folder / "metrics.parquet"),
        "metrics_csv": atomic_text(folder / "metrics.csv", metrics.to_csv(index=False, float_format="%.6g")),
        "cv_by_horizon": _parquet(result.per_horizon.assign(symbol=sym), folder / "cv_by_horizon.parquet"),
        "cv_points": _parquet(result.points.assign(symbol=sym), folder / "cv_points.parquet"),
        "chart_html": write_html(result, folder / "chart.html", root / "_static"),
        "chart_png": write_png(result, folder / "chart.png"),
    }
    both = metrics
    vol = result.volatility
    if vol is not None:
        vol_metrics = vol.metrics.assign(target=VOLATILITY, run_stamp=stamp, generated_at=now)
        files.update({
            "vol_forecast": _parquet(vol.forecast, folder / "vol_forecast.parquet"),
            "vol_metrics": _parquet(vol_metrics, folder / "vol_metrics.parquet"),
            "vol_metrics_csv": atomic_text(folder / "vol_metrics.csv",
                                           vol_metrics.to_csv(index=False, float_format="%.6g")),
            "vol_cv_points": _parquet(vol.points.assign(symbol=sym), folder / "vol_cv_points.parquet"),
            "vol_chart_html": write_vol_html(vol, folder / "vol_chart.html", root / "_static"),
            "vol_chart_png": write_vol_png(vol, folder / "vol_chart.png"),
        })
        both = pd.concat([metrics, vol_metrics], ignore_index=True)
    both = both.reindex(columns=[*both.columns, *(c for c in VIEW_COLUMNS if c not in both)])  # the view's shape
    return files, both


def write_run(results: Mapping[str, ForecastResult], home: Path, lake: Path, stamp: str, *, spark=None,
              run_id: str | None = None) -> dict[str, dict[str, Any]]:
    """Write a run's outputs: every symbol's run folder, then ONE replace commit per lake table covering the
    run's symbols, then (last) each latest pointer, so a reader following a pointer never finds data missing.
    Returns the summaries by symbol (with file paths and the lake versions written). ``spark``: the run's
    session (one is started when omitted)."""
    if spark is None:
        from crypto_lambda.spark import get_spark

        spark = get_spark()
    now = dt.datetime.now(dt.UTC)
    symbols = sorted(validate_symbol(s) for s in results)
    written = {s: _run_files(results[s], home, stamp, now) for s in symbols}
    with_vol = [s for s in symbols if results[s].volatility is not None]
    commits = [
        lake_write.replace(spark, lake, FORECAST_METRICS, _lake_frame([written[s][1] for s in symbols]),
                           symbols=symbols, run_id=run_id, extra={"run_stamp": stamp}),
        lake_write.replace(spark, lake, FORECASTS, _lake_frame([results[s].forecast for s in symbols]),
                           symbols=symbols, run_id=run_id, extra={"run_stamp": stamp}),
    ]
    if with_vol:
        commits.append(lake_write.replace(spark, lake, VOL_FORECASTS,
                                          _lake_frame([results[s].volatility.forecast for s in with_vol]),
                                          symbols=with_vol, run_id=run_id, extra={"run_stamp": stamp}))
    versions = {c.table: c.version for c in commits}
    infos = {}
    for sym in symbols:
        files = written[sym][0]
        files["lake_metrics"] = table_path(lake, FORECAST_METRICS)
        files["lake_forecast"] = table_path(lake, FORECASTS)
        if sym in with_vol:
            files["lake_vol_forecast"] = table_path(lake, VOL_FORECASTS)
        info = summary(results[sym], stamp, files)
        info["lake_versions"] = versions
        folder = Path(files["forecast"]).parent
        info["files"]["summary"] = str(atomic_text(folder / "summary.json",
                                                   json.dumps(info, indent=2, default=str) + "\n"))
        atomic_text(latest_pointer(home, sym), json.dumps(info, indent=2, default=str) + "\n")
        infos[sym] = info
    return infos


def write_outputs(result: ForecastResult, home: Path, lake: Path, stamp: str, *, spark=None,
                  run_id: str | None = None) -> dict[str, Any]:
    """:func:`write_run` for one symbol; its summary."""
    return write_run({result.symbol: result}, home, lake, stamp, spark=spark, run_id=run_id)[result.symbol]


def read_latest(home: Path, symbol: str) -> dict[str, Any] | None:
    path = latest_pointer(home, symbol)
    return json.loads(path.read_text()) if path.exists() else None


def read_metrics(lake: Path, symbol: str, target: str | None = PRICE,
                 as_of: int | str | None = None) -> pd.DataFrame | None:
    """The newest metrics of a symbol (delta-rs, or ``as_of`` a table version), of one ``target`` (None: both);
    None when the symbol has none."""
    frame = lake_read.read(lake, FORECAST_METRICS, [validate_symbol(symbol)], as_of=as_of)
    if frame.empty:
        return None
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
