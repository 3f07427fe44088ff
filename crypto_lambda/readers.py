"""Readers that turn history files and REST payloads into the canonical kline schema.

Every reader returns a *reader frame*: ``symbol, open_time_ms, open, high, low, close, volume`` plus the
optional Binance columns, ``source`` and ``_raw`` (the original text of the row, kept for quarantine).
``schema.validate`` then types it and splits good rows from quarantined ones.

Formats: Binance dump files (data.binance.vision zip/csv, ms or µs open times, .CHECKSUM verified),
Kaggle/Bitstamp 1-minute CSV, freqtrade feather, Binance REST klines JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from crypto_lambda.schema import Validated, validate
from crypto_lambda.timeutil import normalize_epoch_to_ms

REST_FIELDS = (
    "open_time_ms", "open", "high", "low", "close", "volume", "close_time_ms", "quote_volume", "trades",
    "taker_buy_base", "taker_buy_quote", "ignore",
)


def frame_from_rest_rows(rows: Sequence[Sequence], symbol: str, source: str = "rest") -> pd.DataFrame:
    """Binance ``/api/v3/klines`` rows (12 fields, decimals as strings) -> reader frame.

    Unrecorded optional fields may be JSON null (the replay exchange serves null where a recording lacks
    them); they stay null rather than becoming a made-up zero.
    """
    if not rows:
        return pd.DataFrame(columns=["symbol", *REST_FIELDS, "source", "_raw"])
    frame = pd.DataFrame([list(r)[:12] + [None] * (12 - len(r)) for r in rows], columns=list(REST_FIELDS))
    frame["open_time_ms"] = pd.to_numeric(frame["open_time_ms"], errors="coerce").map(
        lambda v: normalize_epoch_to_ms(int(v)) if pd.notna(v) else v)
    frame["symbol"] = symbol
    frame["source"] = source
    frame["_raw"] = [str(list(r)) for r in rows]
    return frame


def load(path: Path | str, *, symbol: str | None = None) -> Validated:
    """Read any supported history file and validate it. Implemented per format below."""
    raise NotImplementedError  # filled in by the readers work (see module docstring)
