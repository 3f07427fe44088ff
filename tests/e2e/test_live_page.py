"""The live page end to end in headless Chromium: replay exchange -> producer -> Apache Kafka -> Spark streaming
(available-now) -> Delta Lake -> ``crypto-lambda web`` app -> browser. What the page shows must equal what
``read_speed_bars`` / ``provisional_daily_bar`` read from the same output, and after the stream commits more
the open page must show the new bars by itself (no reload). Plus the JSON API's validation and caching."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pandas as pd
import pytest
import requests

from crypto_lambda.config import Settings
from crypto_lambda.lake.speed import provisional_daily_bar, read_speed_bars
from crypto_lambda.timeutil import MINUTE_MS
from crypto_lambda_app.web import WebServer

pytestmark = pytest.mark.timeout(300)
SYMBOLS = ("BTCUSDT", "ETHUSDT")
LATEST_FIELDS = ("time", "open", "high", "low", "close", "volume", "trades")
DAILY_FIELDS = ("date", "open", "high", "low", "close", "volume", "minutes", "as_of")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, spark, today_server, broker):
    """Streams the 50th to 20th minute before now (recording shifted so it ends today) through the real
    pipeline, then serves the output. ``more()`` streams the next 15 minutes into the same topics and
    checkpoints, as a running consumer would."""
    from crypto_lambda_app.harness import ReplayRun
    from streaming_service import consumer
    from streaming_service.topics import SpeedPaths, Topics

    home = tmp_path_factory.mktemp("live") / "home"
    settings = Settings(home=home, symbols=SYMBOLS)
    paths = SpeedPaths.of(settings)
    topics = Topics.with_prefix("live")
    recording = today_server.recording
    # Minutes before now, or before the recording's end when that is earlier (the sample ends at 18:27 UTC).
    served_until = recording.served_until(SYMBOLS)
    now = min(int(time.time() * 1000) // MINUTE_MS * MINUTE_MS, served_until)
    windows = [(now - 50 * MINUTE_MS, now - 20 * MINUTE_MS), (now - 20 * MINUTE_MS, now - 5 * MINUTE_MS)]
    broker.create_topics(topics.all(), partitions=2)
    config = consumer.ConsumerConfig(bootstrap=broker.bootstrap, paths=paths, topics=topics, available_now=True)

    def stream(window: tuple[int, int]) -> None:
        with ReplayRun(recording, broker.bootstrap, topics, paths.spill, *window, speed=1200) as run:
            run.wait_until_done()
        consumer.run(config, spark)

    stream(windows[0])
    with WebServer(settings, cache_seconds=0.5) as server:
        yield {"settings": settings, "url": server.url, "windows": windows, "more": lambda: stream(windows[1])}


def shown(page, symbol: str) -> dict[str, dict[str, str]]:
    """Text of every cell of the symbol's latest-bar and daily-bar tables, by ``data-field``."""
    return page.evaluate("""symbol => {
        const cells = id => Object.fromEntries([...document.querySelectorAll(`#${id} td[data-field]`)]
            .map(td => [td.dataset.field, td.textContent]));
        return {latest: cells(`latest-${symbol}`), daily: cells(`daily-${symbol}`),
                age: document.querySelector(`#sym-${symbol} .age`).textContent};
    }""", symbol)


def assert_page_matches_output(page, settings: Settings, symbol: str, last_streamed_ms: int) -> None:
    cells = shown(page, symbol)
    latest, daily = cells["latest"], cells["daily"]
    assert set(latest) == set(LATEST_FIELDS) and set(daily) == set(DAILY_FIELDS)
    bars = read_speed_bars(settings, symbol)
    want = bars.iloc[-1]
    assert pd.Timestamp(latest["time"].removesuffix(" UTC"), tz="UTC") == want["open_time"]
    for col in ("open", "high", "low", "close"):
        assert float(latest[col]) == want[col], (symbol, col, latest[col], want[col])
    assert float(latest["volume"]) == pytest.approx(want["volume"], rel=1e-9, abs=0)
    assert int(latest["trades"]) == want["trades"]

    # The provisional day is the day of the newest streamed minute (committed or still in progress).
    day = pd.Timestamp(last_streamed_ms, unit="ms", tz="UTC").date()
    assert daily["date"] == day.isoformat()
    bar = provisional_daily_bar(settings, symbol, day)
    assert bar is not None and bar["provisional_minutes"] >= 1  # the watermark holds the newest minutes back
    for col in ("open", "high", "low", "close"):
        assert float(daily[col]) == bar[col], (symbol, "daily", col, daily[col], bar[col])
    assert float(daily["volume"]) == pytest.approx(bar["volume"], rel=1e-9, abs=0)
    assert daily["minutes"].startswith(f"{bar['minutes']} ({bar['committed_minutes']} committed + "
                                       f"{bar['provisional_minutes']} in progress)")
    assert cells["age"].startswith("data age ")


def wait_for(page, expression: str, arg=None, timeout_s: float = 30.0) -> None:
    page.wait_for_function(expression, arg=arg, timeout=timeout_s * 1000, polling=200)


