"""`replay-exchange`: run the local replay exchange in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("crypto_lambda.replay")
DESCRIPTION = ("Serve recorded klines (the shipped BTCUSDT/ETHUSDT sample unless --data is given) with Binance "
               "spot REST and WebSocket semantics. Point BINANCE_API_URL and BINANCE_WS_URL at the printed URLs.")


def register(sub: argparse._SubParsersAction) -> None:
    add_arguments(sub.add_parser("replay-exchange", help="serve recorded klines through a local "
                                 "Binance-compatible REST and WebSocket API", description=DESCRIPTION))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port (default 8090; 0 = any free port)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow binding a non-loopback address (the server has no authentication)")
    parser.add_argument("--shift-to-today", action="store_true",
                        help="shift whole days so the recording's last 1m day is today (UTC)")
    parser.add_argument("--keep-ahead-hours", type=float, default=0.0, metavar="H",
                        help="with --shift-to-today, shift one day more when fewer than H hours of recorded "
                             "minutes would follow now, so a live WebSocket replay has minutes to send (default 0)")
    parser.add_argument("--data", nargs="+", type=Path, metavar="PATH",
                        help="kline files or directories to serve instead of the shipped sample")
    parser.add_argument("--weight-budget", type=int, default=6000, help="request weight per minute")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per API request")
    parser.add_argument("--error-rate", type=float, default=0.0,
                        help="fraction of API requests answered 500/503 (0-1)")
    parser.add_argument("--seed", type=int, default=None, help="seed for --error-rate")
    parser.add_argument("--ws-speed", type=float, default=None,
                        help="WebSocket replay speed: recorded ms per wall ms (default $REPLAY_WS_SPEED or 1)")
    parser.add_argument("--ws-start-ms", type=int, default=None,
                        help="recorded instant (epoch ms) the WebSocket replay starts at when the first client "
                             "connects (default $REPLAY_WS_START_MS, else now on the recording's clock)")
    parser.add_argument("--ws-trades-per-minute", type=int, default=None,
                        help="mean synthetic trades per recorded minute and symbol "
                             "(default $REPLAY_WS_TRADES_PER_MINUTE or 40)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crypto_lambda.timeutil import iso_ms
    from crypto_lambda_http import check_bind
    from replay_exchange.recording import Recording
    from replay_exchange.server import ReplayKnobs, ReplayServer
    from replay_exchange.streams import env_knobs

    check_bind(args.host, args.allow_remote, "replay exchange")
    if not 0 <= args.error_rate <= 1:
        raise ValueError(f"--error-rate {args.error_rate} must be between 0 and 1")
    if args.weight_budget < 1:
        raise ValueError(f"--weight-budget {args.weight_budget} must be positive")
    stream = env_knobs(args.ws_speed, args.ws_start_ms, args.ws_trades_per_minute)  # options win over REPLAY_WS_*
    if not 0 <= args.keep_ahead_hours <= 18:
        raise ValueError(f"--keep-ahead-hours {args.keep_ahead_hours} must be between 0 and 18")
    shift = {"shift_to_today": args.shift_to_today, "ahead_ms": int(args.keep_ahead_hours * 3_600_000)}
    recording = (Recording.from_paths(args.data, **shift) if args.data else Recording.from_sample(**shift))
    knobs = ReplayKnobs(latency_ms=args.latency_ms, error_rate=args.error_rate,
                        weight_budget=args.weight_budget, seed=args.seed, stream=stream)
    with ReplayServer(recording, knobs, host=args.host, port=args.port) as server:
        log.info("replay exchange listening on %s (ws %s); shift %+d days", server.url, server.ws_url,
                 recording.shift_ms // 86_400_000)
        log.info("websocket replay: speed x%g from %s, %d trades/min/symbol", stream.speed,
                 iso_ms(stream.start_ms) if stream.start_ms is not None else "now", stream.trades_per_minute)
        for symbol in recording.symbols:
            try:
                first, last = recording.minute_span(symbol)
                minutes = f"1m {iso_ms(first)} .. {iso_ms(last)}"
            except LookupError:
                minutes = "1m none served yet"
            days = recording.day_span(symbol)
            daily = f"1d {iso_ms(days[0])[:10]} .. {iso_ms(days[1])[:10]}" if days else "1d none"
            log.info("serving %s: %s; %s", symbol, minutes, daily)
        server.serve_until_signal()
        log.info("replay exchange stopping")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``replay-exchange`` / ``python -m replay_exchange``: the same command without the product's CLI."""
    import sys

    from crypto_lambda.errors import report

    parser = argparse.ArgumentParser(prog="replay-exchange", description=DESCRIPTION)
    add_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:
        return report(exc, prog=parser.prog, context=" ".join(argv), verbose=False)
