"""Charts are valid HTML and PNG, and they contain the series they claim to show."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crypto_lambda.forecast.config import ForecastConfig
from crypto_lambda.forecast.pipeline import run_forecasts, sample_daily


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []
        self.closed: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.opened.append(tag)

    def handle_endtag(self, tag) -> None:
        self.closed.append(tag)


@pytest.fixture(scope="module")
def result():
    cfg = ForecastConfig(cv_days=180, grid=(), include_seeds=False)
    return run_forecasts({"ETHUSDT": sample_daily("ETHUSDT")}, cfg)["ETHUSDT"]


def test_plotly_figure_holds_history_forecast_band_and_every_candidate(result):
    from crypto_lambda.forecast.charts import plotly_figure

    fig = plotly_figure(result)
    traces = {t.name: t for t in fig.data}
    hist = traces["close (history)"]
    assert np.allclose(np.asarray(hist.y, dtype=float), result.history["y"].to_numpy())
    forecast = traces[f"forecast: {result.champion}"]
    assert np.allclose(np.asarray(forecast.y, dtype=float), result.forecast["yhat"].to_numpy())
    assert "80 % interval" in traces
    curves = {name for name in traces if name.startswith(("naive", "drift"))}
    assert curves == {"naive [champion]", "drift"} if result.champion == "naive" else len(curves) == 2
    per_h = result.per_horizon[result.per_horizon["model"] == "drift"].sort_values("horizon")
    assert np.allclose(np.asarray(traces["drift"].y, dtype=float), per_h["mape"].to_numpy())


def test_html_is_a_plotly_page_loading_the_shared_script(result, tmp_path: Path):
    from crypto_lambda.forecast.charts import write_html

    folder = tmp_path / "run" / "ETHUSDT"
    folder.mkdir(parents=True)
    path = write_html(result, folder / "chart.html", tmp_path / "_static")
    html = path.read_text()
    assert html.lstrip().lower().startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    tags = _Tags()
    tags.feed(html)
    assert tags.opened[:3] == ["html", "head", "meta"] and {"body", "div", "script"} <= set(tags.opened)
    assert all(tags.opened.count(t) == tags.closed.count(t) for t in ("html", "head", "body", "div", "script"))
    assert "Plotly.newPlot" in html and 'id="forecast-ETHUSDT"' in html
    for name in ("close (history)", f"forecast: {result.champion}", "80 % interval", "drift"):
        assert name in html
    src = re.search(r'<script[^>]+src="([^"]+plotly[^"]+\.js)"', html).group(1)
    script = (path.parent / src).resolve()
    assert script.exists() and script.stat().st_size > 1_000_000  # plotly.js itself, shared by every chart
    assert path.stat().st_size < 500_000  # ...so the chart does not embed it


def test_png_is_a_real_image_of_the_series(result, tmp_path: Path):
    from matplotlib.image import imread

    from crypto_lambda.forecast.charts import HISTORY_DAYS, matplotlib_figure, write_png

    path = write_png(result, tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.shape[0] >= 600 and pixels.shape[1] >= 1000 and pixels.std() > 0.05
    top, bottom = matplotlib_figure(result).axes[:2]
    history = top.get_lines()[0]
    start = result.history["ds"].max() - pd.Timedelta(days=HISTORY_DAYS)
    assert np.allclose(history.get_ydata(), result.history.loc[result.history["ds"] >= start, "y"].to_numpy())
    assert np.allclose(top.get_lines()[1].get_ydata(), result.forecast["yhat"].to_numpy())
    labels = [line.get_label() for line in bottom.get_lines()]
    assert "drift" in labels and any(label.endswith("[champion]") for label in labels)
