"""Batch layer: 1-minute history -> daily OHLCV -> complete, forward-filled daily series with MA7/MA30."""
