"""Forecasts that tell the truth (issue #5): pure forecasting code, no Dagster.

- ``config``: candidates and knobs (horizon, CV, grid, thresholds) as one frozen value.
- ``models``: naive, drift (log random walk with drift), Prophet (the seeds' default on close; log-price grid).
- ``cv``: rolling-origin cross-validation that hands every model only the data up to its cutoff.
- ``metrics``: MAPE, MAE, RMSE, MASE (vs naive at the same horizon), 80 % coverage; the champion.
- ``pipeline``: series -> CV of every candidate on every symbol in one thread pool -> champion forecast.
- ``charts`` / ``outputs``: Plotly HTML, matplotlib PNG, run-stamped files, ``latest`` pointers, lake copies.
"""
