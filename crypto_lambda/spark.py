"""The one place that configures Spark, so the batch, speed and query paths share settings and a session.

Spark's fixed costs dominate small jobs here (JVM start 6-8 s on 2 cores), so a process builds at most one
session (``getOrCreate``) and every caller reuses it.
"""

from __future__ import annotations

import os
import sys

LOCAL_SPARK_CONF: dict[str, str] = {
    "spark.master": os.environ.get("SPARK_MASTER", "local[2]"),
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
    # Spark lists more than 32 input paths with a Spark job of one task per path; on a local lake of
    # one file per day that job costs ~5 ms a file (40 s for the 8,109 files of a full rebuild, measured
    # by bench/bench_rebuild.py), while listing them on the driver takes well under a second.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000000",
    "spark.driver.extraJavaOptions": "-XX:+UseParallelGC -Xss4m",
    "spark.executor.extraJavaOptions": "-XX:+UseParallelGC",
}


def prepare_environment() -> None:
    """Env PySpark needs on these machines: the same Python for workers, loopback only."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def spark_conf(extra: dict[str, str] | None = None) -> dict[str, str]:
    conf = dict(LOCAL_SPARK_CONF)
    packages = os.environ.get("SPARK_JARS_PACKAGES")
    if packages:
        conf["spark.jars.packages"] = packages
    conf.update(extra or {})
    return conf


def get_spark(extra: dict[str, str] | None = None):
    """Return the process's SparkSession, creating it once."""
    prepare_environment()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in spark_conf(extra).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
