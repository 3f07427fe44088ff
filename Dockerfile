# One image for every crypto-lambda container in docker-compose.yml: Dagster code server, webserver and
# daemon, the Binance -> Kafka producer, the Spark streaming consumer and (profile spark-cluster) a Spark
# master and worker. One image means the driver and the executors run the same Python, PySpark and project
# code, which PySpark requires (PYSPARK_PYTHON is the driver's interpreter path).
#
# bookworm is pinned because newer Debian releases no longer ship openjdk-17; Spark 4 runs on Java 17/21.
# The JVM artifacts come from the same committed Maven project as on a laptop (jvm/pom.xml, exact versions,
# checksums enforced), resolved in a build stage so Maven stays out of the runtime image.
FROM maven:3.9.9-eclipse-temurin-17 AS jvm
COPY jvm /src/jvm
RUN mvn -B -q -C -f /src/jvm/pom.xml package

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
# SPARK_CONF_DIR is for image-wide defaults; the project's conf is applied on top.
ENV SPARK_HOME=/usr/local/lib/python3.11/site-packages/pyspark \
    SPARK_CONF_DIR=/opt/spark/conf \
    DAGSTER_HOME=/opt/dagster/home \
    CRYPTO_LAMBDA_HOME=/data/lambda
ENV PATH="${SPARK_HOME}/bin:${PATH}"

# Spark's Kafka connector and the Kafka broker's classpath (crypto_lambda/jvm.py reads CRYPTO_LAMBDA_JVM_LIB);
# Spark loads the connector as local files (spark.jars), so nothing is downloaded when a container starts.
COPY --from=jvm /src/jvm/lib /opt/crypto-lambda/jvm/lib
ENV CRYPTO_LAMBDA_JVM_LIB=/opt/crypto-lambda/jvm/lib
RUN mkdir -p "$SPARK_CONF_DIR"

# Run as an unprivileged user; named volumes mounted on these folders inherit the ownership.
RUN useradd --create-home --uid 10001 lambda \
    && mkdir -p "$DAGSTER_HOME/storage" "$CRYPTO_LAMBDA_HOME" /opt/dagster/app \
    && chown -R lambda:lambda /opt/dagster /data
COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml
COPY deploy/workspace.yaml /opt/dagster/app/workspace.yaml
USER lambda
WORKDIR /opt/dagster/app

# docker-compose.yml sets the command per service; alone, the image runs the Dagster code server.
EXPOSE 4000
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "crypto_assets.definitions", \
     "--location-name", "crypto_lambda"]
