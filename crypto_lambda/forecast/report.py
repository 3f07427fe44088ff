"""The forecast report a person reads (``make demo``, the bench, the asset's log): per symbol, the price models
(MAPE, pinball loss, 80 % coverage per horizon) beside the volatility models (QLIKE, MSE of log variance), and
the volatility champion's skill against naive as a ratio, whatever it is.

Built from a run's summary (``forecasts/latest/<SYMBOL>.json``), so whoever prints it needs no result object.
"""

from __future__ import annotations

import math
from typing import Any


def _cell(values: dict[str, float], keys: tuple[str, ...], fmt: tuple[str, ...]) -> str:
    parts = []
    for key, f in zip(keys, fmt, strict=True):
        v = values.get(key, float("nan"))
        parts.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, f))
    return "/".join(parts)


def _table(rows: dict[str, dict[str, dict[str, float]]], champion: str, keys: tuple[str, ...],
           fmt: tuple[str, ...]) -> list[str]:
    labels = list(next(iter(rows.values())).keys()) if rows else []
    width = max([len(m) for m in rows] + [10]) + 12
    head = f"    {'model':<{width}}" + "".join(f"{(h + 'd' if '-' not in h else h):>20}" for h in labels)
    lines = [head]
    ordered = sorted(rows, key=lambda m: (m != champion, m))
    for model in ordered:
        name = f"{model} [champion]" if model == champion else model
        lines.append(f"    {name:<{width}}" + "".join(f"{_cell(rows[model][h], keys, fmt):>20}" for h in labels))
    return lines


def symbol_report(info: dict[str, Any]) -> list[str]:
    """Lines for one symbol's summary."""
    cut = info["cutoffs"]
    price = {m: f["by_horizon"] for m, f in info["figures"].items() if "by_horizon" in f}
    lines = [f"  {info['symbol']} price: rolling-origin CV, {cut['count']} cutoffs {cut['first']}..{cut['last']}; "
             "cells MAPE % / pinball (10/50/90 %, % of price) / 80 % coverage %",
             *_table(price, info["champion"], ("mape", "pinball", "coverage80"), (".2f", ".2f", ".0f"))]
    vol = info.get("volatility")
    if not vol:
        return [*lines, f"  {info['symbol']} volatility: not forecast (no OHLC bars in the input)"]
    vc = vol["cutoffs"]
    lines += [f"  {info['symbol']} volatility (daily variance): {vc['count']} cutoffs {vc['first']}..{vc['last']}, "
              f"{vol['target_days_minutes']} scored points on 1-minute RV days, the rest range-based; "
              "cells QLIKE / MSE of log variance",
              *_table(vol["models"], vol["champion"], ("qlike", "mse_log"), (".3f", ".3f"))]
    skill = vol["skill_qlike"]
    verdict = ("beats naive" if skill < 1 else "does not beat naive; naive stays champion")
    lines.append(f"  {info['symbol']} volatility champion {vol['champion']}: skill vs naive (mean QLIKE ratio) "
                 f"{skill:.3f} ({verdict}); MSE-of-log-variance ratio {vol['skill_mse_log']:.3f}")
    return lines


def format_report(infos: list[dict[str, Any]]) -> str:
    out: list[str] = []
    for info in infos:
        out += [*symbol_report(info), ""]
    return "\n".join(out).rstrip()
