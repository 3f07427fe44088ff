"""Forecast benchmark (issues #5, #17): both symbols, every candidate, the full default CV (a cutoff every 30 days
over 3 years, 30-day horizon), champion forecasts, charts and outputs, in one cold process; since #17 also the
daily-variance forecasts (realized variance from the shipped minutes, naive / EWMA / HAR through the same CV,
their charts). Target <= 60 s on 2 cores. Baseline, measured in the same run in a second cold process: the
price forecasts alone (what the run cost before #17); ``--no-baseline`` skips it.

Also prints the truth table on the shipped real Binance daily bars: the seeds' method vs naive vs the champion
per horizon. Other processes on the machine inflate the wall clock, so the CPU seconds of the process and its
cmdstan children are reported too (divided by 2 they are the wall clock on two otherwise idle cores).

    .venv/bin/python bench/bench_forecast.py [--threads 2] [--no-baseline]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Figure, log  # noqa: E402

SYMBOLS = ("BTCUSDT", "ETHUSDT")
TARGET_S = 60.0


def _cpu() -> tuple[float, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def child(threads: int, volatility: bool) -> dict:
    """The measured work, in this fresh process: imports, realized variance from the minutes, CV, champion
    forecasts, charts, outputs."""
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    from crypto_lambda.forecast.config import ForecastConfig
    from crypto_lambda.forecast.outputs import comparison, metrics_markdown, run_stamp, write_outputs
    from crypto_lambda.forecast.pipeline import run_forecasts, sample_daily
    from crypto_lambda.forecast.report import format_report
    from crypto_lambda.volatility import realized_by_day, sample_minutes

    config = ForecastConfig(threads=threads, volatility=volatility)
    frames = {s: sample_daily(s) for s in SYMBOLS}
    realized = {s: realized_by_day(sample_minutes(s)) for s in SYMBOLS} if volatility else None
    imported = time.perf_counter()
    results = run_forecasts(frames, config, realized=realized)
    cv_done = time.perf_counter()
    home = common.bench_home() / ("forecast_home" if volatility else "forecast_home_price_only")
    shutil.rmtree(home, ignore_errors=True)
    stamp = run_stamp()
    infos = {s: write_outputs(r, home, home / "lake", stamp) for s, r in results.items()}
    done = time.perf_counter()
    cpu_self, cpu_kids = _cpu()
    prophet = {s.name for s in config.specs() if s.family == "prophet"}
    fits = sum(len(r.points.loc[r.points["model"].isin(prophet), ["model", "cutoff"]].drop_duplicates())
               + (r.champion in prophet) for r in results.values())
    return {
        "imports_s": imported - started, "cv_s": cv_done - imported, "write_s": done - cv_done,
        "cpu_self_s": cpu_self, "cpu_children_s": cpu_kids, "prophet_fits": fits,
        "load_before": load_before, "load_after": os.getloadavg()[0], "threads": threads,
        "cutoffs": {s: len(r.cutoffs) for s, r in results.items()},
        "champion": {s: r.champion for s, r in results.items()},
        "finalists": {s: r.finalists for s, r in results.items()},
        "comparison": {s: comparison(r).to_string() for s, r in results.items()},
        "metrics_md": {s: metrics_markdown(r.metrics, config.mean_label, config.report_horizons)
                       for s, r in results.items()},
        "outputs": {s: info["files"]["summary"] for s, info in infos.items()},
        "report": format_report(list(infos.values())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="worker threads for the Prophet fits")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the baseline run (price forecasts alone, a second cold process)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--price-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        common.emit(child(args.threads, volatility=not args.price_only))
        return 0
    log(f"forecast: both symbols, price + volatility, full default CV, {args.threads} threads "
        f"(load average {os.getloadavg()[0]:.1f})")
    script = [str(Path(__file__).resolve()), "--child", "--threads", str(args.threads)]
    wall, out = common.run_child(script)
    base_wall, base = None, None
    if not args.no_baseline:
        log("baseline: the price forecasts alone, same CV, fresh process")
        base_wall, base = common.run_child([*script, "--price-only"])
    cpu = out["cpu_self_s"] + out["cpu_children_s"]
    load = f"load average {out['load_before']:.1f} before, {out['load_after']:.1f} after"
    figures = [
        Figure("both symbols end to end, price + volatility (cold process)", wall, "s", baseline=base_wall,
               target=f"<= {TARGET_S:.0f} s", met=wall <= TARGET_S,
               note=f"{load}; {args.threads} threads; setup {out['imports_s']:.1f} s incl. realized variance of "
                    "the minutes (Prophet itself is imported inside the CV); baseline = price alone"),
        Figure("CV of every candidate + champion forecasts", out["cv_s"], "s", baseline=base and base["cv_s"],
               note=f"{out['prophet_fits']} Prophet fits, cutoffs {out['cutoffs']}"),
        Figure("charts (HTML + PNG) and outputs", out["write_s"], "s", baseline=base and base["write_s"]),
        Figure("CPU: process + cmdstan children", cpu, "s", target=f"<= {2 * TARGET_S:.0f} s (2 cores)",
               baseline=base and base["cpu_self_s"] + base["cpu_children_s"], met=cpu <= 2 * TARGET_S,
               note=f"= {cpu / 2:.1f} s of wall on 2 idle cores (self {out['cpu_self_s']:.1f} s, cmdstan "
                    f"{out['cpu_children_s']:.1f} s)"),
    ]
    common.print_table("forecast (issues #5, #17)", figures)
    for symbol, table in out["comparison"].items():
        print(f"\n{symbol}: champion {out['champion'][symbol]}, grid finalist(s) {out['finalists'][symbol]}; "
              f"{out['cutoffs'][symbol]} cutoffs, MAPE and 80 % coverage in %\n{table}")
    for symbol, md in out["metrics_md"].items():
        print(f"\n{symbol} every candidate:\n{md}")
    print(f"\nreport (price and volatility, per symbol):\n{out['report']}")
    path = common.write_figures("forecast", figures, extra={**out, "baseline": base})
    log(f"figures -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
