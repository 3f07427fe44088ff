"""Health of the ``crypto-lambda up`` components, for ``crypto-lambda status`` (the seeds' "unified manager").

It reads ``stack/state.json`` and checks each recorded pid and port itself instead of trusting the file: a
supervisor killed with SIGKILL cannot mark its state stopped, so liveness is always probed (pid + start time,
so a recycled pid does not count), and a port is only "responding" when it answers now.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from crypto_lambda import machine
from crypto_lambda.config import Settings
from crypto_lambda.errors import last_error
from crypto_lambda_app.stack import procs
from crypto_lambda_app.stack.state import read_state, state_path


def _log_info(path: str | None) -> tuple[str | None, float | None]:
    """Time of the last write to the log (ISO, UTC) and its age in seconds: a cheap sign of life for
    components without a port (producer stats every 30 s, consumer progress every minute)."""
    if not path:
        return None, None
    try:
        mtime = Path(path).stat().st_mtime
    except FileNotFoundError:
        return None, None
    when = dt.datetime.fromtimestamp(mtime, dt.UTC)
    age = (dt.datetime.now(dt.UTC) - when).total_seconds()
    return when.isoformat(timespec="seconds"), round(age, 1)


def _responding(probe: list[Any] | None) -> bool | None:
    if not probe:
        return None  # no port: liveness is the pid (and the log age)
    kind, target = probe
    return procs.http_ok(str(target), timeout=2.0) if kind == "http" else machine.port_open(int(target))


def _memory(pids: list[int] | None) -> dict[str, Any]:
    """Resident memory of the component's whole process tree (the consumer's Spark JVM, Dagster's code
    servers and run workers count for their component), found by the stack's environment marker."""
    if pids is None:
        return {"rss_mb": None, "processes": 0}
    return {"rss_mb": round(sum(machine.rss_mb(p) or 0 for p in pids), 1), "processes": len(pids)}


def component_health(settings: Settings) -> dict[str, Any]:
    """``{"running", "status", "supervisor_pid", "healthy", "components": {name: {...}}}``; ``running`` is
    False (status ``not running``) when there is no state file, it says stopped, or its supervisor is gone."""
    path = state_path(settings)
    state = read_state(path)
    if state is None:
        return {"running": False, "status": "not running", "healthy": False, "state_file": str(path),
                "components": {}}
    supervisor_alive = machine.pid_alive(state.get("supervisor_pid"), state.get("supervisor_ticks"))
    running = supervisor_alive and state.get("status") not in ("stopped", "stopped-with-leftovers")
    components: dict[str, dict[str, Any]] = {}
    marked = procs.pids_by_component(state["stack_id"]) if running and state.get("stack_id") else {}
    for comp in state.get("components", []):
        alive = running and machine.pid_alive(comp.get("pid"), comp.get("pid_ticks"))
        responding = _responding(comp.get("probe")) if alive else (False if comp.get("probe") else None)
        last_log_at, log_age = _log_info(comp.get("log"))
        components[comp["name"]] = {
            "alive": alive,
            "responding": responding,
            "healthy": bool(alive and responding is not False and comp.get("state") == "running"),
            "state": comp.get("state") if running else "not running",
            "last_state": comp.get("state"),  # as the supervisor last recorded it (e.g. stopped, failed)
            "pid": comp.get("pid"),
            **_memory(marked.get(comp["name"], []) if alive and state.get("stack_id") else None),
            "port": comp.get("port"),
            "url": comp.get("url"),
            "started_at": comp.get("started_at"),
            "restarts": comp.get("restarts", 0),
            "last_exit": comp.get("last_exit"),
            "log": comp.get("log"),
            "last_log_at": last_log_at,
            "log_age_s": log_age,
            "last_error": last_error(comp.get("log")) if comp.get("restarts") or not alive else None,
        }
    status = state.get("status") if running else "not running"
    return {
        "running": running,
        "status": status,
        "healthy": bool(running and components and all(c["healthy"] for c in components.values())),
        "last_status": state.get("status"),
        "supervisor_pid": state.get("supervisor_pid"),
        "mode": state.get("mode"),
        "started_at": state.get("started_at"),
        "state_file": str(path),
        "components": components,
    }


def format_components(health: dict[str, Any]) -> str:
    """The text section of ``crypto-lambda status``."""
    if not health["running"]:
        return f"stack: not running (start it with `make up` / `crypto-lambda up`; state {health['state_file']})"
    lines = [f"stack: {health['status']} ({health['mode']}), supervisor pid {health['supervisor_pid']}, "
             f"since {health['started_at']}; {'healthy' if health['healthy'] else 'NOT healthy'}"]
    for name, c in health["components"].items():
        verdict = "ok" if c["healthy"] else c["state"] if c["alive"] else f"DOWN ({c['state']})"
        where = f" {c['url']}" if c["url"] else ""
        answer = "" if c["responding"] is None else (" responding" if c["responding"] else " NOT responding")
        mem = f" {c['rss_mb']:.0f} MiB" if c["rss_mb"] else ""
        age = f", log {c['log_age_s']:.0f} s ago" if c["log_age_s"] is not None else ""
        lines.append(f"  {name:<18} {verdict:<10} pid {c['pid']}{where}{answer}{mem}, "
                     f"restarts {c['restarts']}{age}; {c['log']}")
        if c.get("last_error"):
            lines.append(f"  {'':<18} last error: {c['last_error']}")
    return "\n".join(lines)
