"""The volatility chart: the realized daily volatility (1-minute RV where the minutes exist, range-based
before), the champion's forecast of the next H days, and every candidate's CV QLIKE by horizon; Plotly HTML
and matplotlib PNG like the price chart (same shared plotly.js, same atomic writes).

Shown as daily volatility in percent (sqrt of the variance x 100), the unit a person reads; the models and
scores work on the variance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from crypto_lambda.forecast.charts import CHAMPION_COLOR, HISTORY_DAYS, PALETTE, save_html, save_png
from crypto_lambda.forecast.vol_models import VOL_NAIVE
from crypto_lambda.forecast.vol_pipeline import VolResult
from crypto_lambda.volatility import MINUTES

COLORS = {VOL_NAIVE: "#1f77b4", "ewma": "#2ca02c", "har": "#9467bd", "har_log": "#8c564b"}


def _pct(variance) -> np.ndarray:
    return np.sqrt(np.asarray(variance, dtype=float)) * 100


def _recent(vol: VolResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(range-based, realized) daily vol in % over the last HISTORY_DAYS; each NaN on the other's days, so
    neither line bridges the other's stretch."""
    s = vol.series[vol.series["ds"] >= vol.series["ds"].max() - pd.Timedelta(days=HISTORY_DAYS)]
    pct, rv = _pct(s["y"]), s["source"].eq(MINUTES).to_numpy()
    return (pd.DataFrame({"ds": s["ds"], "vol": np.where(rv, np.nan, pct)}),
            pd.DataFrame({"ds": s["ds"], "vol": np.where(rv, pct, np.nan)}))


def _title(vol: VolResult) -> str:
    label = vol.config.mean_label
    return (f"{vol.symbol}: volatility champion {vol.champion} — CV mean QLIKE "
            f"{vol.metric(vol.champion, label):.3f} vs naive {vol.metric(VOL_NAIVE, label):.3f} "
            f"(skill ratio {vol.skill():.2f}; {len(vol.cutoffs)} cutoffs)")


def _curves(vol: VolResult) -> list[tuple[str, pd.DataFrame]]:
    models = sorted(vol.per_horizon["model"].unique(), key=lambda m: (m == vol.champion, m))
    return [(m, vol.per_horizon[vol.per_horizon["model"] == m].sort_values("horizon")) for m in models]


def _color(model: str, champion: str) -> str:
    return CHAMPION_COLOR if model == champion else COLORS.get(model, PALETTE[0])


def vol_plotly_figure(vol: VolResult) -> go.Figure:
    ranged, realized = _recent(vol)
    fc = vol.forecast
    fig = make_subplots(rows=2, cols=1, row_heights=[0.62, 0.38], vertical_spacing=0.1,
                        subplot_titles=("Daily volatility (%) and the champion's forecast",
                                        "Cross-validated QLIKE by horizon, every candidate"))
    fig.add_trace(go.Scatter(x=ranged["ds"], y=ranged["vol"], name="range-based (Garman-Klass)",
                             mode="lines", line={"color": "grey"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=realized["ds"], y=realized["vol"], name="realized (1-minute RV)",
                             mode="lines", line={"color": "black"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=pd.to_datetime(fc["date"]), y=_pct(fc["variance"]),
                             name=f"forecast: {vol.champion}", line={"color": CHAMPION_COLOR, "dash": "dash"}),
                  row=1, col=1)
    for model, g in _curves(vol):
        fig.add_trace(go.Scatter(x=g["horizon"], y=g["qlike"], mode="lines",
                                 name=f"{model} [champion]" if model == vol.champion else model,
                                 line={"color": _color(model, vol.champion),
                                       "width": 3.5 if model == vol.champion else 1.5},
                                 customdata=np.stack([g["mse_log"], g["n"]], axis=-1),
                                 hovertemplate="h=%{x}d QLIKE %{y:.3f}<br>MSE log var %{customdata[0]:.3f}"
                                               "<br>n=%{customdata[1]}"), row=2, col=1)
    fig.update_xaxes(title_text="horizon (days after the cutoff)", row=2, col=1)
    fig.update_yaxes(title_text="daily vol %", row=1, col=1)
    fig.update_yaxes(title_text="QLIKE", type="log", row=2, col=1)
    fig.update_layout(title=_title(vol), height=900, template="plotly_white", hovermode="x unified")
    return fig


def vol_matplotlib_figure(vol: VolResult) -> Figure:
    ranged, realized = _recent(vol)
    fc = vol.forecast
    fig = Figure(figsize=(12, 8.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, height_ratios=[1.6, 1])
    top.plot(ranged["ds"], ranged["vol"], color="grey", lw=1, label="range-based (Garman-Klass)")
    top.plot(realized["ds"], realized["vol"], color="black", lw=1.2, label="realized (1-minute RV)")
    top.plot(pd.to_datetime(fc["date"]), _pct(fc["variance"]), color=CHAMPION_COLOR, ls="--", lw=1.8,
             label=f"forecast: {vol.champion}")
    top.set_ylabel("daily vol %")
    top.set_title(_title(vol), fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    for model, g in _curves(vol):
        bottom.plot(g["horizon"], g["qlike"], color=_color(model, vol.champion),
                    lw=3 if model == vol.champion else 1.2,
                    label=f"{model} [champion]" if model == vol.champion else model)
    bottom.set_yscale("log")
    bottom.set_xlabel("horizon (days after the cutoff)")
    bottom.set_ylabel("CV QLIKE")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return fig


def write_vol_html(vol: VolResult, path: Path, static_dir: Path) -> Path:
    return save_html(vol_plotly_figure(vol), path, static_dir, f"volatility-{vol.symbol}")


def write_vol_png(vol: VolResult, path: Path) -> Path:
    return save_png(vol_matplotlib_figure(vol), path)
