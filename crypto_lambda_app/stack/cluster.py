"""A Spark standalone cluster on this box (``crypto-lambda cluster up|down|status``): one master and N workers
started from PySpark's own distribution (``$SPARK_HOME/bin/spark-class``), all bound to 127.0.0.1.

Why detached processes plus a state file (``$CRYPTO_LAMBDA_HOME/spark-cluster/state.json``): ``up`` returns
once the master lists N ALIVE workers, and ``down``/``status`` run later from another process. Every daemon
carries the stack's environment marker (:mod:`procs`, component ``master`` or ``worker-<i>``), and the executor
JVMs a worker launches (and their Python workers) inherit it: a worker "host" is all processes marked with its
component, which is what :func:`kill_worker` kills and :func:`cluster_status` measures.

Layout under ``spark-cluster/``: ``logs/<component>.log`` (daemon stdout/stderr), ``work/<worker>/`` (the
worker's work dir: one folder per application and executor with the jars fetched from the driver and the
executor's stdout/stderr), ``local/<worker>/`` (executors' scratch: shuffle and spill files, SPARK_LOCAL_DIRS).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crypto_lambda import machine
from crypto_lambda.config import Settings
from crypto_lambda.errors import Fault
from crypto_lambda_app.stack import procs
from crypto_lambda_app.stack.state import now_iso, read_state, write_state

log = logging.getLogger("crypto_lambda_app.cluster")

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
COMPONENT_MASTER = "master"


@dataclass
class ClusterOptions:
    """``crypto-lambda cluster up`` options; a port of 0 means a free one picked at start."""

    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "1g"
    port: int = 7077
    webui_port: int = 8080
    host: str = "127.0.0.1"
    daemon_memory: str = "256m"  # heap of the master and worker daemons (SPARK_DAEMON_MEMORY)
    ready_timeout: float = 120.0


def cluster_dir(settings: Settings) -> Path:
    return settings.home / "spark-cluster"


def state_file(settings: Settings) -> Path:
    return cluster_dir(settings) / "state.json"


def worker_name(index: int) -> str:
    return f"worker-{index}"


def spark_home() -> Path:
    """PySpark's own distribution (bin/spark-class, jars/): the very Spark the drivers run."""
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home())


