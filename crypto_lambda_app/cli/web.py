"""`web`: serve the live page (1-minute candles and the provisional daily bar per symbol) in the foreground."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("crypto_lambda_app.web")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "web",
        help="serve the live page of the streaming output (1-minute candles, provisional daily bar)",
        description="Serve a small self-contained web page that shows, per configured symbol, the last "
                    "1-minute bars the streaming consumer committed under $CRYPTO_LAMBDA_HOME/lake and the "
                    "provisional daily bar (today so far), refreshing itself every few seconds. JSON API: "
                    "/api/symbols, /api/bars?symbol=BTCUSDT&minutes=120; health: /healthz. Runs until Ctrl-C "
                    "or SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port (default 8050; 0 = any free port)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow binding a non-loopback --host (the page has no authentication)")
    parser.add_argument("--cache-seconds", type=float, default=2.0,
                        help="seconds a read of the streaming output is reused across requests (default 2)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crypto_lambda.config import load_settings
    from crypto_lambda_app.web import WebServer
    from crypto_lambda_http import check_bind

    check_bind(args.host, args.allow_remote, "live page")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} is not a TCP port")
    if args.cache_seconds < 0:
        raise ValueError("--cache-seconds must not be negative")
    settings = load_settings()
    log.info("live page for %s from %s", ",".join(settings.symbols), settings.lake)
    with WebServer(settings, args.host, args.port, args.cache_seconds) as server:
        print(f"live page on {server.url}/ (Ctrl-C to stop)", flush=True)  # the bound port, also for --port 0
        server.serve_until_signal()
    return 0
