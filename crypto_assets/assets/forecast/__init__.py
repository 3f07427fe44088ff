"""Forecasts: every candidate cross-validated on the daily series, the champion's next 30 days, charts."""