def master_json(webui_url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The master web UI's ``/json/`` (workers with state, cores, memory; active apps), None if unreachable."""
    try:
        with urllib.request.urlopen(f"{webui_url}/json/", timeout=timeout) as response:  # noqa: S310 - loopback
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def alive_workers(info: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [w for w in (info or {}).get("workers", []) if w.get("state") == "ALIVE"]


def _env(settings: Settings, state: dict[str, Any], component: str) -> dict[str, str]:
    """The daemon's environment: loopback, small daemon heap, the stack marker (inherited by executors)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_MASTER", "SPARK_LOCAL_DIRS")}
    env.update({
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": state["host"],
        "SPARK_DAEMON_MEMORY": state["options"]["daemon_memory"],
        "CRYPTO_LAMBDA_HOME": str(settings.home),
        procs.STACK_ID_ENV: state["cluster_id"],
        procs.COMPONENT_ENV: component,
    })
    if component != COMPONENT_MASTER:
        # An application's folder in the work dir holds a copy of every spark.jars jar (45 MB): finished
        # applications' folders go after a day (checked every 30 minutes, Spark's default interval).
        env["SPARK_WORKER_OPTS"] = " ".join(filter(None, (
            os.environ.get("SPARK_WORKER_OPTS", ""), "-Dspark.worker.cleanup.enabled=true",
            "-Dspark.worker.cleanup.appDataTtl=86400")))
        local = cluster_dir(settings) / "local" / component
        local.mkdir(parents=True, exist_ok=True)
        env["SPARK_LOCAL_DIRS"] = str(local)
    return env


def _spawn(settings: Settings, state: dict[str, Any], component: str, argv: list[str]) -> dict[str, Any]:
    log_path = cluster_dir(settings) / "logs" / f"{component}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        out.write(f"--- {now_iso()} starting {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=_env(settings, state, component), start_new_session=True)  # outlives `up`
    return {"name": component, "pid": proc.pid, "ticks": machine.start_ticks(proc.pid), "log": str(log_path),
            "argv": argv, "started_at": now_iso()}


def _worker_argv(state: dict[str, Any], index: int, settings: Settings) -> list[str]:
    opts = state["options"]
    work = cluster_dir(settings) / "work" / worker_name(index)
    work.mkdir(parents=True, exist_ok=True)
    return [str(spark_home() / "bin" / "spark-class"), WORKER_CLASS, "--host", state["host"],
            "--cores", str(opts["worker_cores"]), "--memory", opts["worker_memory"], "--work-dir", str(work),
            "--webui-port", "0", state["master_url"]]


def _proc_alive(entry: dict[str, Any]) -> bool:
    return machine.pid_alive(entry.get("pid"), entry.get("ticks"))


def _tail(path: str, lines: int = 10) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "    (no log)"
    return "\n".join("    " + line for line in text[-lines:])


def wait_for_workers(state: dict[str, Any], count: int, timeout: float,
                     progress: Callable[[str], None] = log.info, known: set[str] | None = None) -> float:
    """Block until the master answers and lists ``count`` ALIVE workers (other than ``known`` ids); the
    seconds it took. A daemon that exits, or the timeout, is a :class:`Fault` naming the log to read."""
    started = time.monotonic()
    next_note = started + 5.0
    while True:
        info = master_json(state["webui_url"])
        alive = [w for w in alive_workers(info) if w["id"] not in (known or set())]
        if info is not None and len(alive) >= count:
            return round(time.monotonic() - started, 2)
        for entry in state["processes"]:
            if not _proc_alive(entry):
                raise Fault(f"Spark {entry['name']} (pid {entry['pid']}) exited while the cluster started; "
                            f"see {entry['log']}:\n{_tail(entry['log'])}")
        waited = time.monotonic() - started
        if waited > timeout:
            where = "master not answering" if info is None else f"{len(alive)}/{count} workers ALIVE"
            logs = ", ".join(e["log"] for e in state["processes"])
            raise Fault(f"the Spark cluster was not ready after {timeout:.0f} s ({where} at {state['webui_url']}); "
                        f"see {logs}")
        if time.monotonic() >= next_note:
            seen = "master not answering yet" if info is None else f"{len(alive)}/{count} workers ALIVE"
            progress(f"waiting for the Spark cluster: {seen} after {waited:.0f} s")
            next_note += 5.0
        time.sleep(0.25)


def running_state(settings: Settings) -> dict[str, Any] | None:
    """The state of a cluster whose master still runs, else None."""
    state = read_state(state_file(settings))
    if not state or state.get("status") == "stopped":
        return None
    master = next((e for e in state.get("processes", []) if e["name"] == COMPONENT_MASTER), None)
    return state if master and _proc_alive(master) else None


def start_cluster(settings: Settings, options: ClusterOptions,
                  progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Start the master, then the workers, and wait until all are ALIVE; returns (and writes) the state."""
    if running_state(settings):
        raise Fault(f"a Spark cluster already runs for this home (state {state_file(settings)}); "
                    "`crypto-lambda cluster down` first")
    if options.workers < 1 or options.worker_cores < 1:
        raise ValueError("--workers and --worker-cores must be at least 1")
    previous = read_state(state_file(settings))
    if previous and previous.get("cluster_id"):  # a master that died leaves workers retrying: sweep them
        procs.kill_marked(previous["cluster_id"], grace=5.0)
    port = options.port or machine.free_port(options.host)
    webui = options.webui_port or machine.free_port(options.host)
    for what, number in (("--port", port), ("--webui-port", webui)):
        if not machine.port_free(number, options.host):
            raise Fault(f"{what} {number} on {options.host} is in use; pick another (0 = any free port)")
    started = time.monotonic()
    state: dict[str, Any] = {
        "cluster_id": f"spark-cluster-{uuid.uuid4().hex[:12]}", "status": "starting", "host": options.host,
        "master_url": f"spark://{options.host}:{port}", "webui_url": f"http://{options.host}:{webui}",
        "options": {**asdict(options), "port": port, "webui_port": webui}, "started_at": now_iso(),
        "processes": []}
    path = state_file(settings)
    master_argv = [str(spark_home() / "bin" / "spark-class"), MASTER_CLASS, "--host", options.host,
                   "--port", str(port), "--webui-port", str(webui)]
    state["processes"].append(_spawn(settings, state, COMPONENT_MASTER, master_argv))
    write_state(path, state)
    progress(f"Spark master starting on {state['master_url']} (web UI {state['webui_url']})")
    try:
        wait_for_workers(state, 0, options.ready_timeout, progress)  # the master answers (workers then register)
        for index in range(1, options.workers + 1):
            state["processes"].append(_spawn(settings, state, worker_name(index),
                                             _worker_argv(state, index, settings)))
        write_state(path, state)
        progress(f"{options.workers} worker(s) starting ({options.worker_cores} core(s), {options.worker_memory} "
                 "each)")
        wait_for_workers(state, options.workers, options.ready_timeout - (time.monotonic() - started), progress)
    except BaseException:
        stop_cluster(settings, grace=5.0)
        raise
    state["status"] = "running"
    state["up_seconds"] = round(time.monotonic() - started, 2)
    write_state(path, state)
    return state


def start_worker(settings: Settings, index: int, progress: Callable[[str], None] = log.info) -> float:
    """(Re)start worker ``index`` of the running cluster and wait until it is ALIVE; seconds it took."""
    state = running_state(settings)
    if state is None:
        raise Fault(f"no Spark cluster runs for this home (state {state_file(settings)}); `crypto-lambda cluster up`")
    name = worker_name(index)
    if any(e["name"] == name and _proc_alive(e) for e in state["processes"]):
        raise Fault(f"{name} already runs")
    known = {w["id"] for w in alive_workers(master_json(state["webui_url"]))}
    state["processes"] = [e for e in state["processes"] if e["name"] != name]
    state["processes"].append(_spawn(settings, state, name, _worker_argv(state, index, settings)))
    write_state(state_file(settings), state)
    return wait_for_workers(state, 1, state["options"]["ready_timeout"], progress, known=known)


def component_pids(state: dict[str, Any]) -> dict[str, list[int]]:
    """Live pids per component: a worker's own JVM, its executors and their Python workers."""
    return procs.pids_by_component(state["cluster_id"])


def kill_worker(settings: Settings, index: int) -> list[int]:
    """SIGKILL worker ``index`` with every executor (and Python worker) it launched: a host that died."""
    state = read_state(state_file(settings))
    if not state:
        raise Fault(f"no Spark cluster state at {state_file(settings)}")
    pids = component_pids(state).get(worker_name(index), [])
    for pid in pids:
        procs.signal_pid(pid, signal.SIGKILL)
    return pids


def stop_cluster(settings: Settings, grace: float = 10.0) -> list[int]:
    """Workers (with their executors) first, then the master: SIGTERM, SIGKILL after ``grace``; then a sweep of
    anything still carrying the cluster's marker. Returns every pid signalled; the state is marked stopped."""
    state = read_state(state_file(settings))
    if not state or not state.get("cluster_id"):
        return []
    groups = component_pids(state)
    workers = sorted(pid for name, pids in groups.items() if name != COMPONENT_MASTER for pid in pids)
    own = [e["pid"] for e in state.get("processes", []) if e["name"] != COMPONENT_MASTER and _proc_alive(e)]
    procs.terminate(sorted(set(workers) | set(own)), grace)
    master = [e["pid"] for e in state.get("processes", []) if e["name"] == COMPONENT_MASTER and _proc_alive(e)]
    procs.terminate(sorted(set(master) | set(groups.get(COMPONENT_MASTER, []))), grace)
    leftovers = procs.kill_marked(state["cluster_id"], grace=2.0)
    state["status"] = "stopped"
    state["stopped_at"] = now_iso()
    write_state(state_file(settings), state)
    return sorted(set(workers) | set(own) | set(master) | set(leftovers))


def cluster_status(settings: Settings) -> dict[str, Any]:
    """Master URL, each worker's state as the master sees it (ALIVE/DEAD, cores, memory), running apps, and
    the RSS of every process (a worker's own JVM apart from its executors)."""
    state = read_state(state_file(settings))
    if not state:
        return {"running": False, "state_file": str(state_file(settings))}
    running = running_state(settings) is not None
    info = master_json(state["webui_url"]) if running else None
    groups = component_pids(state) if running else {}
    processes = []
    for entry in state.get("processes", []):
        alive = running and _proc_alive(entry)
        children = [p for p in groups.get(entry["name"], []) if p != entry["pid"]]
        processes.append({
            "name": entry["name"], "pid": entry["pid"], "alive": alive, "log": entry["log"],
            "rss_mb": round(machine.rss_mb(entry["pid"]) or 0, 1) if alive else None,
            "executor_pids": children,
            "executors_rss_mb": round(sum(machine.rss_mb(p) or 0 for p in children), 1)})
    workers = [{k: w.get(k) for k in ("id", "host", "port", "state", "cores", "coresused", "memory", "memoryused",
                                      "webuiaddress")} for w in (info or {}).get("workers", [])]
    apps = [{k: a.get(k) for k in ("id", "name", "cores", "memoryperslave", "memoryperexecutor", "state",
                                   "duration")} for a in (info or {}).get("activeapps", [])]
    return {"running": running, "status": state.get("status") if running else "not running",
            "master_url": state.get("master_url"), "webui_url": state.get("webui_url"),
            "master_answering": info is not None, "alive_workers": len(alive_workers(info)),
            "workers": workers, "active_apps": apps, "processes": processes, "started_at": state.get("started_at"),
            "up_seconds": state.get("up_seconds"), "state_file": str(state_file(settings))}


def format_status(status: dict[str, Any]) -> str:
    if not status["running"]:
        return (f"Spark cluster: not running (start it with `crypto-lambda cluster up`; state "
                f"{status['state_file']})")
    lines = [f"Spark cluster: {status['master_url']} (web UI {status['webui_url']}), "
             f"{status['alive_workers']} worker(s) ALIVE, up since {status['started_at']}"]
    for w in status["workers"]:
        lines.append(f"  worker {w['id']:<40} {w['state']:<6} cores {w['coresused']}/{w['cores']}, "
                     f"memory {w['memoryused']}/{w['memory']} MiB")
    for a in status["active_apps"]:
        lines.append(f"  app    {a['id']:<40} {a['name']} ({a['state']}), {a['cores']} core(s)")
    for p in status["processes"]:
        mem = f"{p['rss_mb']:.0f} MiB" if p["rss_mb"] is not None else "-"
        execs = f", executors {len(p['executor_pids'])} process(es) {p['executors_rss_mb']:.0f} MiB" \
            if p["executor_pids"] else ""
        lines.append(f"  {p['name']:<9} pid {p['pid']:<8} {'alive' if p['alive'] else 'DEAD':<5} RSS {mem}{execs}; "
                     f"{p['log']}")
    return "\n".join(lines)
