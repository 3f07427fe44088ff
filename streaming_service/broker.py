"""Embedded Apache Kafka for tests, the demo and ``make up``: KRaft nodes (combined broker + controller).

The broker runs from the jars ``jvm/pom.xml`` locks (``make jvm``), one JVM per node, bound to 127.0.0.1. Its
storage lives in a folder of the caller's (``CRYPTO_LAMBDA_HOME/kafka`` for ``stream broker``): formatted on the
first start, the cluster id and ports kept in ``cluster.json`` beside the log dirs, so a restart finds every
topic, offset and message again. ``brokers=3`` runs a 3-node quorum whose topics get replication 3 and
``min.insync.replicas=2``, for the fault tests and to show replication on a laptop. Topic helpers speak the
plain Kafka protocol, so they work unchanged against compose's broker or a managed cluster.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from crypto_lambda import jvm
from crypto_lambda.deploy import kafka_replication
from crypto_lambda.lake import atomic_text
from crypto_lambda.machine import free_port, port_open

log = logging.getLogger(__name__)

HEAP_ENV = "CRYPTO_LAMBDA_KAFKA_HEAP"
DEFAULT_HEAP = "256m"  # per node; measured RSS is reported by bench/bench_streaming.py
STATE_FILE = "cluster.json"

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
logger.controller.name = org.apache.kafka.controller.QuorumController
logger.controller.level = INFO
"""


def _admin(bootstrap: str, timeout: float, client_id: str):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=int(timeout * 1000),
                            client_id=client_id)


