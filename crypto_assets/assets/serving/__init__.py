"""Serving layer: the merged batch + speed daily series that users (and forecasts) read."""
