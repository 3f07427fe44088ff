"""Charts a person looks at: the price with the champion's forecast and 80 % band, and every candidate's CV
error by horizon, as an interactive Plotly HTML and a static PNG (matplotlib; no browser needed).

The HTML loads plotly.js from one shared, versioned file (``<forecasts>/_static/plotly-<version>.min.js``,
written once) instead of embedding 4.8 MB in every chart of every run; charts still open offline.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import plotly
import plotly.graph_objects as go
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from crypto_lambda.forecast.config import NAIVE, SEEDS
from crypto_lambda.forecast.pipeline import ForecastResult

HISTORY_DAYS = 365  # shown around the forecast (the HTML has all history one zoom away)
CHAMPION_COLOR = "#d62728"
COLORS = {NAIVE: "#1f77b4", "drift": "#2ca02c", SEEDS: "#7f7f7f"}
PALETTE = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e", "#aec7e8", "#98df8a", "#c5b0d5"]


def _color(model: str, champion: str, order: list[str]) -> str:
    if model == champion:
        return CHAMPION_COLOR
    return COLORS.get(model) or PALETTE[order.index(model) % len(PALETTE)]


def _curves(result: ForecastResult) -> list[tuple[str, pd.DataFrame, bool]]:
    """(model, per-horizon rows, screened?) per model: screened first, champion last (drawn on top)."""
    full = len(result.cutoffs)
    out = [(str(model), g.sort_values("horizon"), int(g["cutoffs"].max()) < full)
           for model, g in result.per_horizon.groupby("model", sort=True)]
    out.sort(key=lambda c: (c[0] == result.champion, not c[2]))
    return out


def _label(result: ForecastResult, model: str, screened: bool) -> str:
    n = int(result.per_horizon.loc[result.per_horizon["model"] == model, "cutoffs"].max())
    suffix = " [champion]" if model == result.champion else ""
    return f"{model} (screened on {n} cutoffs)" if screened else f"{model}{suffix}"


def _title(result: ForecastResult) -> str:
    mean = result.metrics[result.metrics["horizon"] == result.config.mean_label].set_index("model")
    champ = mean.loc[result.champion]
    return (f"{result.symbol}: champion {result.champion} — CV mean MAPE {champ['mape']:.2f} %, "
            f"80 % interval coverage {champ['coverage80']:.0f} % ({len(result.cutoffs)} cutoffs, "
            f"{result.config.horizon}-day horizon)")


def plotly_figure(result: ForecastResult) -> go.Figure:
    hist, fc = result.history, result.forecast
    fig = make_subplots(rows=2, cols=1, row_heights=[0.62, 0.38], vertical_spacing=0.1,
                        subplot_titles=("Close (USDT) and the champion's forecast with its 80 % interval",
                                        "Cross-validated MAPE (%) by horizon, every candidate"))
    fig.add_trace(go.Scatter(x=hist["ds"], y=hist["y"], name="close (history)", line={"color": "black"}),
                  row=1, col=1)
    dates = pd.to_datetime(fc["date"])
    fig.add_trace(go.Scatter(x=dates, y=fc["upper"], name="80 % upper", line={"width": 0}, showlegend=False),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=dates, y=fc["lower"], name="80 % interval", fill="tonexty", line={"width": 0},
                             fillcolor="rgba(214,39,40,0.2)"), row=1, col=1)
    fig.add_trace(go.Scatter(x=dates, y=fc["yhat"], name=f"forecast: {result.champion}",
                             line={"color": CHAMPION_COLOR, "dash": "dash"}), row=1, col=1)
    order = sorted(result.per_horizon["model"].unique())
    for model, g, screened in _curves(result):
        width = 3.5 if model == result.champion else 1.5
        fig.add_trace(go.Scatter(
            x=g["horizon"], y=g["mape"], name=_label(result, model, screened), mode="lines",
            line={"color": _color(model, result.champion, order), "width": width,
                  "dash": "dot" if screened else "solid"},
            customdata=np.stack([g["coverage80"], g["mase"], g["n"]], axis=-1),
            hovertemplate="h=%{x}d MAPE %{y:.2f} %<br>coverage80 %{customdata[0]:.0f} %"
                          "<br>MASE %{customdata[1]:.2f}<br>n=%{customdata[2]}"), row=2, col=1)
    start = hist["ds"].max() - pd.Timedelta(days=HISTORY_DAYS)
    fig.update_xaxes(range=[start, dates.max()], row=1, col=1)
    fig.update_xaxes(title_text="horizon (days after the cutoff)", row=2, col=1)
    fig.update_yaxes(title_text="USDT", row=1, col=1)
    fig.update_yaxes(title_text="MAPE %", row=2, col=1)
    fig.update_layout(title=_title(result), height=900, template="plotly_white", hovermode="x unified")
    return fig


def plotly_js(static_dir: Path) -> Path:
    """The shared plotly.js for this plotly version, written once (atomically)."""
    path = static_dir / f"plotly-{plotly.__version__}.min.js"
    if not path.exists():
        static_dir.mkdir(parents=True, exist_ok=True)
        tmp = static_dir / f".{path.name}.tmp-{uuid.uuid4().hex}"
        tmp.write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
        os.replace(tmp, path)
    return path


def save_html(fig: go.Figure, path: Path, static_dir: Path, div_id: str) -> Path:
    """Write a figure as a page that loads the shared plotly.js, atomically."""
    src = os.path.relpath(plotly_js(static_dir), path.parent)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    fig.write_html(tmp, include_plotlyjs=src, full_html=True, div_id=div_id)
    os.replace(tmp, path)
    return path


def save_png(fig: Figure, path: Path) -> Path:
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}.png"
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def write_html(result: ForecastResult, path: Path, static_dir: Path) -> Path:
    return save_html(plotly_figure(result), path, static_dir, f"forecast-{result.symbol}")


def matplotlib_figure(result: ForecastResult) -> Figure:
    """Same content as the HTML; the object-oriented API (no pyplot state), so it is safe off the main thread."""
    hist, fc = result.history, result.forecast
    start = hist["ds"].max() - pd.Timedelta(days=HISTORY_DAYS)
    recent = hist[hist["ds"] >= start]
    dates = pd.to_datetime(fc["date"])
    fig = Figure(figsize=(12, 8.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, height_ratios=[1.6, 1])
    top.plot(recent["ds"], recent["y"], color="black", lw=1.2, label="close (history)")
    top.fill_between(dates, fc["lower"], fc["upper"], color=CHAMPION_COLOR, alpha=0.2, label="80 % interval")
    top.plot(dates, fc["yhat"], color=CHAMPION_COLOR, ls="--", lw=1.8, label=f"forecast: {result.champion}")
    top.set_ylabel("USDT")
    top.set_title(_title(result), fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    order = sorted(result.per_horizon["model"].unique())
    for model, g, screened in _curves(result):
        bottom.plot(g["horizon"], g["mape"], color=_color(model, result.champion, order),
                    lw=3 if model == result.champion else 1.2, ls=":" if screened else "-",
                    label=_label(result, model, screened))
    bottom.set_xlabel("horizon (days after the cutoff)")
    bottom.set_ylabel("CV MAPE %")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    return fig


def write_png(result: ForecastResult, path: Path) -> Path:
    return save_png(matplotlib_figure(result), path)
