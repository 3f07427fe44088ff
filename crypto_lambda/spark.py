"""The one place that configures Spark, so the batch, speed and query paths share settings and a session.

Spark's fixed costs dominate small jobs here (JVM start 6-8 s on 2 cores), so a process builds at most one
session (``getOrCreate``) and every caller reuses it.
"""

from __future__ import annotations

import os
import sys

LOCAL_SPARK_CONF: dict[str, str] = {
    "spark.master": "local[2]",
    "spark.app.name": "crypto-lambda",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": os.environ.get("SPARK_DRIVER_MEMORY", "2g"),
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    "spark.sql.adaptive.enabled": "true",
    # Delta Lake (jars from jvm/pom.xml): its SQL (OPTIMIZE, VACUUM, DESCRIBE HISTORY, time travel) and the
    # delta catalog for path tables. The local file system's rename is atomic, so the default LogStore is safe.
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Delta rebuilds a table's snapshot after each commit with this many tasks (default 50): on 2 local cores
    # that made a one-day replaceWhere 5.1 s, with 2 it is 1.8 s (tests/integration/test_lake.py's table, warm).
    "spark.databricks.delta.snapshotPartitions": "2",
    # New tables never get deletion vectors, whoever creates them: delta-rs 1.6 cannot read them.
    "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
    # Spark lists more than 32 input paths with a Spark job of one task per path; on a local lake of
    # one file per day that job costs ~5 ms a file (40 s for the 8,109 files of a full rebuild, measured
    # by bench/bench_rebuild.py), while listing them on the driver takes well under a second.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000000",
    # Delta's VACUUM lists a table's folders in a job of this many tasks; Spark's default, 10,000, made VACUUM of
    # a two-folder table 41-62 s on 2 loaded cores, 7-10 s with 2 (tests/integration/test_lake_maintenance.py).
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
    # HotSpot never JIT-compiles a method over 8,000 bytecodes; Spark's generated code for a wide CASE (the
    # speed layer's quarantine reasons) exceeds it and then runs interpreted: 10 us a record of 19 for the
    # whole parse (measured on 400k trades). Lifting the limit halves the streaming parse cost.
    "spark.driver.extraJavaOptions": "-XX:+UseParallelGC -Xss4m -XX:-DontCompileHugeMethods",
    "spark.executor.extraJavaOptions": "-XX:+UseParallelGC -XX:-DontCompileHugeMethods",
}


# Added only when the master is a standalone cluster (``spark://``): what executors in other JVMs need that
# local[N] (executors inside the driver) does not. Executors must fit the workers: ``crypto-lambda cluster up``
# gives each worker 1 GiB and one core, so one 768 MiB executor per worker (the standalone default of one
# executor per worker with all its cores is kept). Everything else (spark.jars as local files, which the
# driver's file server hands to every executor; PYSPARK_PYTHON, which PySpark sends with each task) already
# works as it is. A caller's defaults, CRYPTO_LAMBDA_SPARK_CONF and the caller's extra still win.
CLUSTER_SPARK_CONF: dict[str, str] = {
    "spark.executor.memory": os.environ.get("SPARK_EXECUTOR_MEMORY", "768m"),
}


def prepare_environment() -> None:
    """Env PySpark needs on these machines: the same Python for workers, loopback only."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


SPARK_CONF_ENV = "CRYPTO_LAMBDA_SPARK_CONF"


def env_spark_conf(text: str | None = None) -> dict[str, str]:
    """Spark settings from ``$CRYPTO_LAMBDA_SPARK_CONF``: ``key=value`` entries separated by ``;`` or newlines.

    A deployment has to change settings the local defaults pin (``spark.driver.host`` and
    ``spark.driver.bindAddress`` are loopback, which executors on a real cluster cannot reach; memory;
    the Ivy cache) without editing code, and compose/.env files can only pass strings. Only ``spark.*`` keys
    are accepted, so a typo fails loudly instead of being ignored by Spark.
    """
    text = os.environ.get(SPARK_CONF_ENV, "") if text is None else text
    conf: dict[str, str] = {}
    for entry in text.replace("\n", ";").split(";"):
        entry = entry.strip()
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.startswith("spark.") or not value:
            raise ValueError(f"{SPARK_CONF_ENV}: entry {entry!r} is not spark.<key>=<value> "
                             "(entries are separated by ';' or newlines)")
        conf[key] = value
    return conf


def spark_conf(extra: dict[str, str] | None = None, defaults: dict[str, str] | None = None) -> dict[str, str]:
    """Local defaults (with ``spark.jars``: the locked connector jars as local files), then a caller's
    ``defaults`` (e.g. the streaming consumer's master), then the environment (SPARK_MASTER,
    CRYPTO_LAMBDA_SPARK_CONF), then ``extra``: the deployment overrides the laptop defaults, and a caller's
    explicit settings win over both. A ``spark://`` master adds :data:`CLUSTER_SPARK_CONF` (below the
    environment and ``extra``)."""
    from crypto_lambda import jvm

    conf = dict(LOCAL_SPARK_CONF)
    conf["spark.jars"] = jvm.spark_jars()
    conf.update(defaults or {})
    if os.environ.get("SPARK_MASTER"):
        conf["spark.master"] = os.environ["SPARK_MASTER"]
    env_conf = env_spark_conf()
    if {**conf, **env_conf, **(extra or {})}["spark.master"].startswith("spark://"):
        conf.update({k: v for k, v in CLUSTER_SPARK_CONF.items() if k not in (defaults or {})})
    conf.update(env_conf)
    conf.update(extra or {})
    return conf


def home_scratch_conf() -> dict[str, str]:
    """Spark's warehouse (CREATE TABLE) and scratch space under CRYPTO_LAMBDA_HOME: Spark's defaults are
    ``./spark-warehouse`` in whatever folder a command runs in and /tmp."""
    from crypto_lambda.config import home_dir

    root = home_dir() / "spark"
    os.environ.setdefault("SPARK_LOCAL_DIRS", str(root / "scratch"))  # spark.local.dir, without Spark's warning
    return {"spark.sql.warehouse.dir": str(root / "warehouse")}


def get_spark(extra: dict[str, str] | None = None, defaults: dict[str, str] | None = None):
    """Return the process's SparkSession, creating it once (a later call's static settings are ignored)."""
    prepare_environment()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in spark_conf(extra, {**home_scratch_conf(), **(defaults or {})}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
