"""`up`: run the whole stack under one supervisor until Ctrl-C or SIGTERM (what `make up` runs)."""

from __future__ import annotations

import argparse
import logging

from crypto_lambda.config import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "up", help="run the whole stack: exchange, broker, producer, consumer, Dagster, web page",
        description="Start, in order and each once the previous is ready: the replay exchange (or, with --live, "
                    "the real Binance endpoints), the embedded broker, the WebSocket producer, the Spark "
                    "streaming consumer, the Dagster webserver and daemon (schedules and sensors on) and the "
                    "live web page. Logs go to $CRYPTO_LAMBDA_HOME/logs/<component>.log, state "
                    "to $CRYPTO_LAMBDA_HOME/stack/state.json; a child that dies is restarted with backoff. "
                    "Ctrl-C or SIGTERM stops everything in reverse order, the consumer between micro-batches. "
                    "`crypto-lambda status` shows each component's health.")
    parser.add_argument("--live", action="store_true",
                        help="use the real Binance endpoints ($BINANCE_API_URL/$BINANCE_WS_URL or Binance's "
                             "defaults) instead of starting the replay exchange")
    parser.add_argument("--exchange-port", type=int, default=8090, help="replay exchange port (default 8090)")
    parser.add_argument("--broker-port", type=int, default=9092, help="embedded broker port (default 9092)")
    parser.add_argument("--dagster-port", type=int, default=3000, help="Dagster webserver port (default 3000)")
    parser.add_argument("--web-port", type=int, default=8050, help="live web page port (default 8050)")
    parser.add_argument("--no-dagster", action="store_true", help="do not start the Dagster webserver and daemon")
    parser.add_argument("--no-web", action="store_true", help="do not start the live web page")
    parser.add_argument("--no-automation", action="store_true",
                        help="leave schedules and sensors at their default (stopped) status")
    parser.add_argument("--max-restarts", type=int, default=5,
                        help="restarts per component before it is left down (default 5)")
    parser.add_argument("--ready-timeout", type=float, default=180.0,
                        help="seconds each component may take to become ready (default 180)")
    parser.add_argument("--trigger-seconds", type=float, default=5.0,
                        help="streaming consumer micro-batch interval (default 5)")
    parser.set_defaults(func=cmd_up)


def cmd_up(args: argparse.Namespace) -> int:
    from crypto_lambda_app.stack.components import StackOptions
    from crypto_lambda_app.stack.state import logs_dir
    from crypto_lambda_app.stack.supervisor import Supervisor

    for name in ("exchange_port", "broker_port", "dagster_port", "web_port"):
        port = getattr(args, name)
        if not 1 <= port <= 65535:
            raise ValueError(f"--{name.replace('_', '-')} {port} is not a port number")
    if args.max_restarts < 0 or args.ready_timeout <= 0 or args.trigger_seconds <= 0:
        raise ValueError("--max-restarts must be >= 0, --ready-timeout and --trigger-seconds positive")
    settings = load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    logs_dir(settings).mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(logs_dir(settings) / "supervisor.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("crypto_lambda_app.stack").addHandler(handler)
    _sweep_dead_runs(settings)
    options = StackOptions(
        live=args.live, exchange_port=args.exchange_port, broker_port=args.broker_port,
        dagster_port=args.dagster_port, web_port=args.web_port, dagster=not args.no_dagster,
        web=not args.no_web, automation=not args.no_automation, max_restarts=args.max_restarts,
        ready_timeout=args.ready_timeout, trigger_seconds=args.trigger_seconds)
    return Supervisor(settings, options).run()


def _sweep_dead_runs(settings) -> None:
    """Runs left STARTED by a killed process would block the sensors' "run in flight" logic forever."""
    from crypto_assets.lib.runs import sweep_dead_runs
    from crypto_lambda_app.cli.batch import _instance

    sweep_dead_runs(_instance(settings))
