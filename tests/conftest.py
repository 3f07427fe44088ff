"""Shared fixtures, and the test tiers. One SparkSession per test run (JVM start costs 6-8 s); each test gets its
own CRYPTO_LAMBDA_HOME so nothing leaks between tests or into the working tree.

Tiers mirror the layers (README "Architecture"): ``tests/unit`` (one module's behaviour; no JVM, broker,
browser or child process stack: ``make test-fast``, under a minute), ``tests/integration`` (one real
component: Spark, Delta, Kafka, Dagster runs, Postgres, docker-compose) and ``tests/e2e`` (the processes
together: CLI subprocesses, the stack, the pipeline, Chromium). Each test gets its folder's marker; a unit test
that asks for a heavy fixture is a collection error, so the fast tier stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import REPO, SAMPLE, chromium_path

TIERS = ("unit", "integration", "e2e")
HEAVY_FIXTURES = {"spark", "broker", "chromium", "postgres"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misplaced = []
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier not in TIERS:
            misplaced.append(f"{item.nodeid}: not under tests/unit, tests/integration or tests/e2e")
            continue
        item.add_marker(getattr(pytest.mark, tier))
        heavy = HEAVY_FIXTURES & set(getattr(item, "fixturenames", ()))
        if tier == "unit" and heavy:
            misplaced.append(f"{item.nodeid}: a unit test uses {', '.join(sorted(heavy))}; move it to "
                             "tests/integration")
    if misplaced:
        raise pytest.UsageError("tests in the wrong tier:\n  " + "\n  ".join(misplaced))


@pytest.fixture(scope="session")
def spark():
    from crypto_lambda.spark import get_spark

    session = get_spark()
    yield session


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory):
    """One Apache Kafka node (KRaft, on-disk) for every test that only produces and consumes; tests give their
    topics their own prefix. Tests that stop, kill or restart a broker start their own."""
    from streaming_service.broker import EmbeddedBroker

    folder = tmp_path_factory.mktemp("kafka")
    with EmbeddedBroker(folder / "data", log_path=folder / "kafka.log") as running:
        yield running


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL server for the session (Debian's binaries, 127.0.0.1 on a free port, scram with a
    generated password; 1.4 s to start): a ``PostgresServer`` whose ``dagster`` role owns the ``dagster``
    database. ``support.dagster_pg_env`` turns it into the DAGSTER_PG_* environment deploy/dagster.yaml reads."""
    from tests.support import postgres_server

    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def recording():
    """The shipped real sample, unshifted (tests that need "today" build their own shifted one)."""
    from replay_exchange.recording import Recording

    return Recording.from_sample()


@pytest.fixture(scope="session")
def server(recording):
    """One replay exchange on a free loopback port for every test that only reads from it."""
    from replay_exchange.server import ReplayServer

    with ReplayServer(recording) as srv:
        yield srv


@pytest.fixture(scope="session")
def today_server():
    """One replay exchange serving the sample shifted so it ends today (``.recording`` has the shift), for every
    test that backfills "up to yesterday" through Dagster and only reads from it."""
    from replay_exchange.recording import Recording
    from replay_exchange.server import ReplayServer

    with ReplayServer(Recording.from_sample(shift_to_today=True)) as srv:
        yield srv


@pytest.fixture()
def lambda_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CRYPTO_LAMBDA_HOME", str(home))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return home


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


# -- headless Chromium (live page and Dagster UI checks) -----------------------------------------------------

@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium driven by Playwright's Python client. Playwright's own browser download is not
    used (no internet): it drives the system chromium through ``executable_path``. Module scope keeps the
    sync API's event loop from outliving the tests that need it."""
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the 'playwright' Python package is missing: pip install -e '.[dev]'", pytrace=False)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots kept after the run: $CRYPTO_LAMBDA_ARTIFACTS, else ``artifacts/`` in the repo (gitignored)."""
    folder = Path(os.environ.get("CRYPTO_LAMBDA_ARTIFACTS") or REPO / "artifacts").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- forecasts on the shipped sample (computed once per run: the unit and the integration tier both use them) --

@pytest.fixture(scope="session")
def realized():
    """Daily realized variance of each sample symbol, from its 1-minute bars."""
    from crypto_lambda.volatility import realized_by_day, sample_minutes
    from tests.support import VOL_SYMBOLS

    return {s: realized_by_day(sample_minutes(s)) for s in VOL_SYMBOLS}


@pytest.fixture(scope="session")
def results(realized):
    """Price and volatility forecasts of both sample symbols under the small CV config."""
    from crypto_lambda.forecast.pipeline import run_forecasts, sample_daily
    from tests.support import VOL_SMALL, VOL_SYMBOLS

    return run_forecasts({s: sample_daily(s) for s in VOL_SYMBOLS}, VOL_SMALL, realized=realized)
