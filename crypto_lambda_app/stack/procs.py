"""Process plumbing for the stack supervisor: probes, process groups and the env-marker orphan sweep.

Linux-only on purpose (``/proc``): the project targets Linux dev boxes and CI, and reading ``/proc`` avoids a
psutil dependency. Every child of ``crypto-lambda up`` carries ``CRYPTO_LAMBDA_STACK_ID`` and
``CRYPTO_LAMBDA_STACK_COMPONENT`` in its environment, and so does everything *it* starts (the Kafka JVM in its own
session, the Spark JVM, Dagster's code servers and run workers): environment inheritance is the one lineage
that survives ``setsid`` and re-parenting to init, so the sweep finds processes a process-group kill misses.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

from crypto_lambda.machine import pid_alive, start_ticks

STACK_ID_ENV = "CRYPTO_LAMBDA_STACK_ID"
COMPONENT_ENV = "CRYPTO_LAMBDA_STACK_COMPONENT"
PR_SET_PDEATHSIG = 1


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def pids_by_component(stack_id: str) -> dict[str, list[int]]:
    """Live processes started (directly or not) by the stack ``stack_id``, by component, in one /proc scan
    (every process's environment is read: status asks for all components at once)."""
    found: dict[str, list[int]] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        env = _environ(int(entry.name))
        if env.get(STACK_ID_ENV) == stack_id and start_ticks(int(entry.name)) is not None:
            found.setdefault(env.get(COMPONENT_ENV, ""), []).append(int(entry.name))
    return {name: sorted(pids) for name, pids in found.items()}


def marked_pids(stack_id: str, component: str | None = None) -> list[int]:
    """Live processes started (directly or not) by the stack ``stack_id`` (optionally one component)."""
    groups = pids_by_component(stack_id)
    if component is not None:
        return groups.get(component, [])
    return sorted(pid for pids in groups.values() for pid in pids)


def signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_marked(stack_id: str, component: str | None = None, grace: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL after ``grace`` seconds, every process still marked with the stack (component);
    returns the pids found. The last line of defence after the orderly stop."""
    pids = marked_pids(stack_id, component)
    terminate(pids, grace)
    return pids


def terminate(pids: list[int], grace: float) -> None:
    """SIGTERM every pid, wait up to ``grace`` seconds for all to exit, SIGKILL the ones still alive."""
    for pid in pids:
        signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            signal_pid(pid, signal.SIGKILL)


def die_with_parent() -> None:
    """``preexec_fn`` for children: SIGTERM them if the supervisor dies (even by SIGKILL), so a crashed
    supervisor leaves no orphans; the consumer then still stops between micro-batches."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True on an HTTP 2xx answer; any error (refused, timeout, 5xx) means not (yet) serving."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URLs we built
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False
