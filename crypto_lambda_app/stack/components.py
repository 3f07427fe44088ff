"""What ``crypto-lambda up`` runs: one :class:`ComponentSpec` per child process, in dependency order.

Every component is an ordinary command a user could type (``crypto-lambda replay-exchange``, ``crypto-lambda
stream broker|produce|consume``, ``dagster-webserver``, ``dagster-daemon run``, ``crypto-lambda web``), so a
component that misbehaves under the supervisor can be run and debugged alone with the same arguments; the
supervisor only adds the environment that wires them together (URLs, bootstrap servers, DAGSTER_HOME).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from crypto_lambda.config import AUTOMATION_ENV, Settings

WORKSPACE = Path(__file__).resolve().parent.parent.parent / "workspace.yaml"
HOST = "127.0.0.1"
# The stack's exchange replays the sample "live from now": it keeps at least this much recording ahead of the
# clock (the sample ends at 18:27 UTC of its last day; later in the day it is shifted one day further).
STREAM_AHEAD_HOURS = 6


@dataclass
class StackOptions:
    """``crypto-lambda up`` options (ports default to each command's own default)."""

    live: bool = False
    exchange_port: int = 8090
    broker_port: int = 9092
    dagster_port: int = 3000
    web_port: int = 8050
    dagster: bool = True
    web: bool = True
    automation: bool = True
    max_restarts: int = 5
    ready_timeout: float = 180.0
    trigger_seconds: float = 5.0


@dataclass
class ComponentSpec:
    """One child: its command, how to tell it is ready, and how to stop it without losing work.

    ``stop_group``: the front end (Dagster, web page) stops first and in parallel, then the consumer, the
    producer, the broker and the exchange one by one, i.e. the reverse of the data flow.
    ``ready`` is ``("http", url)``, ``("tcp", port)`` or ``("log", text)`` (the text appears in the
    component's log after this start); ``probe`` is what ``status`` checks later (http/tcp, None = alive).
    """

    name: str
    argv: list[str]
    ready: tuple[str, str | int]
    probe: tuple[str, str | int] | None = None
    port: int | None = None
    url: str | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 20.0
    stop_group: int = 0  # stopped in ascending groups; one group's members stop in parallel


def executable(name: str) -> str:
    """A console script from this interpreter's environment (the venv), else from PATH: the supervisor must
    run the same installation it was started from."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found beside {sys.executable} or on PATH (pip install -e .)")
    return found


def base_env(settings: Settings, options: StackOptions, stack_id: str) -> dict[str, str]:
    """Environment shared by every child: one home, one Dagster instance, one exchange, one broker."""
    from crypto_lambda_app.stack.procs import STACK_ID_ENV
    from streaming_service.topics import ws_base_url

    api_url = settings.api_url if options.live else f"http://{HOST}:{options.exchange_port}"
    ws_url = ws_base_url() if options.live else f"ws://{HOST}:{options.exchange_port}"
    return {
        **os.environ,
        "CRYPTO_LAMBDA_HOME": str(settings.home),
        "DAGSTER_HOME": str(settings.dagster_home),
        "BINANCE_API_URL": api_url,
        "BINANCE_WS_URL": ws_url,
        "KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{options.broker_port}",
        AUTOMATION_ENV: "on" if options.automation else "off",
        STACK_ID_ENV: stack_id,
        "PYTHONUNBUFFERED": "1",
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", HOST),
    }


def _future_bound(options: StackOptions) -> list[str]:
    """A replay exchange faster than the clock streams recorded time ahead of now by design: only then is the
    consumer's "not after now + 1 minute" rule lifted."""
    from replay_exchange.streams import env_knobs

    return ["--no-future-bound"] if not options.live and env_knobs().speed > 1 else []


def build_components(options: StackOptions) -> list[ComponentSpec]:
    """The stack in start order; stop order is the reverse."""
    cl = executable("crypto-lambda")
    specs: list[ComponentSpec] = []
    if not options.live:
        url = f"http://{HOST}:{options.exchange_port}"
        specs.append(ComponentSpec(
            "exchange", [cl, "replay-exchange", "--host", HOST, "--port", str(options.exchange_port),
                         "--shift-to-today", "--keep-ahead-hours", str(STREAM_AHEAD_HOURS)],
            ready=("http", f"{url}/api/v3/ping"), probe=("http", f"{url}/api/v3/ping"),
            port=options.exchange_port, url=url, stop_group=4))
    specs.append(ComponentSpec(
        "broker", [cl, "stream", "broker", "--port", str(options.broker_port)],
        ready=("log", "KAFKA_BOOTSTRAP_SERVERS="),  # printed once Kafka serves metadata and topics exist
        probe=("tcp", options.broker_port), port=options.broker_port, url=f"{HOST}:{options.broker_port}",
        stop_group=3))
    specs.append(ComponentSpec(
        "producer", [cl, "stream", "produce", "--stats-seconds", "30"],
        ready=("log", "producing "), stop_timeout=20.0, stop_group=2))
    specs.append(ComponentSpec(
        # SIGTERM to the Python process only: the consumer sets a stop flag and ends between micro-batches; the
        # Spark JVM (same group) must not get it, or it would die mid-batch. (SIGINT would also do since the
        # consumer replaces PySpark's handler, but SIGTERM never meets PySpark's cancel-all-jobs handler.)
        # The broker keeps its topics under $CRYPTO_LAMBDA_HOME/kafka, so a restart resumes from the checkpoint
        # with failOnDataLoss on (the default): nothing here tolerates a loss.
        "consumer", [cl, "stream", "consume", "--trigger-seconds", str(options.trigger_seconds),
                     "--max-offsets-per-trigger", "200000", *_future_bound(options)],
        ready=("log", "speed layer reading"), stop_timeout=90.0, stop_group=1))
    if options.dagster:
        url = f"http://{HOST}:{options.dagster_port}"
        specs.append(ComponentSpec(
            "dagster-webserver", [executable("dagster-webserver"), "-h", HOST, "-p", str(options.dagster_port),
                                  "-w", str(WORKSPACE)],
            ready=("http", f"{url}/server_info"), probe=("http", f"{url}/server_info"),
            port=options.dagster_port, url=url, stop_signal=signal.SIGINT, stop_timeout=30.0))
        specs.append(ComponentSpec(
            "dagster-daemon", [executable("dagster-daemon"), "run", "-w", str(WORKSPACE)],
            ready=("log", "configured with the following daemons"), stop_signal=signal.SIGINT, stop_timeout=30.0))
    if options.web:
        url = f"http://{HOST}:{options.web_port}"
        specs.append(ComponentSpec(
            "web", [cl, "web", "--host", HOST, "--port", str(options.web_port)],
            ready=("http", f"{url}/healthz"), probe=("http", f"{url}/healthz"), port=options.web_port, url=url))
    return specs
