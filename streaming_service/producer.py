"""Binance WebSocket -> Kafka producer: one combined-stream connection for all configured symbols.

Each event's ``data`` is published unchanged (Binance field names, event time ``E``) to the topic of its
stream kind, key = symbol; the Kafka record timestamp is the receive time. Connection handling:
pings answered with the ping's payload; a connection silent for ``idle_timeout_s`` (Binance pings every
20 s) is treated as dead; reconnects back off exponentially with equal jitter; a connection is rotated
before Binance's 24-hour limit by opening the new one first and switching once it delivers (no gap).
Every unplanned disconnect yields one gap marker per symbol, published when that symbol's first event
arrives on the new connection: ``{"e":"gap","s","from","to"}`` with ``from`` = the last event time
before the drop and ``to`` = the first after, both exchange time, so the batch layer refills
``[from, to]`` from REST. Trades and kline updates already forwarded are never forwarded twice (trade
ids and kline event times only go up per symbol). A restarted process (after a crash, a SIGKILL or a stop)
publishes one gap marker per symbol from the last event time its predecessor saved (``last_seen.json`` beside
the spill, rewritten every second, so the marker may start up to a second early, never late) to its first new
event, so the minutes no process saw are refilled from REST; a first start publishes none (history before the
first connection is the batch layer's job).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from crypto_lambda.timeutil import now_ms
from streaming_service.continuity import LAST_SEEN_FILE, RotationBuffer, load_last_seen, save_last_seen
from streaming_service.publisher import Delivered, Publisher, PublisherConfig
from streaming_service.spill import SpillFile
from streaming_service.topics import Topics

log = logging.getLogger(__name__)
KINDS = ("trade", "kline_1m")


@dataclass
class ProducerConfig:
    symbols: tuple[str, ...]
    bootstrap: str
    ws_url: str
    spill_dir: Path
    topics: Topics = field(default_factory=Topics.with_prefix)
    kinds: tuple[str, ...] = KINDS
    partitions: int = 2
    create_topics: bool = True
    queue_size: int = 100_000
    max_connection_age_s: float = 23.5 * 3600
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    idle_timeout_s: float = 65.0
    stats_interval_s: float = 60.0

    def stream_url(self) -> str:
        names = "/".join(f"{s.lower()}@{k}" for s in self.symbols for k in self.kinds)
        return f"{self.ws_url.rstrip('/')}/stream?streams={names}"


@dataclass
class ProducerStats:
    received: int = 0
    forwarded: int = 0
    duplicates: int = 0
    reconnects: int = 0
    rotations: int = 0
    pings: int = 0
    gaps: int = 0
    last_event_ms: int = 0
    max_lag_ms: int = 0


class StreamProducer:
    """Run with ``await run()`` (stops when ``stop()`` is called) or :meth:`start_thread` for tests."""

    def __init__(self, config: ProducerConfig, on_delivered: Delivered | None = None) -> None:
        self.config = config
        self.stats = ProducerStats()
        self.spill = SpillFile(config.spill_dir)
        self.publisher = Publisher(PublisherConfig(
            bootstrap=config.bootstrap, topics=config.topics.all(), partitions=config.partitions,
            create_topics=config.create_topics, queue_size=config.queue_size), self.spill, on_delivered)
        self.last_seen: dict[str, int] = {}  # symbol -> last event time forwarded (exchange ms)
        self.last_seen_file = config.spill_dir / LAST_SEEN_FILE
        self.trade_hw: dict[str, int] = {}
        self.kline_hw: dict[str, tuple[int, int, bool]] = {}
        self.pending_gap: dict[str, tuple[int, str]] = {
            symbol: (ms, "restart") for symbol, ms in load_last_seen(self.last_seen_file).items()
            if symbol in config.symbols}
        self.gap_markers: list[dict] = []
        self._active = 0
        self._active_event_ms = 0  # newest exchange event time the active connection delivered (any stream)
        self._buffers: dict[int, RotationBuffer] = {}  # connection being rotated in -> what it sent so far
        self._first_data: dict[int, asyncio.Event] = {}
        self._opened: dict[int, float] = {}
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- event handling -----------------------------------------------------------------------------------

    def handle(self, text: str, conn: int) -> None:
        if conn != self._active:
            self._buffers.setdefault(conn, RotationBuffer()).add(text)
            event = self._first_data.get(conn)
            if event is not None:
                event.set()
            return
        self.stats.received += 1
        try:
            message = json.loads(text)
        except ValueError:
            log.warning("unparseable websocket message dropped: %.200s", text)
            return
        data = message.get("data") if isinstance(message, dict) else None
        if not isinstance(data, dict):
            if isinstance(message, dict) and message.get("e") == "serverShutdown":
                log.warning("exchange announced serverShutdown; the reconnect will follow")
            return
        kind = "trade" if data.get("e") == "trade" else "kline_1m" if data.get("e") == "kline" else None
        symbol = data.get("s")
        if kind is None or not isinstance(symbol, str):
            return
        event_ms = int(data.get("E") or 0)
        self._active_event_ms = max(self._active_event_ms, event_ms)
        if not self._fresh(kind, symbol, data, event_ms):
            self.stats.duplicates += 1
            return
        if symbol in self.pending_gap:
            self._publish_gap(symbol, event_ms, data)
        self.last_seen[symbol] = max(event_ms, self.last_seen.get(symbol, 0))
        received = now_ms()
        self.stats.last_event_ms = event_ms
        self.stats.max_lag_ms = max(self.stats.max_lag_ms, received - event_ms)
        self.publisher.submit(self.config.topics.for_kind(kind), symbol.encode(),
                              json.dumps(data, separators=(",", ":")).encode(), received)
        self.stats.forwarded += 1

    def _fresh(self, kind: str, symbol: str, data: dict, event_ms: int) -> bool:
        if kind == "trade":
            trade_id = int(data.get("t", -1))
            if trade_id <= self.trade_hw.get(symbol, -1):
                return False
            self.trade_hw[symbol] = trade_id
            return True
        k = data.get("k") or {}
        mark = (int(k.get("t", 0)), event_ms, bool(k.get("x")))
        if symbol in self.kline_hw and mark <= self.kline_hw[symbol]:
            return False
        self.kline_hw[symbol] = mark
        return True

    def _publish_gap(self, symbol: str, to_ms: int, data: dict) -> None:
        from_ms, reason = self.pending_gap.pop(symbol)
        if to_ms <= from_ms:  # a restart that resumes at or before where the last process stopped: no hole
            return
        marker = {"e": "gap", "E": now_ms(), "s": symbol, "from": from_ms, "to": to_ms, "reason": reason}
        self.gap_markers.append(marker)
        self.stats.gaps += 1
        log.warning("gap marker %s: %d..%d (%.1fs of exchange time, %s)", symbol, from_ms, to_ms,
                    (to_ms - from_ms) / 1000, reason)
        self.publisher.submit(self.config.topics.gaps, symbol.encode(),
                              json.dumps(marker, separators=(",", ":")).encode(), now_ms())

    def _disconnected(self, reason: str) -> None:
        """Remember, per symbol, where the stream broke; the marker goes out with the next event."""
        fallback = min(self.last_seen.values()) if self.last_seen else None
        for symbol in self.config.symbols:
            start = self.last_seen.get(symbol, fallback)
            if start is not None and symbol not in self.pending_gap:
                self.pending_gap[symbol] = (start, reason)

    # -- connections ------------------------------------------------------------------------------------

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, conn: int) -> str:
        """Read until the connection ends; returns why."""
        while True:
            try:
                msg = await ws.receive(timeout=self.config.idle_timeout_s)
            except TimeoutError:
                return f"silent for {self.config.idle_timeout_s:.0f}s"
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.handle(msg.data, conn)
            elif msg.type == aiohttp.WSMsgType.PING:
                self.stats.pings += 1
                await ws.pong(msg.data)
            elif msg.type == aiohttp.WSMsgType.PONG:
                continue
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return f"closed by the server ({ws.close_code})"
            elif msg.type == aiohttp.WSMsgType.ERROR:
                return f"error: {ws.exception()}"

    async def _connect(self, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        return await session.ws_connect(self.config.stream_url(), autoping=False, heartbeat=None,
                                        max_msg_size=4 << 20)

    async def _supervise(self, session: aiohttp.ClientSession) -> None:
        attempt, conn_id = 0, 0
        assert self._stop is not None
        while not self._stop.is_set():
            conn_id += 1
            try:
                ws = await self._connect(session)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                attempt += 1
                await self._backoff(attempt, f"connect failed: {exc}")
                continue
            self._active = conn_id
            log.info("connected to %s (connection %d)", self.config.ws_url, conn_id)
            reader = asyncio.create_task(self._read(ws, conn_id))
            while True:
                stopper = asyncio.create_task(self._stop.wait())
                done, _ = await asyncio.wait({reader, stopper}, timeout=self._age_left(conn_id),
                                             return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if reader in done:
                    reason = reader.result()
                    break
                if self._stop.is_set():
                    reader.cancel()
                    await ws.close()
                    return
                rotated = await self._rotate(session, ws, reader, conn_id + 1)  # age limit reached
                if rotated is not None:
                    conn_id, ws, reader = rotated
            if self.stats.received:
                attempt = 0
            await ws.close()
            if self._stop.is_set():
                return
            self.stats.reconnects += 1
            self._disconnected(reason)
            attempt += 1
            await self._backoff(attempt, reason)

    def _age_left(self, conn_id: int) -> float:
        started = self._opened.setdefault(conn_id, time.monotonic())
        return max(0.0, started + self.config.max_connection_age_s - time.monotonic())

    async def _rotate(self, session: aiohttp.ClientSession, old: aiohttp.ClientWebSocketResponse,
                      old_reader: asyncio.Task, new_id: int):
        """Open the replacement first; switch when it delivers, so the handover loses nothing."""
        try:
            new = await self._connect(session)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("rotation: new connection failed (%s); retrying in 60 s", exc)
            self._opened[self._active] = time.monotonic() - self.config.max_connection_age_s + 60
            return None
        first = self._first_data[new_id] = asyncio.Event()
        self._opened[new_id] = time.monotonic()
        new_reader = asyncio.create_task(self._read(new, new_id))
        assert self._stop is not None
        waiters = {asyncio.create_task(first.wait()), asyncio.create_task(self._stop.wait())}
        done, pending = await asyncio.wait(waiters, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if not done:
            log.warning("rotation: the new connection delivered nothing in 30 s; switching anyway")
        # The old connection may still hold events from before the new one's first: keep it active until it
        # has delivered them (trade dedup would otherwise drop them as older than the new stream's ids).
        deadline = time.monotonic() + 5.0
        while not self._old_caught_up(new_id) and time.monotonic() < deadline and not old_reader.done():
            await asyncio.sleep(0.01)
        self._active = new_id  # from here on the new connection's events go straight through ...
        for text in self._buffers.pop(new_id, RotationBuffer()).texts:  # ... after its buffer (no await between)
            self.handle(text, new_id)
        self._first_data.pop(new_id, None)
        old_reader.cancel()
        await old.close()
        self.stats.rotations += 1
        log.info("rotated the websocket connection (now %d)", new_id)
        return new_id, new, new_reader

    def _old_caught_up(self, new_id: int) -> bool:
        """True when the active (old) connection has delivered everything from before the new one's first
        event: it has sent an event at least as new (an exchange sends each connection its events in time
        order), and for every symbol the new connection has trades for, it has forwarded the trade just before
        the new one's first (Binance trade ids are consecutive per symbol). The time rule covers the symbols
        the new connection has no trade for yet: a kline update as its first event let the old connection be
        closed with trades of the other symbol still in flight (lost, about 1 run in 10)."""
        new = self._buffers.get(new_id)
        if new is None or new.first_ms is None or self._active_event_ms < new.first_ms:
            return False
        return all(self.trade_hw.get(sym, -1) >= first_id - 1 for sym, first_id in new.first_trade.items())

    async def _backoff(self, attempt: int, reason: str) -> None:
        delay = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** (attempt - 1))
        delay = random.uniform(delay / 2, delay)
        log.warning("websocket down (%s); reconnecting in %.2fs (attempt %d)", reason, delay, attempt)
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        except TimeoutError:
            pass

    async def _report(self) -> None:
        assert self._stop is not None
        last, last_at = 0, time.monotonic()
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.config.stats_interval_s)
            except TimeoutError:
                pass
            now = time.monotonic()
            s, p = self.stats, self.publisher.stats
            rate = (s.forwarded - last) / max(now - last_at, 1e-9)
            log.info("producer: %.0f events/s, max lag %d ms, reconnects %d, rotations %d, buffered %d, "
                     "acked %d, spilled %d (pending %d), gaps %d, duplicates dropped %d", rate, s.max_lag_ms,
                     s.reconnects, s.rotations, self.publisher.buffered(), p.acked, self.spill.appended,
                     self.spill.pending, s.gaps, s.duplicates)
            last, last_at, s.max_lag_ms = s.forwarded, now, 0

    async def _save_last_seen(self) -> None:
        """Every second: where each symbol's stream got to, for the next process's restart gap marker."""
        assert self._stop is not None
        saved: dict[str, int] = {}
        while True:
            if self.last_seen != saved:
                saved = dict(self.last_seen)
                save_last_seen(self.last_seen_file, saved)
            if self._stop.is_set():
                return
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)
            except TimeoutError:
                pass

    async def run(self) -> None:
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if not self.publisher.is_alive():
            self.publisher.start()
        tasks = [asyncio.create_task(self._report()), asyncio.create_task(self._save_last_seen())]
        try:
            async with aiohttp.ClientSession() as session:
                await self._supervise(session)
        finally:
            self._stop.set()  # the saver writes its last state and ends
            tasks[0].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self.publisher.close)

    def stop(self) -> None:
        """Thread-safe: ask ``run()`` to finish (the queue is drained to Kafka or the spill first)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    # -- for tests and embedding --------------------------------------------------------------------------

    def start_thread(self) -> StreamProducer:
        started = threading.Event()

        def main() -> None:
            async def body() -> None:
                task = asyncio.create_task(self.run())
                await asyncio.sleep(0)
                started.set()
                await task

            asyncio.run(body())

        self._thread = threading.Thread(target=main, name="stream-producer", daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def join(self, timeout: float = 60.0) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)
