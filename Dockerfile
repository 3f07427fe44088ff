# One image for every crypto-lambda container in docker-compose.yml: Dagster code server, webserver and
# daemon, the Binance -> Kafka producer, the Spark streaming consumer and (profile spark-cluster) a Spark
# master and worker. One image means the driver and the executors run the same Python, PySpark and project
# code, which PySpark requires (PYSPARK_PYTHON is the driver's interpreter path).
#
# bookworm is pinned because newer Debian releases no longer ship openjdk-17; Spark 4 runs on Java 17/21.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*

# Install exactly requirements.lock (hashes checked, every extra: the image can also run the tests), then the
# project with --no-deps, from a throwaway copy of the source: at runtime the project is imported from
# site-packages only, so config.ensure_dagster_home() finds no top-level dagster.yaml to copy over deploy/'s.
COPY . /tmp/src
RUN python /tmp/src/tools/deps.py install --no-editable && rm -rf /tmp/src

# SPARK_HOME is the pip-installed PySpark: its bin/spark-class runs the standalone master and worker.
# SPARK_CONF_DIR holds image-wide defaults (the Ivy cache below); the project's conf is applied on top.
ENV SPARK_HOME=/usr/local/lib/python3.11/site-packages/pyspark \
    SPARK_CONF_DIR=/opt/spark/conf \
    DAGSTER_HOME=/opt/dagster/home \
    CRYPTO_LAMBDA_HOME=/data/lambda
ENV PATH="${SPARK_HOME}/bin:${PATH}"

# Resolve the Kafka connector (spark.jars.packages) once at build time into a fixed Ivy cache, so the
# streaming consumer starts without reaching Maven Central. Set SPARK_KAFKA_PACKAGE to "" to skip.
ARG SPARK_KAFKA_PACKAGE=org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0
RUN mkdir -p "$SPARK_CONF_DIR" /opt/spark/ivy \
    && echo "spark.jars.ivy /opt/spark/ivy" > "$SPARK_CONF_DIR/spark-defaults.conf" \
    && if [ -n "$SPARK_KAFKA_PACKAGE" ]; then \
         python -c "import sys; from pyspark.sql import SparkSession; \
SparkSession.builder.master('local[1]').config('spark.jars.packages', sys.argv[1]).getOrCreate().stop()" \
         "$SPARK_KAFKA_PACKAGE"; \
       fi

# Run as an unprivileged user; named volumes mounted on these folders inherit the ownership.
RUN useradd --create-home --uid 10001 lambda \
    && mkdir -p "$DAGSTER_HOME/storage" "$CRYPTO_LAMBDA_HOME" /opt/dagster/app \
    && chown -R lambda:lambda /opt/dagster /data /opt/spark/ivy
COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml
COPY deploy/workspace.yaml /opt/dagster/app/workspace.yaml
USER lambda
WORKDIR /opt/dagster/app

# docker-compose.yml sets the command per service; alone, the image runs the Dagster code server.
EXPOSE 4000
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "crypto_assets.definitions", \
     "--location-name", "crypto_lambda"]
