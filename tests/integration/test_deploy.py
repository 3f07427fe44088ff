"""The docker-compose deployment, checked without a container engine.

CI has no Docker engine, but ``docker-compose config`` parses, interpolates and validates the compose file
on its own, and Dagster can validate its instance and workspace YAML against its own schemas. So these
tests catch what would otherwise only fail on ``docker-compose up``: a missing service or healthcheck, a
port published on every interface, a Kafka connector built for another Spark, a password in the file,
an instance config that needs an env var compose does not set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import yaml_leaves

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
PLACEHOLDER_PASSWORD = "only-for-test-deploy"  # never in a file: passed to docker-compose through its env
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
EXPECTED_SERVICES = {*KAFKA_NODES, "kafka-init", "postgres", "dagster-code", "dagster-webserver", "dagster-daemon",
                     "stream-producer", "stream-consumer", "spark-master", "spark-worker"}
GRPC_SERVICE = "dagster-code"


def _docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail("docker-compose is not installed, so docker-compose.yml cannot be validated: "
                    "install it (Debian: `apt-get install docker-compose`; no Docker engine is needed)")
    return path


def _run_compose_config(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` with only the env given: no host .env or exported variable leaks in."""
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **env}
    return subprocess.run([_docker_compose(), "-f", str(COMPOSE), "--env-file", str(empty_env_file), "config"],
                          cwd=ROOT, env=clean_env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = _run_compose_config(tmp_path_factory.mktemp("compose"), POSTGRES_PASSWORD=PLACEHOLDER_PASSWORD)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def test_compose_file_validates_with_all_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == EXPECTED_SERVICES
    # The optional Spark cluster must not start unless asked for.
    for name in ("spark-master", "spark-worker"):
        assert compose["services"][name].get("profiles") == ["spark-cluster"]
    # No `version:` key in the source: Compose v2 warns on it, 1.29 reads the Compose Specification without it.
    assert "version" not in yaml.safe_load(COMPOSE.read_text())


def test_compose_refuses_to_start_without_postgres_password(tmp_path: Path) -> None:
    result = _run_compose_config(tmp_path)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_published_ports_bind_loopback_only(compose: dict[str, Any]) -> None:
    published = {}
    for name, service in compose["services"].items():
        for port in service.get("ports") or []:
            if isinstance(port, dict):  # long syntax (Compose v2 output)
                host_ip = port.get("host_ip")
            else:  # "127.0.0.1:3000:3000/tcp" (docker-compose 1.29 output)
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else None
            assert host_ip == "127.0.0.1", f"{name} publishes {port!r} beyond loopback"
            published.setdefault(name, []).append(port)
    assert {"dagster-webserver", *KAFKA_NODES, "spark-master"} <= set(published)
    assert "postgres" not in published  # only the compose network reaches the database


def test_every_healthy_dependency_has_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if spec.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; it has no check"
    for name in ("dagster-webserver", "dagster-daemon"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["depends_on"][GRPC_SERVICE]["condition"] == "service_healthy"
    for name in ("stream-producer", "stream-consumer"):
        assert services[name]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    for node in KAFKA_NODES:
        assert services["kafka-init"]["depends_on"][node]["condition"] == "service_healthy"


def test_kafka_is_a_three_node_kraft_quorum_sized_by_the_code(compose: dict[str, Any]) -> None:
    """Three broker+controller nodes, each in the quorum, with the replication the code's rule gives three brokers
    (the rule EmbeddedBroker(brokers=3) uses in tests/integration/test_kafka.py), for the internal topics too."""
    from crypto_lambda.deploy import KAFKA_BROKERS, kafka_replication

    want = kafka_replication(KAFKA_BROKERS)
    envs = [_env(compose["services"][name]) for name in KAFKA_NODES]
    assert len(envs) == KAFKA_BROKERS == 3
    assert sorted(int(env["KAFKA_NODE_ID"]) for env in envs) == [1, 2, 3]
    voters = {f"{env['KAFKA_NODE_ID']}@{name}:9093" for name, env in zip(KAFKA_NODES, envs, strict=True)}
    external = set()
    for name, env in zip(KAFKA_NODES, envs, strict=True):
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
        listeners = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
        assert f"PLAINTEXT://{name}:9092" in listeners
        external |= {item for item in listeners if item.startswith("EXTERNAL://")}
        assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
        for key in ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
            assert int(env[key]) == want.factor, (name, key)
        for key in ("KAFKA_MIN_INSYNC_REPLICAS", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
            assert int(env[key]) == want.min_insync, (name, key)
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
        # Kafka parses CLUSTER_ID as a UUID: 22 characters of URL-safe base64 (16 bytes); one id for all nodes.
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    assert len({env["CLUSTER_ID"] for env in envs}) == 1
    assert len(external) == 3  # each node advertises its own host port
    init = _env(compose["services"]["kafka-init"])
    assert (int(init["KAFKA_REPLICATION_FACTOR"]), int(init["KAFKA_MIN_INSYNC_REPLICAS"])) == (want.factor,
                                                                                              want.min_insync)
    assert "min.insync.replicas=$$KAFKA_MIN_INSYNC_REPLICAS" in " ".join(_command(compose["services"]["kafka-init"]))
    assert set(init["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == {f"{n}:9092" for n in KAFKA_NODES}


def test_producer_and_consumer_use_compose_kafka_and_real_binance(compose: dict[str, Any]) -> None:
    producer, consumer = compose["services"]["stream-producer"], compose["services"]["stream-consumer"]
    assert _command(producer)[:3] == ["crypto-lambda", "stream", "produce"]
    assert _command(consumer)[:3] == ["crypto-lambda", "stream", "consume"]
    for service in (producer, consumer):
        assert _env(service)["KAFKA_BOOTSTRAP_SERVERS"] == ",".join(f"{n}:9092" for n in KAFKA_NODES)
        assert _env(service)["CRYPTO_LAMBDA_HOME"] == "/data/lambda"
        assert any(str(v).startswith("lake:/data/lambda") for v in service["volumes"])
    assert _env(producer)["BINANCE_WS_URL"] == "wss://stream.binance.com:9443"


def test_dagster_code_server_starts_schedules_and_sensors(compose: dict[str, Any]) -> None:
    from crypto_lambda.config import AUTOMATION_ENV

    # default_status is decided where the definitions load: the code server the daemon and webserver query
    assert _env(compose["services"]["dagster-code"])[AUTOMATION_ENV] == "on"


def _pom_property(name: str) -> str:
    text = (ROOT / "jvm" / "pom.xml").read_text()
    match = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", text)
    assert match, f"jvm/pom.xml has no <{name}>"
    return match.group(1)


def test_jvm_artifacts_match_pyspark_and_compose(compose: dict[str, Any]) -> None:
    """The connector is built for the installed PySpark (same Spark, same Scala), compose runs the broker
    version the embedded one runs, and the image takes its jars from the same pom."""
    import pyspark

    assert _pom_property("spark.version") == pyspark.__version__
    jars = Path(pyspark.__file__).parent / "jars"
    scala = {m.group(1) for jar in jars.glob("spark-core_*.jar")
             if (m := re.match(r"spark-core_(\d+\.\d+)-", jar.name))}
    assert scala == {_pom_property("scala.binary.version")}
    kafka = _pom_property("kafka.version")
    for name in (*KAFKA_NODES, "kafka-init"):
        assert compose["services"][name]["image"] == f"apache/kafka:{kafka}"
    consumer = compose["services"]["stream-consumer"]
    assert _command(consumer) == ["crypto-lambda", "stream", "consume"]
    assert "SPARK_JARS_PACKAGES" not in _env(consumer)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "mvn -B -q -C -f /src/jvm/pom.xml package" in dockerfile
    assert "ENV CRYPTO_LAMBDA_JVM_LIB=/opt/crypto-lambda/jvm/lib" in dockerfile


def _artifact(jar: Path) -> str:
    """``delta-spark_2.13-4.4.0.jar`` -> ``delta-spark_2.13``: the name without its version."""
    return re.sub(r"-(\d+\.)+\d+[\w.-]*$", "", jar.stem)


def test_spark_jars_never_duplicate_what_pyspark_ships() -> None:
    """Two versions of one artifact on a classpath fail at run time, not at install: the Kafka connector and
    Delta Lake come without the jars pyspark/jars already has (the exclusions in jvm/spark/pom.xml)."""
    import pyspark

    from crypto_lambda import jvm

    ours = {_artifact(j) for j in jvm.jars(jvm.SPARK)}
    shipped = {_artifact(j) for j in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    assert {"delta-spark_2.13", "delta-storage", "spark-sql-kafka-0-10_2.13"} <= ours
    assert not ours & shipped


def test_consumer_spark_conf_is_accepted_by_spark_py(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from crypto_lambda import jvm, spark

    for name in ("stream-consumer", GRPC_SERVICE):
        env = _env(compose["services"][name])
        monkeypatch.setenv(spark.SPARK_CONF_ENV, env[spark.SPARK_CONF_ENV])
        conf = spark.spark_conf()
        # Executors on spark://spark-master:7077 connect back to the driver by this name.
        assert conf["spark.driver.host"] == compose["services"][name]["hostname"]
        assert conf["spark.driver.bindAddress"] == "0.0.0.0"
        # Every session loads the locked connector jars as local files, never an Ivy download.
        assert "spark.jars.packages" not in conf
        assert conf["spark.jars"].split(",") == [str(p) for p in jvm.jars(jvm.SPARK)]


def test_no_plaintext_passwords_in_deployment_files() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    secret_keys = [(p, v) for p, v in yaml_leaves(raw)
                   if re.search(r"PASSWORD|SECRET|TOKEN", p.rsplit(".", 1)[-1], re.I)]
    assert secret_keys, "expected the Postgres password to be passed somewhere"
    for path, value in secret_keys:
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), f"{path} is {value!r}: must be ${{VAR:?message}}"
    # Dagster reads its password from the environment, and the example env file leaves it empty.
    pg = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["storage"]["postgres"]["postgres_db"]
    assert pg["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example == {"POSTGRES_PASSWORD": ""}
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".lambda_home", ".git"} <= set(ignored)


def test_postgres_dagster_yaml_is_a_valid_instance_config(compose: dict[str, Any], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Schema-validate deploy/dagster.yaml as Dagster loads it, then resolve its env-sourced fields with the
    env compose gives the Dagster containers: a variable compose forgets fails here, not in the daemon."""
    from dagster._config import convert_potential_field, process_config
    from dagster._core.instance.config import dagster_instance_config, pg_config
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.run_coordinator import QueuedRunCoordinator

    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    assert config["telemetry"] == {"enabled": False} and config["nux"] == {"enabled": False}
    ref = InstanceRef.from_dir(str(tmp_path))
    assert (ref.storage_data.module_name, ref.storage_data.class_name) == ("dagster_postgres", "DagsterPostgresStorage")
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"

    for name in (GRPC_SERVICE, "dagster-webserver", "dagster-daemon"):
        env = _env(compose["services"][name])
        for key in [k for k in os.environ if k.startswith("DAGSTER_PG_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith("DAGSTER_PG_"):
                monkeypatch.setenv(key, value)
        storage = process_config(convert_potential_field(pg_config()).config_type, config["storage"]["postgres"])
        assert storage.success, f"{name}: {storage.errors}"
        db = storage.value["postgres_db"]
        assert (db["hostname"], db["port"], db["password"]) == ("postgres", 5432, PLACEHOLDER_PASSWORD)
        # dagster-postgres installs psycopg2; SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3.
        assert db["scheme"] == "postgresql+psycopg2"
        assert db["username"] == _env(compose["services"]["postgres"])["POSTGRES_USER"]
        assert db["db_name"] == _env(compose["services"]["postgres"])["POSTGRES_DB"]
    coordinator = process_config(QueuedRunCoordinator.config_type(), config["run_coordinator"]["config"])
    assert coordinator.success, coordinator.errors


def test_deploy_workspace_points_at_the_grpc_service(compose: dict[str, Any]) -> None:
    from dagster._core.workspace.config_schema import ensure_workspace_config

    path = DEPLOY / "workspace.yaml"
    workspace = ensure_workspace_config(yaml.safe_load(path.read_text()), str(path))
    (entry,) = workspace["load_from"]
    grpc = entry["grpc_server"]
    assert grpc["host"] == GRPC_SERVICE
    command = _command(compose["services"][GRPC_SERVICE])
    assert command[:3] == ["dagster", "api", "grpc"]
    assert command[command.index("-p") + 1] == str(grpc["port"])
    assert command[command.index("-m") + 1] == "crypto_assets.definitions"
    assert command[command.index("-h") + 1] == "0.0.0.0"  # reachable from webserver and daemon
    location = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["code_location_name"]
    assert grpc["location_name"] == location == command[command.index("--location-name") + 1]
    # Webserver and daemon load this workspace (baked into the image by the Dockerfile).
    for name in ("dagster-webserver", "dagster-daemon"):
        assert "/opt/dagster/app/workspace.yaml" in _command(compose["services"][name])
    assert "COPY deploy/workspace.yaml /opt/dagster/app/workspace.yaml" in (ROOT / "Dockerfile").read_text()


def test_dagster_family_is_pinned_together_and_the_image_installs_the_lock() -> None:
    """Dagster's libraries are versioned 0.(minor+16).patch alongside dagster 1.minor.patch."""
    import dagster
    from packaging.requirements import Requirement

    major, minor, patch = (int(x) for x in dagster.__version__.split(".")[:3])
    assert major == 1
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["deploy"]]
    pins = {r.name: str(r.specifier) for r in reqs if r.name.startswith("dagster")}
    assert pins == {"dagster": f"=={dagster.__version__}", "dagster-webserver": f"=={dagster.__version__}",
                    "dagster-pyspark": f"==0.{minor + 16}.{patch}", "dagster-postgres": f"==0.{minor + 16}.{patch}"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert "openjdk-17-jre-headless" in dockerfile and "tools/deps.py install --no-editable" in dockerfile


def test_env_spark_conf_parses_and_rejects(monkeypatch: pytest.MonkeyPatch) -> None:
    from crypto_lambda import jvm, spark

    assert spark.env_spark_conf("") == {}
    assert spark.env_spark_conf("spark.master=spark://m:7077; spark.executor.memory=4g;\nspark.a.b=x=y;") == {
        "spark.master": "spark://m:7077", "spark.executor.memory": "4g", "spark.a.b": "x=y"}
    for bad in ("master=local[2]", "spark.master", "spark.master="):
        with pytest.raises(ValueError, match=spark.SPARK_CONF_ENV):
            spark.env_spark_conf(bad)

    # Precedence: local defaults < SPARK_MASTER < CRYPTO_LAMBDA_SPARK_CONF < the caller's extra.
    monkeypatch.setenv(spark.SPARK_CONF_ENV, "spark.driver.host=h;spark.sql.shuffle.partitions=8")
    conf = spark.spark_conf({"spark.sql.shuffle.partitions": "2"})
    assert conf["spark.driver.host"] == "h"
    assert conf["spark.sql.shuffle.partitions"] == "2"
    assert conf["spark.app.name"] == spark.LOCAL_SPARK_CONF["spark.app.name"]
    monkeypatch.delenv(spark.SPARK_CONF_ENV)
    monkeypatch.delenv("SPARK_MASTER", raising=False)
    assert spark.spark_conf() == {**spark.LOCAL_SPARK_CONF, "spark.jars": jvm.spark_jars()}
    # A caller's defaults (the consumer's task slots) beat the local ones and lose to the environment.
    assert spark.spark_conf(defaults={"spark.master": "local[4]"})["spark.master"] == "local[4]"
    monkeypatch.setenv("SPARK_MASTER", "spark://m:7077")
    assert spark.spark_conf(defaults={"spark.master": "local[4]"})["spark.master"] == "spark://m:7077"
