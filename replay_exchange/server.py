"""Replay exchange: a local aiohttp server that answers like Binance spot's public REST API, from a
:class:`~replay_exchange.recording.Recording`.

It exists so the batch and speed layers (and their tests) can run against real recorded data with
Binance's semantics: klines open-time-inclusive at both ends, ``limit`` default 500 / max 1000, request
weights with ``X-MBX-USED-WEIGHT-1M`` and 429 + ``Retry-After`` over budget. Test knobs inject latency,
random 5xx, and deterministic leading 503s/429s so retry code can be exercised for real.
WebSocket streams are added by ``replay_ws.add_stream_routes(app)`` when that module is present.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from crypto_lambda_http import BackgroundServer
from replay_exchange.recording import SERVED_INTERVALS, Recording

if TYPE_CHECKING:  # replay_ws is imported lazily by build_app (it is optional), never at import time
    from replay_exchange.streams import StreamKnobs

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
DEFAULT_LIMIT = 500
# Request weights from Binance's spot REST docs (market-data and general endpoints).
WEIGHTS = {"/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/exchangeInfo": 20, "/api/v3/klines": 2}
BINANCE_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d",
                     "1w", "1M")
QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY")
WS_MODULE = "replay_exchange.streams"


@dataclass
class ReplayKnobs:
    """Fault and rate-limit knobs. Leading failures are sequential: the first ``force_429_first_n`` API
    requests get 429, the next ``fail_first_n`` get 503, then ``error_rate`` applies at random."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    fail_first_n: int = 0
    force_429_first_n: int = 0
    retry_after_s: int = 1
    weight_budget: int = 6000
    seed: int | None = None
    corrupt_every_n: int = 0  # serve every Nth 1m kline with high < low, to test quarantine end to end
    # WebSocket stream knobs (replay clock, synthesis, faults), read by replay_ws.add_stream_routes; None =
    # REPLAY_WS_* from the environment, else defaults.
    stream: StreamKnobs | None = None


@dataclass
class _State:
    """Per-app mutable counters (touched only from the server's event loop)."""

    knobs: ReplayKnobs
    requests: int = 0
    window: int = -1
    used: int = 0
    rng: random.Random = field(default_factory=random.Random)


def binance_error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


def _api_path(request: web.Request) -> bool:
    return request.path.startswith("/api/")


