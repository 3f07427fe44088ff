"""The live page's HTTP server (aiohttp): the page, a small JSON API over the streaming output, a health check.

Routes: ``/`` (the page), ``/api/symbols``, ``/api/bars?symbol=BTCUSDT&minutes=120``, ``/healthz``.
``symbol`` must be one of the configured symbols (anything else is a 400, so a request can never name a path
outside the lake) and ``minutes`` an integer in 1..1440. Reads are cached for ``cache_seconds`` per
(symbol, minutes), so a wall of browsers polling every few seconds costs one Parquet scan per interval.
"""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web

from crypto_lambda.config import Settings
from crypto_lambda.lake.tables import is_table
from crypto_lambda_app.web.data import DEFAULT_MINUTES, MAX_MINUTES, SnapshotCache, snapshot
from crypto_lambda_app.web.page import PAGE
from crypto_lambda_http import BackgroundServer
from streaming_service.topics import SpeedPaths

log = logging.getLogger(__name__)
SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("settings", Settings)
CACHE_KEY: web.AppKey[SnapshotCache] = web.AppKey("cache", SnapshotCache)
NO_STORE = {"Cache-Control": "no-store"}


def _json_error(message: str) -> str:
    return json.dumps({"error": message})


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", charset="utf-8", headers=NO_STORE)


async def symbols(request: web.Request) -> web.Response:
    return web.json_response({"symbols": list(request.app[SETTINGS_KEY].symbols)}, headers=NO_STORE)


async def bars(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    symbol = request.query.get("symbol", "")
    if symbol not in settings.symbols:
        raise web.HTTPBadRequest(text=_json_error(f"symbol must be one of {', '.join(settings.symbols)}"),
                                 content_type="application/json")
    raw = request.query.get("minutes", str(DEFAULT_MINUTES))
    try:
        minutes = int(raw)
    except ValueError:
        minutes = -1
    if not 1 <= minutes <= MAX_MINUTES:
        raise web.HTTPBadRequest(text=_json_error(f"minutes must be an integer from 1 to {MAX_MINUTES}"),
                                 content_type="application/json")
    data = await request.app[CACHE_KEY].get((symbol, minutes), lambda: snapshot(settings, symbol, minutes))
    return web.json_response({**data, "now_ms": int(time.time() * 1000)}, headers=NO_STORE)


async def healthz(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    paths = SpeedPaths.of(settings)
    return web.json_response({"status": "ok", "symbols": list(settings.symbols),
                              "speed_output": is_table(paths.bars),
                              "cache_reads": request.app[CACHE_KEY].reads}, headers=NO_STORE)


def build_app(settings: Settings, cache_seconds: float = 2.0) -> web.Application:
    """The live page application for ``settings`` (symbols and CRYPTO_LAMBDA_HOME come from there)."""
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app[CACHE_KEY] = SnapshotCache(ttl=cache_seconds)
    app.router.add_get("/", page)
    app.router.add_get("/api/symbols", symbols)
    app.router.add_get("/api/bars", bars)
    app.router.add_get("/healthz", healthz)
    return app


class WebServer(BackgroundServer):
    """The app on its own event loop in a background thread (port 0 = any free port); for tests and
    embedding; ``crypto-lambda web`` serves it in the foreground with :meth:`serve_until_signal`."""

    name = "crypto-lambda-web"
    join_timeout_s = 10.0

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0,
                 cache_seconds: float = 2.0) -> None:
        super().__init__(host, port)
        self.settings, self.cache_seconds = settings, cache_seconds

    def make_app(self) -> web.Application:
        return build_app(self.settings, self.cache_seconds)
