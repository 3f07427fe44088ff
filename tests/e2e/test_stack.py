"""`crypto-lambda up` end to end with real processes: every component healthy, Dagster answering with its
sensors on, minute bars from the stream in the Delta table, a SIGKILLed producer restarted, then SIGTERM stops
everything in order with exit code 0, no process left behind and every checkpointed micro-batch committed; then
`up` again on the same home resumes from Kafka's kept log and the checkpoint without losing or repeating a
minute."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest

from crypto_lambda import machine
from crypto_lambda.config import Settings
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.speed import read_gaps, read_speed_bars
from crypto_lambda.lake.tables import SPEED_BARS
from crypto_lambda.timeutil import today_utc
from crypto_lambda_app.stack import procs
from crypto_lambda_app.stack.components import STREAM_AHEAD_HOURS
from crypto_lambda_app.stack.health import component_health
from crypto_lambda_app.stack.state import read_state, state_path
from replay_exchange.recording import Recording

pytestmark = pytest.mark.timeout(720)
BIN = Path(sys.executable).parent
SENSORS_QUERY = """{ sensorsOrError(repositorySelector: {repositoryName: "__repository__",
  repositoryLocationName: "crypto_lambda"}) {
    __typename ... on Sensors { results { name sensorState { status } } } } }"""


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _wait(what: str, check: Callable[[], Any], timeout: float, proc: subprocess.Popen, log: Path) -> Any:
    """Poll ``check`` until truthy; fail early (with the supervisor's output) if the supervisor exits."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        value = check()
        if value:
            print(f"{what}: {time.monotonic() - began:.1f} s")
            return value
        if proc.poll() is not None:
            pytest.fail(f"supervisor exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(1.0)
    pytest.fail(f"{what} not reached after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _cmdline_mentions(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd and machine.pid_alive(int(entry.name)):
                found.append(f"{entry.name}: {cmd[:200]}")
    return found


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``info["start"](*options, **env)`` launches `crypto-lambda up` (again) on the same home and ports."""
    home = tmp_path / "home"
    exchange, broker, dagster, web = _free_ports(4)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "BINANCE_", "DAGSTER_", "CRYPTO_LAMBDA_", "REPLAY_WS_"))}
    env.update(CRYPTO_LAMBDA_HOME=str(home), CRYPTO_LAMBDA_SYMBOLS="BTCUSDT,ETHUSDT",
               CRYPTO_LAMBDA_START=str(today_utc().replace(day=1)), CRYPTO_LAMBDA_MINUTE_START=str(today_utc()),
               REPLAY_WS_SPEED="30")  # half a recorded minute per wall second: bars within seconds
    argv = [str(BIN / "crypto-lambda"), "up", "--exchange-port", str(exchange), "--broker-port", str(broker),
            "--dagster-port", str(dagster), "--web-port", str(web), "--max-restarts", "2"]
    started: list[subprocess.Popen] = []
    info: dict[str, Any] = {"home": home, "dagster": dagster, "settings": Settings(home=home)}

    def start(*options: str, **extra: str) -> subprocess.Popen:
        out = tmp_path / f"up-{len(started) + 1}.log"
        info["began"] = time.monotonic()
        with open(out, "wb") as handle:
            proc = subprocess.Popen([*argv, *options], stdout=handle, stderr=subprocess.STDOUT, env={**env, **extra},
                                    cwd=tmp_path)
        started.append(proc)
        info.update(proc=proc, log=out)
        return proc

    info["start"] = start
    start()
    try:
        yield info
    finally:
        for proc in started:
            if proc.poll() is None:  # a failed assertion must not leave a stack behind
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(150)
                except subprocess.TimeoutExpired:
                    proc.kill()
        state = read_state(state_path(Settings(home=home)))
        if state:
            procs.kill_marked(state["stack_id"], grace=2.0)


def test_up_runs_restarts_and_stops_the_whole_stack(stack: dict[str, Any]) -> None:
    proc, home, log, settings = stack["proc"], stack["home"], stack["log"], stack["settings"]

    def all_healthy() -> dict[str, Any] | None:
        health = component_health(settings)
        return health if health["healthy"] else None

    health = _wait("all components healthy", all_healthy, 200, proc, log)
    print(f"stack up after {time.monotonic() - stack['began']:.1f} s; RSS MiB: "
          + ", ".join(f"{n}={c['rss_mb']}" for n, c in health["components"].items()))
    expected = {"exchange", "broker", "producer", "consumer", "dagster-webserver", "dagster-daemon"}
    assert expected <= set(health["components"])

    # The CLI reports the same through `status --json`.
    status = subprocess.run([str(BIN / "crypto-lambda"), "status", "--json"], capture_output=True, text=True,
                            env={**os.environ, "CRYPTO_LAMBDA_HOME": str(home)}, timeout=120, check=True)
    components = json.loads(status.stdout)["components"]
    assert components["running"] and components["healthy"], components
    assert all(c["alive"] and c["restarts"] == 0 for c in components["components"].values())

    # Dagster answers on its port, with the sensors turned on by CRYPTO_LAMBDA_AUTOMATION.
    url = f"http://127.0.0.1:{stack['dagster']}"
    with urllib.request.urlopen(f"{url}/server_info", timeout=10) as response:
        assert response.status == 200
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": SENSORS_QUERY}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        sensors = json.loads(response.read())["data"]["sensorsOrError"]
    states = {s["name"]: s["sensorState"]["status"] for s in sensors["results"]}
    assert states.items() >= {"speed_output_sensor": "RUNNING", "gap_repair_sensor": "RUNNING",
                              "automation_condition_sensor": "RUNNING"}.items(), sensors

    # The stream reaches the lake: committed minute bars in the Delta table.
    uris = _wait("first committed minute bars", lambda: lake_read.file_uris(settings.lake, SPEED_BARS), 150, proc,
                 log)
    files = [Path(unquote(urlparse(u).path)) for u in uris]
    assert all(f.suffix == ".parquet" and f.exists() for f in files)

    # A child killed with SIGKILL comes back.
    state = read_state(state_path(settings))
    producer = next(c for c in state["components"] if c["name"] == "producer")
    os.kill(producer["pid"], signal.SIGKILL)

    def producer_back() -> bool:
        comp = component_health(settings)["components"]["producer"]
        return comp["restarts"] == 1 and comp["healthy"] and comp["pid"] != producer["pid"]

    _wait("producer restarted", producer_back, 60, proc, log)

    # SIGTERM: ordered stop, exit 0, nothing left.
    state = read_state(state_path(settings))
    pids = [c["pid"] for c in state["components"] if c["pid"]] + [state["supervisor_pid"]]
    stopping = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(150) == 0, log.read_text()[-3000:]
    print(f"stopped in {time.monotonic() - stopping:.1f} s")
    assert not [p for p in pids if machine.pid_alive(p)]
    assert not procs.marked_pids(state["stack_id"])
    assert not _cmdline_mentions(str(home)), _cmdline_mentions(str(home))
    final = read_state(state_path(settings))
    assert final["status"] == "stopped"
    assert not component_health(settings)["running"]

    # Every micro-batch the consumer started (offsets/N) was committed (commits/N): it stopped between batches.
    queries = [d for d in (home / "checkpoints" / "stream").glob("*/*") if (d / "offsets").is_dir()]
    assert queries, "no streaming checkpoint written"
    for query in queries:
        offsets = {p.name for p in (query / "offsets").iterdir() if p.name.isdigit()}
        commits = {p.name for p in (query / "commits").iterdir() if p.name.isdigit()}
        assert offsets and offsets <= commits, f"{query}: uncommitted batches {sorted(offsets - commits)}"
    log_text = log.read_text()
    assert "producer exited unexpectedly" in log_text and "stack stopped; no process left" in log_text

    _restart_on_the_same_home(stack, all_healthy)


def _restart_on_the_same_home(stack: dict[str, Any], all_healthy: Callable[[], Any]) -> None:
    """`up` again on the same home: Kafka finds the first run's topics and unread messages (the consumer stopped
    before the producer did), the consumer resumes from its checkpoint with failOnDataLoss on, and the 1-minute
    bars of both runs together equal the recording: none lost, none twice."""
    settings, home = stack["settings"], stack["home"]
    first = read_speed_bars(settings)
    newest = first.groupby("symbol")["open_time"].max()
    # The exchange replays from just after the newest committed bar, so the runs overlap (the trade-id dedup
    # and the watermark in the checkpoint must absorb it) and leave no hole.
    resume = int(newest.min().timestamp() * 1000) + 60_000
    # Dagster and the page were checked in the first run; the resume is about the stream's state alone.
    proc = stack["start"]("--no-dagster", "--no-web", REPLAY_WS_START_MS=str(resume))
    log = stack["log"]
    _wait("all components healthy after the restart", all_healthy, 200, proc, log)
    target = newest + pd.Timedelta(minutes=10)

    def beyond_first_run() -> bool:
        bars = read_speed_bars(settings)
        latest = bars.groupby("symbol")["open_time"].max()
        return len(latest) == len(target) and bool((latest > target).all())

    _wait("bars beyond the first run's", beyond_first_run, 150, proc, log)
    consumer = component_health(settings)["components"]["consumer"]
    assert consumer["restarts"] == 0 and consumer["healthy"], consumer
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(150) == 0, log.read_text()[-3000:]
    assert "created topics: none (already there)" in (home / "logs" / "broker.log").read_text()
    assert "--no-fail-on-data-loss" not in (home / "logs" / "consumer.log").read_text()

    bars = read_speed_bars(settings)
    assert not bars.duplicated(["symbol", "open_time"]).any()
    # What the stack's exchange replays (shifted one day further in the evening, see STREAM_AHEAD_HOURS).
    recording = Recording.from_sample(shift_to_today=True, ahead_ms=STREAM_AHEAD_HOURS * 3_600_000)
    gaps = read_gaps(settings)  # minutes the producer missed while it was SIGKILLed: left to the REST refill
    for symbol, got in bars.groupby("symbol"):
        got = got.set_index("open_time").iloc[1:]  # the first minute was joined mid-way
        # The replay at 30x runs ahead of the wall clock, so compare with the recording itself, not with
        # what its REST side serves by now.
        recorded = recording.recorded_minutes(symbol)
        ms = got.index.as_unit("ms").asi8
        rows = np.searchsorted(recorded.open_ms, ms)
        assert (recorded.open_ms[rows] == ms).all(), f"{symbol}: bars at minutes the recording lacks"
        marked = gaps[gaps["symbol"] == symbol]
        hit = np.zeros(len(ms), dtype=bool)
        for lo, hi in zip(marked["from_ms"], marked["to_ms"], strict=True):
            hit |= (ms + 60_000 > lo) & (ms <= hi)
        span = recorded.open_ms[(recorded.open_ms >= ms[0]) & (recorded.open_ms <= ms[-1])]
        # A minute may be absent only where the producer marked a gap (its SIGKILL above: at 30x a 3 s outage is
        # 90 s of market time, so a whole minute can go unseen); the batch layer refills those from REST.
        absent = np.setdiff1d(span, ms)
        marked_absent = np.zeros(len(absent), dtype=bool)
        for lo, hi in zip(marked["from_ms"], marked["to_ms"], strict=True):
            marked_absent |= (absent + 60_000 > lo) & (absent <= hi)
        assert marked_absent.all(), (f"{symbol}: {(~marked_absent).sum()} minutes lost outside the producer's gap "
                                     f"markers: {absent[~marked_absent].tolist()}")
        want = pd.DataFrame({c: recorded.cols[c][rows] for c in ("open", "high", "low", "close", "volume")},
                            index=got.index)[~hit]
        assert len(want) >= 15, f"{symbol}: too few comparable minutes ({len(want)})"
        assert len(want) >= 15, f"{symbol}: too few comparable minutes ({len(want)})"
        joined = got.reindex(want.index)
        for col in ("open", "high", "low", "close"):
            assert (joined[col].to_numpy() == want[col].to_numpy()).all(), (symbol, col)
        np.testing.assert_allclose(joined["volume"], want["volume"], rtol=1e-9, atol=0)


def test_no_stack_and_live_mode_and_busy_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap checks without starting a stack: status says 'not running', --live drops the replay exchange and
    points the children at Binance, and a busy port is refused up front, naming the component."""
    from crypto_lambda_app.stack.components import StackOptions, base_env, build_components

    settings = Settings(home=tmp_path / "home")
    health = component_health(settings)
    assert health["running"] is False and health["status"] == "not running" and health["components"] == {}

    # The consumer's "not after now + 1 minute" rule is lifted only for a replay faster than the clock.
    def consumer_argv(**options: Any) -> list[str]:
        return next(s.argv for s in build_components(StackOptions(**options)) if s.name == "consumer")

    monkeypatch.setenv("REPLAY_WS_SPEED", "30")
    assert "--no-future-bound" in consumer_argv() and "--no-future-bound" not in consumer_argv(live=True)
    monkeypatch.setenv("REPLAY_WS_SPEED", "1")
    assert "--no-future-bound" not in consumer_argv()
    names = [spec.name for spec in build_components(StackOptions(live=True, web=False))]
    assert names == ["broker", "producer", "consumer", "dagster-webserver", "dagster-daemon"]
    env = base_env(settings, StackOptions(live=True), "x")
    if "BINANCE_WS_URL" not in os.environ:
        assert env["BINANCE_WS_URL"] == "wss://stream.binance.com:9443"
    assert env["CRYPTO_LAMBDA_AUTOMATION"] == "on" and env["DAGSTER_HOME"] == str(settings.dagster_home)

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = [str(p) for p in _free_ports(3)]
        result = subprocess.run([str(BIN / "crypto-lambda"), "up", "--exchange-port", str(port), "--broker-port",
                                 ports[0], "--dagster-port", ports[1], "--web-port", ports[2]],
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "CRYPTO_LAMBDA_HOME": str(settings.home)})
    assert result.returncode == 2, result.stderr
    assert f"exchange: port {port}" in result.stderr
    assert read_state(state_path(settings)) is None  # nothing was started


def test_a_component_that_dies_with_an_error_line_shows_it_in_status(tmp_path: Path) -> None:
    """A component's one-line error (here `web` on a busy port, run as the supervisor runs it: output to its
    log) is what `status` and the supervisor show beside it."""
    from crypto_lambda.errors import last_error
    from crypto_lambda_app.stack.health import format_components

    log_path = tmp_path / "web.log"
    with socket.socket() as busy, open(log_path, "wb") as out:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = subprocess.run([str(BIN / "crypto-lambda"), "web", "--port", str(port)], stdout=out,
                              stderr=subprocess.STDOUT, timeout=60,
                              env={**os.environ, "CRYPTO_LAMBDA_HOME": str(tmp_path / "home")}).returncode
    assert code == 1
    line = last_error(log_path)
    assert line and line.startswith("crypto-lambda: error: ") and str(port) in line, log_path.read_text()
    assert "Traceback" not in log_path.read_text()
    health = {"running": True, "status": "running", "mode": "replay", "supervisor_pid": 1, "started_at": "t",
              "healthy": False, "components": {"web": {
                  "healthy": False, "alive": False, "state": "restarting", "url": None, "responding": None,
                  "rss_mb": None, "log_age_s": None, "pid": None, "restarts": 1, "log": str(log_path),
                  "last_error": line}}}
    assert f"last error: {line}" in format_components(health)