def test_page_renders_latest_bar_and_provisional_daily_bar_then_refreshes_itself(
        live, chromium, artifacts_dir: Path) -> None:
    settings = live["settings"]
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
    try:
        page.goto(f"{live['url']}/?refresh=1", wait_until="load")
        wait_for(page, """symbols => symbols.every(s => {
            const el = document.getElementById(`sym-${s}`);
            return el && Number(el.dataset.updates) >= 1 && el.querySelector('svg.chart rect'); })""",
                 list(SYMBOLS))
        assert page.title() == "crypto-lambda · live"
        assert page.get_attribute("#status", "data-state") == "ok"
        for symbol in SYMBOLS:
            candles = page.locator(f"#sym-{symbol} svg.chart rect").count()
            assert candles == 2 * len(read_speed_bars(settings, symbol))  # a body and a volume bar per minute
            assert_page_matches_output(page, settings, symbol, live["windows"][0][1] - MINUTE_MS)
        page.screenshot(path=str(artifacts_dir / "live_page.png"), full_page=True)

        before = {s: page.get_attribute(f"#sym-{s}", "data-latest-ms") for s in SYMBOLS}
        live["more"]()  # the stream commits 15 more minutes; the page is NOT reloaded
        newest = {s: str(int(read_speed_bars(settings, s)["open_time"].iloc[-1].value // 1_000_000))
                  for s in SYMBOLS}
        assert all(newest[s] != before[s] for s in SYMBOLS)
        # The page polled while the stream committed: a poll that saw the bars query's last commit but not yet
        # the side query's shows the newest minute beside an older provisional day. So wait for two more
        # updates (the second one's request started after both queries had finished, past the 0.5 s cache).
        updates = {s: int(page.get_attribute(f"#sym-{s}", "data-updates") or 0) for s in SYMBOLS}
        wait_for(page, """([newest, updates]) => Object.entries(newest).every(([s, ms]) => {
            const el = document.getElementById(`sym-${s}`);
            return el.dataset.latestMs === ms && Number(el.dataset.updates) >= updates[s] + 2; })""",
                 [newest, updates])
        for symbol in SYMBOLS:
            assert_page_matches_output(page, settings, symbol, live["windows"][1][1] - MINUTE_MS)
        page.screenshot(path=str(artifacts_dir / "live_page_refreshed.png"), full_page=True)
        assert not errors, errors
    finally:
        page.close()


def test_api_serves_what_the_readers_read(live) -> None:
    settings, url = live["settings"], live["url"]
    assert requests.get(f"{url}/api/symbols", timeout=10).json() == {"symbols": list(SYMBOLS)}
    health = requests.get(f"{url}/healthz", timeout=10).json()
    assert health["status"] == "ok" and health["speed_output"] is True
    for symbol in SYMBOLS:
        data = requests.get(f"{url}/api/bars", params={"symbol": symbol, "minutes": 7}, timeout=10).json()
        want = read_speed_bars(settings, symbol).tail(7)
        assert [b["t"] for b in data["bars"]] == [int(t.value // 1_000_000) for t in want["open_time"]]
        assert [b["c"] for b in data["bars"]] == list(want["close"])
        assert data["latest"] == data["bars"][-1]
        assert data["daily"]["date"] == dt.date.fromisoformat(data["daily"]["date"]).isoformat()
        # the provisional day is the newest streamed day: never before the newest committed bar's day
        assert data["daily"]["date"] >= pd.Timestamp(data["latest"]["t"], unit="ms", tz="UTC").date().isoformat()
        assert data["data_time_ms"] >= data["latest"]["t"] + MINUTE_MS


@pytest.fixture()
def empty_server(tmp_path: Path):
    with WebServer(Settings(home=tmp_path / "home", symbols=SYMBOLS), cache_seconds=60) as server:
        yield server


@pytest.mark.parametrize("query", [
    {"symbol": "DOGEUSDT"},  # valid shape, not configured
    {"symbol": "btcusdt"},
    {"symbol": "../../etc"},
    {},
    {"symbol": "BTCUSDT", "minutes": "0"},
    {"symbol": "BTCUSDT", "minutes": "1441"},
    {"symbol": "BTCUSDT", "minutes": "ten"},
])
def test_bad_parameters_are_400_with_a_json_reason(empty_server: WebServer, query: dict) -> None:
    response = requests.get(f"{empty_server.url}/api/bars", params=query, timeout=10)
    assert response.status_code == 400
    assert "must be" in response.json()["error"]


def test_no_output_yet_is_an_empty_answer_and_reads_are_cached(empty_server: WebServer) -> None:
    url = empty_server.url
    assert requests.get(f"{url}/healthz", timeout=10).json()["speed_output"] is False
    for _ in range(3):
        data = requests.get(f"{url}/api/bars", params={"symbol": "ETHUSDT"}, timeout=10).json()
        assert data["bars"] == [] and data["latest"] is None and data["daily"] is None
    assert requests.get(f"{url}/healthz", timeout=10).json()["cache_reads"] == 1  # three requests, one read
    page = requests.get(f"{url}/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")  # nothing from elsewhere
