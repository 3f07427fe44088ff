"""Speed-layer pieces without Spark: trade synthesis, the WebSocket protocol, spill file, sink-log reader,
the daily-bar rule and the parse plan."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import aiohttp
import pandas as pd
import pytest

from replay_exchange.recording import Recording
from replay_exchange.server import ReplayKnobs, ReplayServer
from replay_exchange.streams import MinuteTable, StreamKnobs, configure_streams, minute_events, minute_trades
from streaming_service.spill import SpilledRecord, SpillFile

pytestmark = pytest.mark.timeout(120)


def test_synthesised_trades_reproduce_every_recorded_minute(recording: Recording) -> None:
    knobs = StreamKnobs(trades_per_minute=40)
    for symbol in recording.symbols:
        table = MinuteTable(recording, symbol, knobs)
        last_id = None
        for i in range(0, len(table.open_ms), 97):  # ~1350 minutes spread over the 90 days
            trades = minute_trades(table, i)
            times, ids, prices, lots = zip(*[(t, tid, p, q) for t, tid, p, q, _ in trades], strict=True)
            start = int(table.open_ms[i])
            assert prices[0] == table.cols["open"][i] and prices[-1] == table.cols["close"][i]
            assert max(prices) == table.cols["high"][i] and min(prices) == table.cols["low"][i]
            assert sum(lots) == round(table.cols["volume"][i] * 100_000_000)
            assert Decimal(repr(float(table.cols["volume"][i]))) == sum(Decimal(q) / 10**8 for q in lots)
            assert all(start <= t < start + 60_000 for t in times) and list(times) == sorted(times)
            assert list(ids) == list(range(ids[0], ids[0] + len(ids)))
            assert last_id is None or ids[0] > last_id
            last_id = ids[-1]
        assert minute_trades(table, 5) == minute_trades(table, 5)  # deterministic


def test_kline_events_follow_binance_shape(recording: Recording) -> None:
    knobs = StreamKnobs()
    table = MinuteTable(recording, "BTCUSDT", knobs)
    events = minute_events(table, 10, knobs)
    klines = [json.loads(text) for _, kind, text in events if kind == "kline_1m"]
    assert [k["k"]["x"] for k in klines] == [False] * (len(klines) - 1) + [True]
    final = klines[-1]["k"]
    assert set(final) >= {"t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q"}
    assert float(final["o"]) == table.cols["open"][10] and float(final["v"]) == table.cols["volume"][10]
    assert final["T"] == final["t"] + 59_999 and final["i"] == "1m"


async def _collect(url: str, seconds: float) -> tuple[list[dict], int]:
    out, pings = [], 0
    async with aiohttp.ClientSession() as session, session.ws_connect(url, autoping=False) as ws:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            try:
                msg = await ws.receive(timeout=max(0.05, end - loop.time()))
            except TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.TEXT:
                out.append(json.loads(msg.data))
            elif msg.type == aiohttp.WSMsgType.PING:
                pings += 1
                await ws.pong(msg.data)
            else:
                break
    return out, pings


def test_websocket_raw_and_combined_streams_with_pings(recording: Recording) -> None:
    start = recording.minute_span("ETHUSDT")[0] + 5 * 86_400_000
    knobs = ReplayKnobs()
    configure_streams(knobs, speed=600, start_ms=start, end_ms=start + 60 * 60_000, ping_interval_s=0.3)
    with ReplayServer(recording, knobs) as server:
        combined, pings = asyncio.run(_collect(
            f"{server.ws_url}/stream?streams=ethusdt@trade/btcusdt@kline_1m", 1.2))
        raw, _ = asyncio.run(_collect(f"{server.ws_url}/ws/ethusdt@trade", 0.5))
        bad = asyncio.run(_status(f"{server.url}/ws/ETHUSDT@trade"))
    assert pings >= 2
    assert {m["stream"] for m in combined} == {"ethusdt@trade", "btcusdt@kline_1m"}
    assert all(m["data"]["e"] == ("trade" if m["stream"].endswith("trade") else "kline") for m in combined)
    assert raw and all(m["e"] == "trade" and m["s"] == "ETHUSDT" for m in raw)
    assert bad == 400  # symbols must be lowercase, as on Binance


async def _status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


def test_spill_file_replays_in_order_and_skips_a_torn_line(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "spill")
    for i in range(5):
        spill.append(SpilledRecord("t", b"BTCUSDT", json.dumps({"i": i}).encode(), 1000 + i))
    segments = spill.seal()
    with open(segments[-1], "a", encoding="utf-8") as handle:
        handle.write('{"t": "t", "k": "BTC')  # a crash mid-write
    assert [json.loads(r.value)["i"] for r in SpillFile.read(segments[0])] == [0, 1, 2, 3, 4]
    reopened = SpillFile(tmp_path / "spill")
    assert reopened.pending == 6  # counts lines, the torn one included; replay skips it
    reopened.remove(segments[0], 6)
    assert reopened.pending == 0 and not reopened.segments()


def test_daily_bar_rule_matches_pandas_reference() -> None:
    from crypto_lambda.bars import bars_from_trades

    trades = pd.DataFrame({"symbol": ["X"] * 4, "trade_time_ms": [60_000, 60_000, 61_000, 119_999],
                           "trade_id": [2, 1, 3, 4], "price": [10.0, 9.0, 12.0, 11.0], "qty": [1.0] * 4})
    bar = bars_from_trades(pd.concat([trades, trades.iloc[[0]]])).iloc[0]  # a duplicate trade id is dropped
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades) == (9.0, 12.0, 9.0, 11.0, 4.0, 4)


def test_a_restarted_producer_marks_the_gap_since_its_predecessor_last_saw_each_symbol(tmp_path: Path) -> None:
    """A SIGKILLed producer's successor cannot know what it missed unless the predecessor said where it got to:
    the successor marks [saved, first new event] per symbol, and nothing when it resumes at or before it."""
    import json

    from streaming_service.continuity import LAST_SEEN_FILE
    from streaming_service.producer import ProducerConfig, StreamProducer

    spill = tmp_path / "spill"
    spill.mkdir()
    (spill / LAST_SEEN_FILE).write_text(json.dumps({"BTCUSDT": 1_000_000, "ETHUSDT": 5_000_000, "XRPUSDT": 1}))
    config = ProducerConfig(symbols=("BTCUSDT", "ETHUSDT"), bootstrap="127.0.0.1:1", ws_url="ws://127.0.0.1:1",
                            spill_dir=spill)
    producer = StreamProducer(config)

    def trade(symbol: str, event_ms: int, trade_id: int) -> str:
        return json.dumps({"stream": f"{symbol.lower()}@trade", "data": {
            "e": "trade", "E": event_ms, "s": symbol, "t": trade_id, "p": "1", "q": "1", "T": event_ms, "m": False}})

    producer.handle(trade("BTCUSDT", 1_090_000, 1), conn=0)  # 90 s after the predecessor's last event
    producer.handle(trade("ETHUSDT", 4_990_000, 1), conn=0)  # replayed from before it: no hole
    producer.handle(trade("BTCUSDT", 1_095_000, 2), conn=0)
    assert [(m["s"], m["from"], m["to"], m["reason"]) for m in producer.gap_markers] == [
        ("BTCUSDT", 1_000_000, 1_090_000, "restart")]
    fresh = StreamProducer(ProducerConfig(symbols=("BTCUSDT",), bootstrap="127.0.0.1:1", ws_url="ws://127.0.0.1:1",
                                          spill_dir=tmp_path / "first-start"))
    fresh.handle(trade("BTCUSDT", 1_090_000, 1), conn=0)
    assert fresh.gap_markers == []  # a first start has no predecessor: history is the batch layer's job
