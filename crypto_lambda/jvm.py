"""Where the JVM artifacts of ``jvm/pom.xml`` live once ``make jvm`` has fetched them.

``jvm/lib/kafka-broker`` is the Apache Kafka broker's classpath; ``jvm/lib/spark`` holds the jars Spark loads
with ``spark.jars`` (its Kafka connector), never an Ivy download at run time. An installed (non-editable) copy
of the project, as in the Docker image, points ``CRYPTO_LAMBDA_JVM_LIB`` at its fetched folder.
"""

from __future__ import annotations

import os
from pathlib import Path

JVM_LIB_ENV = "CRYPTO_LAMBDA_JVM_LIB"
BROKER = "kafka-broker"
SPARK = "spark"


def lib_dir() -> Path:
    """``$CRYPTO_LAMBDA_JVM_LIB``, else ``jvm/lib`` beside the project's source."""
    explicit = os.environ.get(JVM_LIB_ENV)
    return Path(explicit) if explicit else Path(__file__).resolve().parent.parent / "jvm" / "lib"


def jars(module: str) -> list[Path]:
    """The fetched jars of one module of jvm/pom.xml, sorted; a clear error when they were never fetched."""
    folder = lib_dir() / module
    found = sorted(folder.glob("*.jar"))
    if not found:
        raise FileNotFoundError(f"no JVM jars in {folder}: run `make jvm` (Maven fetches jvm/pom.xml's artifacts) "
                                f"or point {JVM_LIB_ENV} at a folder holding {BROKER}/ and {SPARK}/")
    return found


def classpath(module: str) -> str:
    return os.pathsep.join(str(p) for p in jars(module))


def spark_jars() -> str:
    """``spark.jars``: the connector jars as local files (comma separated, Spark's format)."""
    return ",".join(str(p) for p in jars(SPARK))
