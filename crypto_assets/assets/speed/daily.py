"""``speed_daily``: one bar per (day, symbol) from the streaming service's committed minute bars plus the
in-progress (provisional) minutes, so today's bar exists seconds after a tick. Pandas, not Spark: a day is
at most 1,440 rows, and these runs happen every minute while the stream is live."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from crypto_lambda import lake as lk
from crypto_lambda.config import Settings
from crypto_lambda.schema import SPEED_DAILY_SCHEMA
from crypto_lambda.timeutil import MINUTES_PER_DAY, today_utc
from streaming_service.speed_lake import provisional_daily_bar


def speed_bar(settings: Settings, symbol: str, day: dt.date) -> dict | None:
    bar = provisional_daily_bar(settings, symbol, day)
    if bar is None:
        return None
    covered = int(bar["minutes"])
    return {"symbol": symbol, "date": day, "open": bar["open"], "high": bar["high"], "low": bar["low"],
            "close": bar["close"], "volume": bar["volume"], "trades": bar["trades"], "minutes_covered": covered,
            "is_provisional": day >= today_utc() or covered < MINUTES_PER_DAY, "source": "speed"}


def build_speed_daily(settings: Settings, days_by_symbol: dict[str, list[dt.date]]) -> dict:
    written = provisional = removed = 0
    for symbol, days in days_by_symbol.items():
        for day in days:
            path = lk.partition_path(settings.lake, lk.SPEED_DAILY, symbol, day)
            bar = speed_bar(settings, symbol, day)
            if bar is None:
                if path.exists():
                    path.unlink()
                    removed += 1
                continue
            lk.write_frame(pd.DataFrame([bar]), path, SPEED_DAILY_SCHEMA)
            written += 1
            provisional += bar["is_provisional"]
    return {"bars_written": written, "provisional_bars": provisional, "stale_bars_removed": removed}