def wait_ready(bootstrap: str, timeout: float = 60.0, brokers: int = 1,
               still_starting: Callable[[], None] | None = None) -> None:
    """Block until the cluster's metadata answers and lists ``brokers`` live brokers (an accept is not enough).
    ``still_starting`` is called on every poll and raises when waiting is pointless (the process died)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if still_starting is not None:
            still_starting()
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        if not port_open(int(port), host):  # cheap probe first: the client's reconnect backoff grows to seconds
            last = "connection refused"
            time.sleep(0.1)
            continue
        try:
            admin = _admin(bootstrap, 3.0, "crypto-lambda-ready")
            try:
                live = len(admin.describe_cluster()["brokers"])
                if live >= brokers:
                    return
                last = f"{live} of {brokers} brokers registered"
            finally:
                admin.close()
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"Kafka {bootstrap} not ready after {timeout:.0f}s: {last}")


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 1, replication: int = -1,
                  min_insync: int | None = None, timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Idempotent.

    ``replication=-1`` and no ``min_insync`` take the cluster's own defaults (``default.replication.factor``,
    ``min.insync.replicas``), so the producer creates sound topics on any cluster without knowing its size.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = list(dict.fromkeys(topics))
    admin = _admin(bootstrap, timeout, "crypto-lambda-topics")
    try:
        missing = [t for t in wanted if t not in set(admin.list_topics())]
        if missing:
            configs = {"min.insync.replicas": str(min_insync)} if min_insync else {}
            try:
                admin.create_topics([NewTopic(t, partitions, replication, topic_configs=configs) for t in missing])
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


def delete_topics(bootstrap: str, topics: Iterable[str], timeout: float = 30.0) -> None:
    """Delete topics and wait until the cluster no longer lists them."""
    admin = _admin(bootstrap, timeout, "crypto-lambda-topics")
    try:
        names = [t for t in dict.fromkeys(topics) if t in set(admin.list_topics())]
        if names:
            admin.delete_topics(names)
        deadline = time.monotonic() + timeout
        while names and set(names) & set(admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        admin.close()


def partition_state(bootstrap: str, topic: str) -> dict[int, dict[str, object]]:
    """{partition: {"leader": node id, "isr": [node ids]}} from the cluster's metadata."""
    admin = _admin(bootstrap, 10.0, "crypto-lambda-describe")
    try:
        (described,) = admin.describe_topics([topic])
        return {p["partition_index"]: {"leader": p["leader_id"], "isr": sorted(p["isr_nodes"])}
                for p in described["partitions"]}
    finally:
        admin.close()


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    """A topic's effective configuration ({key: value}, defaults included) as the cluster reports it."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = _admin(bootstrap, 10.0, "crypto-lambda-describe")
    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    finally:
        admin.close()
    (entries,) = [named for kind in found.values() for name, named in kind.items() if name == topic]
    return {key: str(data.get("value") if isinstance(data, dict) else data) for key, data in entries.items()}


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64. Like Kafka's own ``Uuid.randomUuid`` it never
    starts with '-', which the storage tool's argument parser would read as an option (seen in CI: 1 id in 64)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    proc: subprocess.Popen[bytes] | None = None


class EmbeddedBroker:
    """Apache Kafka on 127.0.0.1: one node (the default) or a ``brokers``-node KRaft quorum.

    ``start()`` formats storage when new and returns once the cluster serves metadata with every broker
    registered; ``stop()`` is SIGTERM (a controlled shutdown) then SIGKILL; ``kill(node)`` is kill -9, as a crash
    would be. Ports are chosen once and kept in ``cluster.json``, so clients reconnect to the same bootstrap.
    """

    def __init__(self, data_dir: Path, port: int | None = None, brokers: int = 1, host: str = "127.0.0.1",
                 log_path: Path | None = None, heap: str | None = None) -> None:
        if brokers < 1:
            raise ValueError(f"brokers must be >= 1, got {brokers}")
        self.data_dir = Path(data_dir)
        self.host = host
        self.heap = heap or os.environ.get(HEAP_ENV, DEFAULT_HEAP)
        self.log_path = log_path
        self.cluster_id, self.nodes = self._load_or_plan(port, brokers)

    # -- layout ------------------------------------------------------------------------------------------
    def _load_or_plan(self, port: int | None, brokers: int) -> tuple[str, list[Node]]:
        state_path = self.data_dir / STATE_FILE
        if state_path.is_file():
            state = json.loads(state_path.read_text())
            nodes = [Node(n["node_id"], n["port"], n["controller_port"]) for n in state["nodes"]]
            if len(nodes) != brokers:
                raise ValueError(f"{self.data_dir} holds a {len(nodes)}-broker cluster, not {brokers}: use its "
                                 "size or another folder")
            if port and nodes[0].port != port:
                raise ValueError(f"{self.data_dir} was created for port {nodes[0].port}, not {port}")
            return state["cluster_id"], nodes
        cluster_id = new_cluster_id()
        nodes = [Node(i + 1, port if (i == 0 and port) else free_port(self.host), free_port(self.host))
                 for i in range(brokers)]
        return cluster_id, nodes

    @property
    def brokers(self) -> int:
        return len(self.nodes)

    @property
    def replication(self) -> int:
        return kafka_replication(self.brokers).factor  # the same rule sizes docker-compose's cluster

    @property
    def min_insync(self) -> int:
        return kafka_replication(self.brokers).min_insync

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{n.port}" for n in self.nodes)

    @property
    def pid(self) -> int | None:
        proc = self.nodes[0].proc
        return proc.pid if proc else None

    def node_dir(self, node: Node) -> Path:
        return self.data_dir / f"node-{node.node_id}"

    def properties(self, node: Node) -> str:
        voters = ",".join(f"{n.node_id}@{self.host}:{n.controller_port}" for n in self.nodes)
        rf, isr = self.replication, self.min_insync
        conf = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{self.host}:{node.port},CONTROLLER://{self.host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.node_dir(node) / "logs",
            "num.partitions": 2,
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "false",
            # A kill -9 of one node of three must hand its partitions over within seconds.
            "broker.session.timeout.ms": 6000,
            "broker.heartbeat.interval.ms": 1000,
        }
        return "".join(f"{k}={v}\n" for k, v in conf.items())

    def _java(self, main: str, *args: str, heap: str = "128m") -> list[str]:
        log4j = self.data_dir / "log4j2.properties"
        return ["java", f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
                "-cp", jvm.classpath(jvm.BROKER), main, *args]

    def _prepare(self) -> None:
        """Write configs; format each node's storage the first time (the cluster id is kept)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        atomic_text(self.data_dir / "log4j2.properties", _LOG4J2)
        for node in self.nodes:
            folder = self.node_dir(node)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_text(folder / "server.properties", self.properties(node))
            if (folder / "logs" / "meta.properties").is_file():
                continue
            out = subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                                            "-c", str(folder / "server.properties")),
                                 capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                raise RuntimeError(f"formatting Kafka storage in {folder} failed: {out.stderr.strip() or out.stdout}")
        state = {"cluster_id": self.cluster_id,
                 "nodes": [{"node_id": n.node_id, "port": n.port, "controller_port": n.controller_port}
                           for n in self.nodes]}
        atomic_text(self.data_dir / STATE_FILE, json.dumps(state, indent=1) + "\n")

    # -- processes ---------------------------------------------------------------------------------------
    def _log_file(self, node: Node):
        if self.log_path is None:
            return subprocess.DEVNULL
        path = self.log_path if self.brokers == 1 else self.log_path.with_name(
            f"{self.log_path.stem}-{node.node_id}{self.log_path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab")  # noqa: SIM115 - owned by the child for its lifetime

    def start_node(self, node_id: int) -> None:
        node = self.nodes[node_id - 1]
        if node.proc and node.proc.poll() is None:
            return
        for port in (node.port, node.controller_port):
            if port_open(port, self.host):
                raise OSError(f"port {port} on {self.host} is already in use: another broker runs with "
                              f"{self.data_dir}, or stop whatever listens there")
        out = self._log_file(node)
        try:
            node.proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self.node_dir(node) / "server.properties"), heap=self.heap),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()

    def start(self, timeout: float = 90.0) -> EmbeddedBroker:
        self._prepare()
        try:
            for node in self.nodes:
                self.start_node(node.node_id)
            self.wait_ready(timeout)
        except BaseException:  # a node that died, a busy port, a timeout: stop the nodes already started
            self.stop()
            raise
        log.info("Kafka %s (%d node(s), pids %s) ready on %s", self.cluster_id, self.brokers,
                 [n.proc.pid for n in self.nodes if n.proc], self.bootstrap)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        wait_ready(self.bootstrap, timeout, self.brokers, self._raise_if_a_node_died)

    def _raise_if_a_node_died(self) -> None:
        dead = [n.node_id for n in self.nodes if n.proc is None or n.proc.poll() is not None]
        if dead:
            raise RuntimeError(f"Kafka node(s) {dead} exited during start-up: see {self.log_path or 'its log'}")

    def create_topics(self, topics: Iterable[str], partitions: int = 1) -> list[str]:
        return ensure_topics(self.bootstrap, topics, partitions, self.replication, self.min_insync)

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown of every node (SIGTERM), SIGKILL for one that does not stop in time."""
        running = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        for node in running:
            node.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        for node in running:
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                node.proc.kill()  # type: ignore[union-attr]
                node.proc.wait(5)  # type: ignore[union-attr]
        for node in self.nodes:
            node.proc = None

    def kill(self, node_id: int | None = None) -> None:
        """SIGKILL one node (default: all), as a crash would."""
        for node in self.nodes if node_id is None else [self.nodes[node_id - 1]]:
            proc, node.proc = node.proc, None
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)

    def restart(self, timeout: float = 90.0) -> EmbeddedBroker:
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
