"""A run's partitions -> the rectangles its replaceWhere commits cover: exactly the run's (symbol, day) keys,
one rectangle for every range run, and never a day the run does not own (a replace clears what it covers)."""

from __future__ import annotations

import datetime as dt

from crypto_assets.lib.partitions import from_tags, range_tags
from crypto_lambda.batch.rect import Rect, rectangles
from crypto_lambda.timeutil import day_range

D = [dt.date(2025, 6, 1) + dt.timedelta(days=i) for i in range(6)]


def covered(rects: list[Rect]) -> set[tuple[str, dt.date]]:
    return {(s, d) for r in rects for s in r.symbols for d in day_range(r.start, r.end)}


def test_a_range_run_is_one_rectangle():
    rects = rectangles({"ETHUSDT": D, "BTCUSDT": list(reversed(D))})
    assert rects == [Rect(("BTCUSDT", "ETHUSDT"), D[0], D[-1])] and rects[0].partitions == 12
    assert rects[0].predicate == ("symbol IN ('BTCUSDT', 'ETHUSDT') AND date >= DATE'2025-06-01' "
                                  "AND date <= DATE'2025-06-06'")


def test_an_odd_selection_is_covered_exactly():
    wanted = {"BTCUSDT": [D[0], D[1], D[4]], "ETHUSDT": [D[2]]}
    rects = rectangles(wanted)
    assert covered(rects) == {(s, d) for s, days in wanted.items() for d in days}
    assert len(rects) == 3 and rectangles({}) == []


def test_run_tags_name_the_rectangle():
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert from_tags(range_tags(D[0], D[3], ["BTCUSDT", "ETHUSDT"]), symbols) == Rect(("BTCUSDT", "ETHUSDT"),
                                                                                   D[0], D[3])
    assert from_tags({"dagster/partition": f"{D[2]}|SOLUSDT"}, symbols) == Rect(("SOLUSDT",), D[2], D[2])
    assert from_tags({"dagster/asset_partition_range_start": "BTCUSDT",
                      "dagster/asset_partition_range_end": "ETHUSDT"}, symbols) is None  # a per-symbol job
    assert from_tags({}, symbols) is None
