"""Rolling-origin cross-validation: for each cutoff, every model sees the series up to that day only and
forecasts the next H days; the errors against what then happened are the evidence for the champion.

Why our own loop rather than ``prophet.diagnostics.cross_validation``: the baselines must go through exactly
the same cutoffs and points, and the leakage guard (training data strictly <= cutoff, forecasts strictly
after it) is enforced here for every model, not trusted to each one. Fits run in a thread pool: Prophet's
optimizer is a cmdstan subprocess, so threads keep both cores busy without pickling anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

import pandas as pd

from crypto_lambda.forecast.config import ForecastConfig
from crypto_lambda.forecast.models import DAY, Forecaster, future_days

POINT_COLUMNS = ["model", "cutoff", "ds", "horizon", "actual", "yhat", "lower", "upper"]


class LeakageError(AssertionError):
    """A forecaster was given, or returned, data on the wrong side of its cutoff."""


def make_cutoffs(series: pd.DataFrame, config: ForecastConfig) -> list[pd.Timestamp]:
    """Cutoffs every ``period`` days back from ``last - horizon`` while within ``cv_days`` of the last day and
    leaving at least ``min_train_days`` of history; ascending. Defaults give 36 cutoffs over 3 years."""
    first, last = series["ds"].min(), series["ds"].max()
    out = []
    cutoff = last - config.horizon * DAY
    while cutoff >= last - config.cv_days * DAY and cutoff - first >= config.min_train_days * DAY:
        out.append(cutoff)
        cutoff -= config.period * DAY
    return sorted(out)


def training_slice(series: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """The only data a model may see for this cutoff (a copy, so no model can touch the caller's frame)."""
    train = series[series["ds"] <= cutoff].copy()
    if len(train) and train["ds"].max() > cutoff:
        raise LeakageError(f"training data after cutoff {cutoff.date()}")
    return train


def forecast_at(forecaster: Forecaster, series: pd.DataFrame, cutoff: pd.Timestamp, horizon: int) -> pd.DataFrame:
    """One model, one cutoff; checks that the answer covers exactly cutoff+1 .. cutoff+horizon."""
    fc = forecaster(training_slice(series, cutoff), cutoff, horizon)
    expected = future_days(cutoff, horizon)
    if len(fc) != horizon or not (pd.DatetimeIndex(fc["ds"]) == expected).all():
        raise LeakageError(f"forecast for cutoff {cutoff.date()} does not cover exactly the {horizon} days after it")
    return fc


@dataclass
class CVRun:
    """Submitted CV tasks of one series; ``collect`` waits and scores them against the actuals."""

    series: pd.DataFrame
    horizon: int
    tasks: list[tuple[str, pd.Timestamp, Future]] = field(default_factory=list)

    def collect(self) -> tuple[pd.DataFrame, dict[str, str]]:
        """(points, failures): one row per model x cutoff x day with an actual; failures by model name."""
        actual = self.series.set_index("ds")["y"]
        frames, failures = [], {}
        for name, cutoff, future in self.tasks:
            try:
                fc = future.result()
            except LeakageError:
                raise
            except Exception as exc:  # a model that fails a fold is reported and excluded, never half-scored
                failures.setdefault(name, f"cutoff {cutoff.date()}: {type(exc).__name__}: {exc}")
                continue
            fc = fc.assign(model=name, cutoff=cutoff, horizon=range(1, self.horizon + 1))
            fc["actual"] = actual.reindex(fc["ds"]).to_numpy()
            frames.append(fc[POINT_COLUMNS])
        points = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=POINT_COLUMNS)
        points = points[points["actual"].notna()]  # days without a real bar (forward-filled) are not scored
        points = points[~points["model"].isin(failures)].reset_index(drop=True)
        return points, failures


def submit_cv(series: pd.DataFrame, forecasters: Mapping[str, Forecaster], cutoffs: Sequence[pd.Timestamp],
              horizon: int, executor: Executor) -> CVRun:
    """Queue every (model, cutoff) fit on the executor in the mapping's order (callers put the slowest models
    first, so the run does not end on one long fit)."""
    run = CVRun(series=series, horizon=horizon)
    for name, forecaster in forecasters.items():
        for cutoff in cutoffs:
            run.tasks.append((name, cutoff, executor.submit(forecast_at, forecaster, series, cutoff, horizon)))
    return run
