"""Shared fixtures. One SparkSession per test run (JVM start costs 6-8 s); each test gets its own
CRYPTO_LAMBDA_HOME so nothing leaks between tests or into the working tree."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent.parent / "crypto_lambda" / "sample"
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


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


def temp_instance(folder: Path):
    """A real, persistent Dagster instance in ``folder`` with telemetry off (local_temp ignores dagster.yaml)."""
    import dagster as dg

    folder.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.local_temp(str(folder), overrides={"telemetry": {"enabled": False}})


def shared_data_or_skip() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"optional larger case: {SHARED_DATA} is absent (CI and dev machines have it beside the repo)")
    return SHARED_DATA


os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


# -- headless Chromium (live page and Dagster UI checks) -----------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def chromium_path() -> str:
    """Debian's chromium (or $CHROMIUM). Missing is a FAILURE, not a skip: CI installs it (.ci/run)."""
    wanted = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    found = shutil.which(wanted) or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(f"headless Chromium not found at {wanted} (nor 'chromium' on PATH): install Debian's package "
                    "(apt-get install chromium) or set CHROMIUM=/path/to/chromium", pytrace=False)
    return found


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


