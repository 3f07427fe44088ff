"""The ``forecasts`` asset (per-symbol static partitions); the work lives in crypto_lambda.forecast.

Input: ``serving_daily``, the merged batch + speed series (a Delta table, read with delta-rs).
Forward-filled days (``source == "filled"``) and today's provisional speed bar are dropped by
``prepare_series``: neither is an observed daily close. The asset refreshes itself once a day after its input
has been updated (``AutomationCondition.on_cron``), so a forecast run does not follow every speed update.
The daily variance forecasts use the same bars (Garman-Klass) and, where ``realized_vol_daily`` has a day of
complete minutes, its realized variance; without that asset on disk they are range-based only. It is read,
not declared a dependency: ``on_cron`` waits for every parent to update after the tick, and most day
partitions of realized_vol_daily never update again. The lake outputs (``forecasts``, ``forecast_metrics``,
``volatility_forecasts``) are written by the run's Spark session, one commit per table for all its symbols.
"""

import dagster as dg
import pandas as pd
from dagster_pyspark import PySparkResource

from crypto_assets.lib.partitions import symbol_partitions
from crypto_assets.lib.resources import LakeResource
from crypto_lambda.config import Settings
from crypto_lambda.forecast.config import ForecastConfig
from crypto_lambda.forecast.outputs import metrics_markdown, run_stamp, write_run
from crypto_lambda.forecast.pipeline import run_forecasts
from crypto_lambda.forecast.report import format_report
from crypto_lambda.lake.tables import FORECASTS, SERVING_DAILY
from crypto_lambda.serving import read_serving
from crypto_lambda.volatility import read_realized

INPUT_ASSET = SERVING_DAILY
FORECAST_CRON = "30 1 * * *"  # after the 00:10/00:40 batch schedules and the serving update
GROUP = "forecast"


def read_input(settings: Settings, symbol: str) -> pd.DataFrame | None:
    return read_serving(settings, symbol)


class ForecastRunConfig(dg.Config):
    """Run-config knobs (defaults = issue #5). Thresholds travel with the run's outputs to the checks."""

    horizon: int = 30
    period: int = 30
    cv_days: int = 3 * 365
    screen_every: int = 6
    finalists: int = 1
    use_grid: bool = True
    include_seeds: bool = True
    threads: int = 2
    mape_ceiling_30d: float = 20.0
    coverage_low: float = 70.0
    coverage_high: float = 90.0
    volatility: bool = True

    def forecast_config(self) -> ForecastConfig:
        base = ForecastConfig()
        return base.replace(
            horizon=self.horizon, period=self.period, cv_days=self.cv_days, screen_every=self.screen_every,
            finalists=self.finalists, grid=base.grid if self.use_grid else (), include_seeds=self.include_seeds,
            threads=self.threads, mape_ceiling_30d=self.mape_ceiling_30d,
            coverage_band=(self.coverage_low, self.coverage_high), volatility=self.volatility,
            report_horizons=tuple(h for h in base.report_horizons if h <= self.horizon))


def build_forecast_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name=FORECASTS, partitions_def=symbol_partitions(settings), backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP, kinds={"delta", "python"}, deps=[INPUT_ASSET],
        automation_condition=dg.AutomationCondition.on_cron(FORECAST_CRON, "UTC"),
        description="Champion's next-30-day forecast with its 80 % interval, chosen by rolling-origin CV among "
                    "naive, drift, the seeds' Prophet and a Prophet-on-log grid; beside it the daily variance "
                    "forecast (naive, EWMA, HAR-RV by QLIKE); metrics tables and charts.",
    )
    def forecasts(context: dg.AssetExecutionContext, config: ForecastRunConfig, lake: LakeResource,
                  pyspark: PySparkResource) -> dg.MaterializeResult:
        run_settings = lake.settings()
        symbols = sorted(context.partition_keys)
        frames = {s: read_input(run_settings, s) for s in symbols}
        absent = [s for s, f in frames.items() if f is None or f.empty]
        if absent:
            raise dg.Failure(f"no {INPUT_ASSET} series for {', '.join(absent)}: materialize {INPUT_ASSET} first")
        cfg = config.forecast_config()
        realized = {s: r for s in symbols if (r := read_realized(run_settings.lake, s)) is not None}
        results = run_forecasts(frames, cfg, realized=realized)  # all symbols of the run share one thread pool
        stamp = run_stamp(context.run_id)
        written = write_run(results, run_settings.home, run_settings.lake, stamp, spark=pyspark.spark_session,
                            run_id=context.run_id)
        meta: dict[str, dg.MetadataValue] = {"run_stamp": dg.MetadataValue.text(stamp), **{
            f"{table}_version": dg.MetadataValue.int(v) for table, v in written[symbols[0]]["lake_versions"].items()
            if v is not None}}
        tables, infos = [], []
        for sym in symbols:
            res, info = results[sym], written[sym]
            tables.append(res.metrics)
            infos.append(info)
            files = info["files"]
            meta[f"{sym}/champion"] = dg.MetadataValue.text(res.champion)
            meta[f"{sym}/chart_html"] = dg.MetadataValue.path(files["chart_html"])
            meta[f"{sym}/chart_png"] = dg.MetadataValue.path(files["chart_png"])
            meta[f"{sym}/forecast"] = dg.MetadataValue.path(files["forecast"])
            meta[f"{sym}/figures"] = dg.MetadataValue.json(info["figures"])
            if info["volatility"]:
                meta[f"{sym}/vol_champion"] = dg.MetadataValue.text(info["volatility"]["champion"])
                meta[f"{sym}/vol_skill_qlike"] = dg.MetadataValue.float(info["volatility"]["skill_qlike"])
                meta[f"{sym}/vol_chart_html"] = dg.MetadataValue.path(files["vol_chart_html"])
                meta[f"{sym}/vol_chart_png"] = dg.MetadataValue.path(files["vol_chart_png"])
            context.log.info(f"forecasts {sym}: champion {res.champion}, {len(res.cutoffs)} cutoffs, "
                             f"{res.seconds:.1f}s, outputs in {files['summary']}")
        meta["metrics"] = dg.MetadataValue.md(
            metrics_markdown(pd.concat(tables, ignore_index=True), cfg.mean_label, cfg.report_horizons))
        meta["cutoffs"] = dg.MetadataValue.int(len(results[symbols[0]].cutoffs))
        meta["report"] = dg.MetadataValue.md(f"```\n{format_report(infos)}\n```")
        context.log.info(f"forecasts report:\n{format_report(infos)}")
        return dg.MaterializeResult(metadata=meta)

    return [forecasts]