@web.middleware
async def _knobs_middleware(request: web.Request, handler):
    """Latency, injected failures and request-weight accounting, for /api/ routes only."""
    if not _api_path(request):
        return await handler(request)
    state: _State = request.app["replay_state"]
    knobs = state.knobs
    if knobs.latency_ms > 0:
        await asyncio.sleep(knobs.latency_ms / 1000)
    index = state.requests
    state.requests += 1
    if index < knobs.force_429_first_n:
        return binance_error(429, -1003, "Too many requests; injected by the replay exchange.",
                             {"Retry-After": str(knobs.retry_after_s)})
    if index < knobs.force_429_first_n + knobs.fail_first_n:
        return binance_error(503, -1001, "Internal error; unable to process your request. Please try again.")
    if knobs.error_rate > 0 and state.rng.random() < knobs.error_rate:
        status = state.rng.choice((500, 503))
        return binance_error(status, -1000, "An unknown error occurred while processing the request.")
    now = time.time()
    window = int(now // 60)
    if window != state.window:
        state.window, state.used = window, 0
    weight = WEIGHTS.get(request.path, 1)
    if state.used + weight > knobs.weight_budget:
        retry = max(1, math.ceil((window + 1) * 60 - now))
        return binance_error(429, -1003, f"Too much request weight used; current limit is "
                             f"{knobs.weight_budget} request weight per 1 MINUTE. Please use WebSocket "
                             "Streams for live updates to avoid polling the API.",
                             {"Retry-After": str(retry), "X-MBX-USED-WEIGHT-1M": str(state.used)})
    state.used += weight
    response = await handler(request)
    response.headers["X-MBX-USED-WEIGHT-1M"] = str(state.used)
    return response


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise _BadRequest(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                          "'^[0-9]{1,20}$'.")
    return int(raw)


class _BadRequest(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


def _symbol(request: web.Request, recording: Recording) -> str:
    symbol = request.query.get("symbol", "")
    if not symbol:
        raise _BadRequest(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
    if symbol not in recording.symbols:
        raise _BadRequest(-1121, "Invalid symbol.")
    return symbol


async def klines(request: web.Request) -> web.Response:
    """GET /api/v3/klines: rows with startTime <= open time <= endTime, oldest first."""
    recording: Recording = request.app["recording"]
    try:
        symbol = _symbol(request, recording)
        interval = request.query.get("interval", "")
        if not interval:
            raise _BadRequest(-1102, "Mandatory parameter 'interval' was not sent, was empty/null, or "
                              "malformed.")
        if interval not in BINANCE_INTERVALS:
            raise _BadRequest(-1120, "Invalid interval.")
        if interval not in SERVED_INTERVALS:
            served = ", ".join(SERVED_INTERVALS)
            raise _BadRequest(-1120, f"Invalid interval. The replay exchange serves {served}.")
        start, end = _int_param(request, "startTime"), _int_param(request, "endTime")
        limit = _int_param(request, "limit")
        limit = DEFAULT_LIMIT if limit is None else limit
        if not 1 <= limit <= MAX_LIMIT:
            raise _BadRequest(-1130, "Data sent for parameter 'limit' is not valid.")
        if start is not None and end is not None and start > end:
            raise _BadRequest(-1023, "Start time is greater than end time.")
    except _BadRequest as exc:
        return binance_error(400, exc.code, exc.msg)
    rows = recording.klines_rows(symbol, interval, start, end, limit)
    every = request.app["knobs"].corrupt_every_n
    if every and interval == "1m":
        for row in rows:
            if (row[0] // 60_000) % every == 0:
                row[2], row[3] = row[3], str(float(row[2]) + 1.0)  # high below low: an OHLC violation
    return web.json_response(rows)


async def ping(request: web.Request) -> web.Response:
    return web.json_response({})


async def server_time(request: web.Request) -> web.Response:
    return web.json_response({"serverTime": request.app["recording"].clock()})


def split_symbol(symbol: str) -> tuple[str, str]:
    """Base and quote asset by known quote suffix (BTCUSDT -> BTC, USDT)."""
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-4], symbol[-4:]


async def exchange_info(request: web.Request) -> web.Response:
    """GET /api/v3/exchangeInfo with optional ``symbol`` filter; only what the recording holds."""
    recording: Recording = request.app["recording"]
    wanted = list(recording.symbols)
    if "symbol" in request.query:
        try:
            wanted = [_symbol(request, recording)]
        except _BadRequest as exc:
            return binance_error(400, exc.code, exc.msg)
    knobs: ReplayKnobs = request.app["knobs"]
    symbols = []
    for symbol in wanted:
        base, quote = split_symbol(symbol)
        symbols.append({"symbol": symbol, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
                        "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
                        "orderTypes": [], "filters": [], "permissions": [], "permissionSets": [["SPOT"]],
                        "isSpotTradingAllowed": True, "isMarginTradingAllowed": False})
    return web.json_response({
        "timezone": "UTC", "serverTime": recording.clock(),
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                        "limit": knobs.weight_budget}],
        "exchangeFilters": [], "symbols": symbols,
    })


def build_app(recording: Recording, knobs: ReplayKnobs | None = None) -> web.Application:
    """The replay exchange app; ``app["recording"]`` and ``app["knobs"]`` are there for stream routes."""
    knobs = knobs or ReplayKnobs()
    app = web.Application(middlewares=[_knobs_middleware])
    with warnings.catch_warnings():  # plain string keys are the documented contract with replay_ws
        warnings.simplefilter("ignore")
        app["recording"] = recording
        app["knobs"] = knobs
        app["replay_state"] = _State(knobs=knobs, rng=random.Random(knobs.seed))
    app.router.add_get("/api/v3/klines", klines)
    app.router.add_get("/api/v3/ping", ping)
    app.router.add_get("/api/v3/time", server_time)
    app.router.add_get("/api/v3/exchangeInfo", exchange_info)
    if importlib.util.find_spec(WS_MODULE) is not None:  # a broken replay_ws must fail loudly, not vanish
        add_stream_routes = getattr(importlib.import_module(WS_MODULE), "add_stream_routes", None)
        if add_stream_routes is not None:
            add_stream_routes(app)
    return app


class ReplayServer(BackgroundServer):
    """Runs the replay app on its own event loop in a background thread (port 0 = any free port)."""

    name = "replay-exchange"

    def __init__(self, recording: Recording, knobs: ReplayKnobs | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(host, port)
        self.recording, self.knobs = recording, knobs or ReplayKnobs()

    def make_app(self) -> web.Application:
        return build_app(self.recording, self.knobs)

    @property
    def ws_url(self) -> str:
        return f"ws://{self.netloc}"
