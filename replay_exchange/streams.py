"""Binance market streams on the replay exchange: ``/ws/<stream>`` and ``/stream?streams=a/b``.

Streams are ``<symbol>@trade`` and ``<symbol>@kline_1m`` (lowercase symbol), with Binance's field names;
combined streams wrap each event as ``{"stream", "data"}``. The server pings every ``ping_interval_s``
and drops a connection that has not ponged for ``pong_timeout_s`` (Binance: 20 s / 60 s).

Trades are synthesised per RECORDED minute, deterministically (seeded by symbol and minute), so bars
aggregated from the stream reproduce the recorded kline exactly: the first trade is at the open, the last at
the close, the high and low are touched, and quantities are whole 1e-8 lots summing exactly (in decimal) to
the volume. Trade ids are consecutive per symbol across the whole recording (as on Binance), so a missed
trade is visible as a hole. A ``kline_1m`` update (``x=false``) follows the first trade of every 2 s of
recorded time and a final ``x=true`` kline carrying the recorded values closes each minute.

Replay clock: recorded time ``start_ms + (wall - anchor) * speed``, anchored at the first WebSocket
connection (so test setup does not eat the replay); ``start_ms=None`` means the recording's own clock, i.e.
live. Every connection streams from the clock's current instant, so events sent while a client was
disconnected are missed, as on the real exchange. Knobs: ``configure_streams(app_or_knobs, ...)`` before
the server starts (a ``ReplayKnobs`` carries them in its ``stream`` field), or ``REPLAY_WS_SPEED``,
``REPLAY_WS_START_MS`` and ``REPLAY_WS_TRADES_PER_MINUTE`` in the environment; the :class:`StreamKnobs`
object stays live, so tests may change e.g. ``disconnect_after_s`` on a running server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import WSMsgType, web

from crypto_lambda.timeutil import MINUTE_MS
from replay_exchange.recording import Recording, decimal_str

if TYPE_CHECKING:
    from replay_exchange.server import ReplayKnobs

log = logging.getLogger(__name__)

KINDS = ("trade", "kline_1m")
LOT = 100_000_000  # quantities are whole 1e-8 lots
MAX_TRADES_PER_MINUTE = 9_999


@dataclass
class StreamKnobs:
    """Replay clock, synthesis and fault knobs of the WebSocket streams."""

    speed: float = 1.0
    start_ms: int | None = None
    end_ms: int | None = None  # stop sending (connection stays open) at this recorded instant
    trades_per_minute: int = 40
    kline_update_ms: int = 2_000
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    disconnect_after_s: float | None = None  # server closes a connection this long after it opened ...
    max_disconnects: int = 1  # ... for this many connections
    disconnect_mode: str = "close"  # "close" (close frame) or "drop" (TCP abort, no close frame)
    seed: int = 0


@dataclass
class ReplayClock:
    """Maps wall time to recorded time; anchored lazily so the replay starts when a client connects."""

    speed: float
    start_ms: int | None
    live: Any  # the recording's clock, used when start_ms is None
    anchor: float | None = None
    base_ms: int = 0
    paused_at: int | None = None

    def now(self) -> int:
        if self.paused_at is not None:
            return self.paused_at
        if self.anchor is None:
            self.anchor = time.monotonic()
            self.base_ms = int(self.start_ms if self.start_ms is not None else self.live())
        return self.base_ms + int((time.monotonic() - self.anchor) * 1000 * self.speed)

    def pause(self) -> None:
        self.paused_at = self.now()

    def resume(self) -> None:
        if self.paused_at is not None:
            self.base_ms, self.anchor, self.paused_at = self.paused_at, time.monotonic(), None


@dataclass
class StreamState:
    knobs: StreamKnobs
    clock: ReplayClock
    connections: int = 0
    open_connections: int = 0
    disconnects: int = 0
    sent: int = 0
    tables: dict[str, MinuteTable] = field(default_factory=dict)


def configure_streams(target: ReplayKnobs | web.Application, **values: Any) -> StreamKnobs:
    """Set stream knobs on a ``ReplayKnobs`` (before ``ReplayServer`` starts) or on a built app."""
    knobs = StreamKnobs(**values)
    if isinstance(target, web.Application):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target["ws_knobs"] = knobs
        if "ws_state" in target:
            target["ws_state"].knobs = knobs
            target["ws_state"].clock = ReplayClock(knobs.speed, knobs.start_ms, target["recording"].clock)
    else:
        target.stream = knobs
    return knobs


def env_knobs(speed: float | None = None, start_ms: int | None = None,
              trades_per_minute: int | None = None) -> StreamKnobs:
    """Knobs from ``REPLAY_WS_SPEED``/``REPLAY_WS_START_MS``/``REPLAY_WS_TRADES_PER_MINUTE`` (unset = default),
    so compose and scripts can configure a server they do not construct; arguments (the CLI's options) win.
    Validated here, so the environment path gets the same errors as the options."""
    env = os.environ
    speed = speed if speed is not None else float(env["REPLAY_WS_SPEED"]) if env.get("REPLAY_WS_SPEED") else None
    start_ms = start_ms if start_ms is not None else \
        int(env["REPLAY_WS_START_MS"]) if env.get("REPLAY_WS_START_MS") else None
    tpm = trades_per_minute if trades_per_minute is not None else \
        int(env["REPLAY_WS_TRADES_PER_MINUTE"]) if env.get("REPLAY_WS_TRADES_PER_MINUTE") else None
    knobs = StreamKnobs()
    if speed is not None:
        if not speed > 0:
            raise ValueError(f"--ws-speed / REPLAY_WS_SPEED {speed} must be positive")
        knobs.speed = speed
    if start_ms is not None:
        knobs.start_ms = start_ms
    if tpm is not None:
        if tpm < 1:
            raise ValueError(f"--ws-trades-per-minute / REPLAY_WS_TRADES_PER_MINUTE {tpm} must be positive")
        knobs.trades_per_minute = tpm
    return knobs


class MinuteTable:
    """One symbol's recorded minutes with the trade count and first trade id of each (ids consecutive)."""

    def __init__(self, recording: Recording, symbol: str, knobs: StreamKnobs) -> None:
        bars = recording.recorded_minutes(symbol)  # not clipped at the REST clock
        self.symbol = symbol
        self.open_ms = bars.open_ms
        self.cols = {k: bars.cols[k] for k in ("open", "high", "low", "close", "volume")}
        self.salt = zlib.crc32(symbol.encode()) ^ (knobs.seed & 0xFFFFFFFF)
        minute = (self.open_ms // MINUTE_MS).astype(np.uint64)
        hashed = ((minute * np.uint64(2654435761)) ^ np.uint64(self.salt)) & np.uint64(0xFFFFFFFF)
        frac = hashed.astype(np.float64) / 2**32
        lots = np.round(self.cols["volume"] * LOT).astype(np.int64)
        count = np.clip(np.round(knobs.trades_per_minute * (0.5 + frac)), 4, MAX_TRADES_PER_MINUTE)
        self.count = np.maximum(1, np.minimum(count.astype(np.int64), lots))
        self.first_id = 1 + np.concatenate([[0], np.cumsum(self.count)[:-1]])
        self.lots = lots

    def index_at(self, ms: int) -> int:
        """Index of the first recorded minute that has not ended before ``ms``."""
        return int(np.searchsorted(self.open_ms, ms - MINUTE_MS, "right"))


def minute_trades(table: MinuteTable, i: int, seed: int = 0) -> list[tuple[int, int, float, int, bool]]:
    """Trades of recorded minute ``i``: (trade_time_ms, trade_id, price, lots, buyer_is_maker)."""
    o, h, lo, c = (float(table.cols[k][i]) for k in ("open", "high", "low", "close"))
    start, n, lots, first = int(table.open_ms[i]), int(table.count[i]), int(table.lots[i]), int(table.first_id[i])
    rng = random.Random((table.salt << 40) ^ (start // MINUTE_MS) ^ (seed << 20))
    decimals = max(len(decimal_str(x).partition(".")[2]) for x in (o, h, lo, c))
    inner = [min(h, max(lo, round(lo + rng.random() * (h - lo), decimals))) for _ in range(n - 2)]
    prices = [o, *inner, c] if n > 1 else [c]
    if n >= 4:
        hi_at, lo_at = rng.sample(range(1, n - 1), 2)
        prices[hi_at], prices[lo_at] = h, lo
    cuts = sorted(rng.sample(range(1, lots), n - 1)) if n > 1 else []
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, lots], strict=True)]
    times = sorted(start + rng.randrange(MINUTE_MS) for _ in range(n))
    return [(times[j], first + j, prices[j], sizes[j], rng.random() < 0.5) for j in range(n)]


def _qty(lots: int) -> str:
    return f"{lots // LOT}.{lots % LOT:08d}"


def minute_events(table: MinuteTable, i: int, knobs: StreamKnobs) -> list[tuple[int, str, str]]:
    """Events of minute ``i`` in send order: (event_time_ms, stream kind, payload JSON)."""
    sym = table.symbol
    trades = minute_trades(table, i, knobs.seed)
    start = int(table.open_ms[i])
    out: list[tuple[int, str, str]] = []
    high, low, lots_sum, quote, taker_lots, taker_quote = -np.inf, np.inf, 0, 0.0, 0, 0.0
    last_bucket = -1
    for n, (t, tid, price, lots, maker) in enumerate(trades, start=1):
        p = decimal_str(price)
        out.append((t, "trade", f'{{"e":"trade","E":{t},"s":"{sym}","t":{tid},"p":"{p}","q":"{_qty(lots)}",'
                                f'"T":{t},"m":{"true" if maker else "false"},"M":true}}'))
        high, low, lots_sum = max(high, price), min(low, price), lots_sum + lots
        quote += price * lots / LOT
        if not maker:
            taker_lots, taker_quote = taker_lots + lots, taker_quote + price * lots / LOT
        bucket = t // knobs.kline_update_ms
        if bucket != last_bucket and n < len(trades):
            last_bucket = bucket
            out.append((t, "kline_1m", _kline(sym, t, start, trades[0][1], tid, trades[0][2], price, high, low,
                                              _qty(lots_sum), n, False, quote, taker_lots, taker_quote)))
    cols = table.cols
    end = start + MINUTE_MS - 1
    out.append((end, "kline_1m", _kline(sym, end, start, trades[0][1], trades[-1][1], float(cols["open"][i]),
                                        float(cols["close"][i]), float(cols["high"][i]), float(cols["low"][i]),
                                        decimal_str(float(cols["volume"][i])), len(trades), True, quote,
                                        taker_lots, taker_quote)))
    return out


def _kline(sym: str, event: int, start: int, first: int, last: int, o: float, c: float, h: float, lo: float,
           volume: str, n: int, closed: bool, quote: float, taker_lots: int, taker_quote: float) -> str:
    k = {"t": start, "T": start + MINUTE_MS - 1, "s": sym, "i": "1m", "f": first, "L": last,
         "o": decimal_str(o), "c": decimal_str(c), "h": decimal_str(h), "l": decimal_str(lo), "v": volume,
         "n": n, "x": closed, "q": f"{quote:.8f}", "V": _qty(taker_lots), "Q": f"{taker_quote:.8f}", "B": "0"}
    return json.dumps({"e": "kline", "E": event, "s": sym, "k": k}, separators=(",", ":"))


def _parse_streams(names: list[str], recording: Recording) -> list[tuple[str, str, str]]:
    """(stream name, SYMBOL, kind) for each requested stream; ValueError for anything unknown."""
    out = []
    for name in names:
        sym, _, kind = name.partition("@")
        if not sym or sym != sym.lower() or kind not in KINDS or sym.upper() not in recording.symbols:
            raise ValueError(f"Invalid stream {name!r}: expected <lowercase symbol>@trade or @kline_1m for "
                             f"one of {', '.join(s.lower() for s in recording.symbols)}")
        out.append((name, sym.upper(), kind))
    if not out:
        raise ValueError("no streams requested")
    return out


def _table(state: StreamState, recording: Recording, symbol: str) -> MinuteTable:
    if symbol not in state.tables:
        state.tables[symbol] = MinuteTable(recording, symbol, state.knobs)
    return state.tables[symbol]


async def _pump(ws: web.WebSocketResponse, state: StreamState, recording: Recording,
                streams: list[tuple[str, str, str]], combined: bool, since: int) -> None:
    """Send every wanted event from recorded instant ``since`` on, each at its recorded time."""
    clock, knobs = state.clock, state.knobs
    wanted = {(sym, kind): name for name, sym, kind in streams}
    tables = {sym: _table(state, recording, sym) for _, sym, _ in streams}
    cursor = {sym: t.index_at(since) for sym, t in tables.items()}
    sent = 0
    while not ws.closed:
        live = {s: tables[s].open_ms[i] for s, i in cursor.items() if i < len(tables[s].open_ms)}
        minute = min(live.values()) if live else None
        if minute is None or (knobs.end_ms is not None and minute >= knobs.end_ms):
            await asyncio.sleep(0.2)  # end of the replay: keep the connection (and pings) alive
            continue
        batch: list[tuple[int, str, str, str]] = []
        for sym, start in live.items():
            if start == minute:
                batch += [(t, sym, kind, text) for t, kind, text in minute_events(tables[sym], cursor[sym], knobs)
                          if (sym, kind) in wanted and t >= since]
                cursor[sym] += 1
        batch.sort(key=lambda ev: ev[0])
        for t, sym, kind, text in batch:
            ahead = (t - clock.now()) / (1000 * knobs.speed) if clock.paused_at is None else 1.0
            while ahead > 0.002 and not ws.closed:
                await asyncio.sleep(min(ahead, 0.5))
                ahead = (t - clock.now()) / (1000 * knobs.speed) if clock.paused_at is None else 1.0
            if ws.closed:
                return
            name = wanted[(sym, kind)]
            await ws.send_str(f'{{"stream":"{name}","data":{text}}}' if combined else text)
            sent += 1
            state.sent += 1
            if sent % 256 == 0:
                await asyncio.sleep(0)  # let pings, pongs and other connections through


async def _pinger(ws: web.WebSocketResponse, knobs: StreamKnobs, last_pong: list[float]) -> None:
    while not ws.closed:
        await asyncio.sleep(knobs.ping_interval_s)
        if time.monotonic() - last_pong[0] > knobs.pong_timeout_s:
            log.info("replay ws: no pong for %.0fs, closing", knobs.pong_timeout_s)
            await ws.close(code=1008, message=b"pong timeout")
            return
        await ws.ping(str(int(time.time() * 1000)).encode())


async def _disconnector(ws: web.WebSocketResponse, request: web.Request, knobs: StreamKnobs) -> None:
    await asyncio.sleep(knobs.disconnect_after_s or 0)
    log.info("replay ws: injected %s disconnect", knobs.disconnect_mode)
    if knobs.disconnect_mode == "drop" and request.transport is not None:
        request.transport.abort()
    else:
        await ws.close(code=1001, message=b"replay exchange: injected disconnect")


async def _serve(request: web.Request, names: list[str], combined: bool) -> web.StreamResponse:
    app = request.app
    recording: Recording = app["recording"]
    state: StreamState = app["ws_state"]
    try:
        streams = _parse_streams(names, recording)
    except ValueError as exc:
        return web.json_response({"code": -1121, "msg": str(exc)}, status=400)
    ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    since = state.clock.now()  # the first connection anchors the replay clock: it gets everything
    state.connections += 1
    state.open_connections += 1
    knobs = state.knobs
    last_pong = [time.monotonic()]
    tasks = [asyncio.create_task(_pump(ws, state, recording, streams, combined, since)),
             asyncio.create_task(_pinger(ws, knobs, last_pong))]
    if knobs.disconnect_after_s is not None and state.disconnects < knobs.max_disconnects:
        state.disconnects += 1
        tasks.append(asyncio.create_task(_disconnector(ws, request, knobs)))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                last_pong[0] = time.monotonic()
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(_answer(msg.data))
    finally:
        state.open_connections -= 1
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return ws


def _answer(text: str) -> str:
    """Live (UN)SUBSCRIBE is not replayed; answer like Binance does for a request it refuses."""
    try:
        ident = json.loads(text).get("id")
    except (ValueError, AttributeError):
        ident = None
    return json.dumps({"error": {"code": 2, "msg": "Invalid request: live (un)subscribe is not supported by "
                                 "the replay exchange; connect to /stream?streams=..."}, "id": ident})


async def raw_stream(request: web.Request) -> web.StreamResponse:
    return await _serve(request, request.match_info["streams"].split("/"), combined=False)


async def combined_stream(request: web.Request) -> web.StreamResponse:
    names = [n for n in request.query.get("streams", "").split("/") if n]
    return await _serve(request, names, combined=True)


def add_stream_routes(app: web.Application) -> None:
    """Called by ``replay.build_app``: knobs from ``app["ws_knobs"]``, the ReplayKnobs' ``stream`` field
    or the environment, in that order."""
    replay_knobs = app.get("knobs")
    knobs = app.get("ws_knobs") or (replay_knobs.stream if replay_knobs is not None else None) or env_knobs()
    with warnings.catch_warnings():  # plain string keys, as replay.build_app uses
        warnings.simplefilter("ignore")
        app["ws_knobs"] = knobs
        app["ws_state"] = StreamState(knobs, ReplayClock(knobs.speed, knobs.start_ms, app["recording"].clock))
    app.router.add_get("/ws/{streams:.+}", raw_stream)
    app.router.add_get("/stream", combined_stream)
