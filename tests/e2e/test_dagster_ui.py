"""The Dagster UI in headless Chromium: a real ``dagster-webserver`` over a real instance in which a couple of
batch partitions were materialized (replay exchange + Spark). The browser must find every asset of the
definitions in the asset graph, the materialized partitions of ``raw_klines_1m`` and every asset check by
name. Screenshots are kept in the artifacts folder (gitignored)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from crypto_lambda.config import load_settings
from crypto_lambda.machine import free_port
from crypto_lambda.timeutil import yesterday_utc
from tests.support import temp_instance

pytestmark = pytest.mark.timeout(300)
MINUTE_DAYS = 2
PARTITIONED = "raw_klines_1m"
LOCATION = "crypto_assets.definitions"  # dagster-webserver -m names the code location after the module
LOCATION_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus " \
                 "locationOrLoadError { __typename ... on PythonError { message } } } } } }"


def wait_for_webserver(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> None:
    """Until /server_info answers and the code location has LOADED (the UI is empty before that)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                answer = requests.post(f"{url}/graphql", json={"query": LOCATION_QUERY}, timeout=10).json()
                entries = answer["data"]["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                    assert not errors, errors
                    return
        except (requests.RequestException, KeyError, TypeError, ValueError):
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver not ready after {timeout_s}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, spark, today_server):
    """Backfills the last MINUTE_DAYS days x 2 symbols (one minutes run, one series run) into a temp instance,
    then serves that instance with dagster-webserver on a free loopback port, with the same settings."""
    from crypto_assets.backfill import run_backfill
    from crypto_assets.definitions import build_defs
    root = tmp_path_factory.mktemp("ui")
    home, dagster_home = root / "home", root / "home" / "dagster"
    last = yesterday_utc()
    env = {"CRYPTO_LAMBDA_HOME": str(home), "DAGSTER_HOME": str(dagster_home),
           "CRYPTO_LAMBDA_SYMBOLS": "BTCUSDT,ETHUSDT",
           "CRYPTO_LAMBDA_START": (last - dt.timedelta(days=MINUTE_DAYS + 1)).isoformat(),
           "CRYPTO_LAMBDA_MINUTE_START": (last - dt.timedelta(days=MINUTE_DAYS - 1)).isoformat()}
    with pytest.MonkeyPatch.context() as mp:
        env["BINANCE_API_URL"] = today_server.url
        for key, value in env.items():
            mp.setenv(key, value)
        settings = load_settings()
        defs = build_defs(settings)
        dagster_home.mkdir(parents=True)
        (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
        instance = temp_instance(dagster_home)
        outcome = run_backfill(defs, settings, instance)
        assert outcome.success and outcome.partitions == MINUTE_DAYS * 2, outcome

        port = free_port()
        log = root / "webserver.log"
        webserver = Path(sys.executable).with_name("dagster-webserver")
        with log.open("w") as out:
            proc = subprocess.Popen(
                [str(webserver), "-h", "127.0.0.1", "-p", str(port), "-m", "crypto_assets.definitions"],
                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=Path(__file__).resolve().parents[2])
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_webserver(url, proc, log)
            yield {"url": url, "defs": defs, "settings": settings, "log": log}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # the webserver and its code-server child, nothing else
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture()
def page(chromium):
    page = chromium.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(60_000)
    yield page
    page.close()


def body_text(page) -> str:
    return page.inner_text("body")


def wait_for_texts(page, texts: list[str], timeout_s: float = 60.0) -> None:
    """Until every text is somewhere in the rendered page (the UI loads its data asynchronously)."""
    page.wait_for_function("texts => texts.every(t => document.body.innerText.includes(t))", arg=texts,
                           timeout=timeout_s * 1000, polling=250)


def settle(page, timeout_s: float = 15.0) -> None:
    """Give the nodes' status rows a moment to load before a screenshot (cosmetic: never fails the test)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("() => !document.body.innerText.includes('Loading')", timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        pass


def test_asset_graph_shows_every_asset_of_the_definitions(ui, page, artifacts_dir: Path) -> None:
    """The global lineage draws one (collapsed) node per asset group; each group's lineage page draws its
    assets. Together they must name every asset key of the Definitions object."""
    graph = ui["defs"].resolve_asset_graph()
    groups: dict[str, list[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, []).append(key.to_user_string())
    names = sorted(n for members in groups.values() for n in members)
    assert PARTITIONED in names and len(names) >= 5
    page.goto(f"{ui['url']}/asset-groups", wait_until="domcontentloaded")
    try:
        wait_for_texts(page, sorted(groups))
    finally:
        page.screenshot(path=str(artifacts_dir / "dagster_lineage.png"))
    seen: set[str] = set()
    for group, members in sorted(groups.items()):
        page.goto(f"{ui['url']}/locations/{LOCATION}/asset-groups/{group}/lineage", wait_until="domcontentloaded")
        try:
            wait_for_texts(page, sorted(members))
        finally:
            if group == "batch":
                settle(page)
                page.screenshot(path=str(artifacts_dir / "dagster_asset_graph_batch.png"))
        text = body_text(page)
        seen |= {n for n in names if n in text}
    assert seen == set(names), sorted(set(names) - seen)


def test_partitioned_asset_shows_its_materialized_partitions(ui, page, artifacts_dir: Path) -> None:
    settings = ui["settings"]
    page.goto(f"{ui['url']}/assets/{PARTITIONED}?view=partitions", wait_until="domcontentloaded")
    try:
        # Every partition of the definition was backfilled: the status filters must count them all.
        total = MINUTE_DAYS * len(settings.symbols)
        wait_for_texts(page, [f"Materialized ({total})", "Missing (0)", "Failed (0)",
                              f"{total} Partitions Selected"])
    finally:
        page.screenshot(path=str(artifacts_dir / "dagster_partitions.png"))
    text = body_text(page)
    for day in (yesterday_utc() - dt.timedelta(days=i) for i in range(MINUTE_DAYS)):
        assert day.isoformat() in text
    assert all(symbol in text for symbol in settings.symbols)


def test_asset_checks_tab_lists_every_check(ui, page, artifacts_dir: Path) -> None:
    graph = ui["defs"].resolve_asset_graph()
    by_asset: dict[str, list[str]] = {}
    for check in graph.asset_check_keys:
        by_asset.setdefault(check.asset_key.to_user_string(), []).append(check.name)
    assert "no_duplicate_minutes" in by_asset.get(PARTITIONED, [])
    for asset, checks in sorted(by_asset.items()):
        page.goto(f"{ui['url']}/assets/{asset}?view=checks", wait_until="domcontentloaded")
        try:
            # The backfill executed the batch checks: their tab must show the passed evaluation too.
            wait_for_texts(page, sorted(checks) + (["Passed"] if asset == PARTITIONED else []))
        finally:
            if asset == PARTITIONED:
                page.screenshot(path=str(artifacts_dir / "dagster_checks.png"))
