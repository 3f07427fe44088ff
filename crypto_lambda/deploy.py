"""Every environment variable of a deployment, in one list: its name, default and who reads it.

The same names appear in the code (``os.environ`` reads), ``docker-compose.yml``, ``.env.example``,
``deploy/dagster.yaml`` and the README. ``tests/integration/test_deploy.py`` fails when any of them uses a name
this list does not know, or when a name here is read or documented nowhere, so a rename in one place cannot
silently leave another behind. The Kafka replication rule lives here too: the embedded 3-node cluster and the
compose cluster are sized by the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# "setting": read by the project's code, a user's knob (README "Configuration" and compose document it).
# "compose": read by docker-compose.yml itself (interpolation) or by a third-party image, never by our code.
# "internal": read by the code, but set by the project for itself (child processes, tests), not a knob.
Scope = Literal["setting", "compose", "internal"]


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str
    scope: Scope
    doc: str


ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("CRYPTO_LAMBDA_HOME", "./.lambda_home", "setting", "all runtime state (lake, checkpoints, DAGSTER_HOME)"),
    EnvVar("CRYPTO_LAMBDA_SYMBOLS", "BTCUSDT,ETHUSDT", "setting", "symbols (daily x symbol partitions)"),
    EnvVar("CRYPTO_LAMBDA_START", "2017-08-17", "setting", "first day of daily history"),
    EnvVar("CRYPTO_LAMBDA_MINUTE_START", "", "setting", "first day of 1-minute partitions"),
    EnvVar("CRYPTO_LAMBDA_AUTOMATION", "", "setting", "'on': schedules and sensors start RUNNING"),
    EnvVar("CRYPTO_LAMBDA_SPARK_CONF", "", "setting", "extra spark.key=value;... settings, win over the defaults"),
    EnvVar("CRYPTO_LAMBDA_JVM_LIB", "jvm/lib", "setting", "folder of the locked JVM jars (Kafka, connectors, Delta)"),
    EnvVar("CRYPTO_LAMBDA_KAFKA_HEAP", "256m", "setting", "heap of each embedded Kafka node"),
    EnvVar("CRYPTO_LAMBDA_RUN_LOG_LEVEL", "INFO", "setting", "log level of Dagster runs started by `backfill`"),
    EnvVar("BINANCE_API_URL", "https://api.binance.com", "setting", "REST base URL"),
    EnvVar("BINANCE_WS_URL", "wss://stream.binance.com:9443", "setting", "WebSocket base URL"),
    EnvVar("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "setting", "Kafka bootstrap servers, comma separated"),
    EnvVar("KAFKA_TOPIC_PREFIX", "binance", "setting", "topics are <prefix>.trades/.klines/.gaps"),
    EnvVar("SPARK_MASTER", "local[2]", "setting", "Spark master URL (spark://host:7077 for a cluster)"),
    EnvVar("SPARK_DRIVER_MEMORY", "2g", "setting", "Spark driver memory"),
    EnvVar("SPARK_EXECUTOR_MEMORY", "768m", "setting", "executor memory with a spark:// master (fits a 1g worker)"),
    EnvVar("SPARK_WORKER_OPTS", "", "setting", "Spark's own: extra -D options of `crypto-lambda cluster up`'s workers"),
    EnvVar("DAGSTER_HOME", "$CRYPTO_LAMBDA_HOME/dagster", "setting", "Dagster instance folder (its dagster.yaml)"),
    EnvVar("DAGSTER_PG_HOST", "", "setting", "Postgres host of deploy/dagster.yaml"),
    EnvVar("DAGSTER_PG_PORT", "5432", "setting", "Postgres port of deploy/dagster.yaml"),
    EnvVar("DAGSTER_PG_USER", "dagster", "setting", "Postgres role of deploy/dagster.yaml"),
    EnvVar("DAGSTER_PG_PASSWORD", "", "setting", "Postgres password of deploy/dagster.yaml (no default)"),
    EnvVar("DAGSTER_PG_DB", "dagster", "setting", "Postgres database of deploy/dagster.yaml"),
    EnvVar("REPLAY_WS_SPEED", "1", "setting", "replay exchange: recorded ms per wall ms of the WebSocket replay"),
    EnvVar("REPLAY_WS_START_MS", "", "setting", "replay exchange: recorded instant the WebSocket replay starts at"),
    EnvVar("REPLAY_WS_TRADES_PER_MINUTE", "40", "setting", "replay exchange: synthetic trades per minute and symbol"),
    EnvVar("POSTGRES_USER", "dagster", "compose", "role of the postgres service"),
    EnvVar("POSTGRES_PASSWORD", "", "compose", "password of the postgres service (required)"),
    EnvVar("POSTGRES_DB", "dagster", "compose", "database of the postgres service"),
    EnvVar("CRYPTO_LAMBDA_IMAGE_TAG", "local", "compose", "tag of the project image"),
    EnvVar("KAFKA_IMAGE_TAG", "4.1.1", "compose", "apache/kafka image tag (= the pom's Kafka version)"),
    EnvVar("POSTGRES_IMAGE_TAG", "16", "compose", "postgres image tag"),
    EnvVar("KAFKA_CLUSTER_ID", "82QHI_xoXb63WMBhJCYGyA", "compose", "KRaft cluster id of the compose Kafka"),
    EnvVar("KAFKA_PARTITIONS", "2", "compose", "partitions of each topic kafka-init creates"),
    EnvVar("KAFKA_REPLICATION_FACTOR", "3", "compose", "replicas of each topic (kafka_replication)"),
    EnvVar("KAFKA_MIN_INSYNC_REPLICAS", "2", "compose", "min.insync.replicas of each topic (kafka_replication)"),
    EnvVar("STREAM_SPARK_CONF", "", "compose", "extra Spark settings of the stream-consumer service"),
    EnvVar("BATCH_SPARK_CONF", "", "compose", "extra Spark settings of Dagster's runs (dagster-code)"),
    EnvVar("SPARK_WORKER_CORES", "2", "compose", "cores of each Spark worker"),
    EnvVar("SPARK_WORKER_MEMORY", "2g", "compose", "memory of each Spark worker"),
    EnvVar("PYSPARK_PYTHON", "sys.executable", "internal", "executors' Python: the driver's"),
    EnvVar("PYSPARK_DRIVER_PYTHON", "sys.executable", "internal", "the driver's Python"),
    EnvVar("SPARK_LOCAL_IP", "127.0.0.1", "internal", "Spark binds loopback unless told otherwise"),
    EnvVar("SPARK_LOCAL_DIRS", "$CRYPTO_LAMBDA_HOME/spark/scratch", "internal", "Spark scratch space"),
    EnvVar("CRYPTO_LAMBDA_STACK_ID", "", "internal", "marks the processes `crypto-lambda up` started"),
    EnvVar("CRYPTO_LAMBDA_STACK_COMPONENT", "", "internal", "... and which component each belongs to"),
)
BY_NAME: dict[str, EnvVar] = {v.name: v for v in ENV_VARS}


def names(*scopes: Scope) -> set[str]:
    return {v.name for v in ENV_VARS if v.scope in scopes}


# The deployment's Kafka: three KRaft nodes (docker-compose.yml, and EmbeddedBroker(brokers=3) in the tests).
KAFKA_BROKERS = 3


@dataclass(frozen=True)
class KafkaReplication:
    factor: int
    min_insync: int


def kafka_replication(brokers: int) -> KafkaReplication:
    """Three replicas and two in sync once there are three brokers: a write acked with ``acks=all`` survives the
    loss of any one node, and one node may be down without stopping writes. Fewer brokers hold what they can."""
    return KafkaReplication(factor=min(3, brokers), min_insync=2 if brokers >= 3 else 1)
