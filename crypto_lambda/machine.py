"""Facts about this machine's processes and ports, read from /proc and the socket API: the one home for them,
used by the stack supervisor, the Dagster run sweep and the embedded Kafka alike.

Linux-only on purpose (``/proc``): the project targets Linux dev boxes and CI, and reading ``/proc`` avoids a
psutil dependency.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None if it is
    gone or a zombie. Stored beside each pid so a recycled pid is never mistaken for our child."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the command name may contain spaces and parentheses
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])

def pid_alive(pid: int | None, ticks: int | None = None) -> bool:
    """True while ``pid`` runs (not a zombie) and, if ``ticks`` is given, is still the same process."""
    if not pid:
        return False
    current = start_ticks(pid)
    return current is not None and (ticks is None or current == ticks)


def started_at(pid: int) -> float | None:
    """Start time of a live process in epoch seconds (boot time + its start ticks), None if it is gone."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float | None:
    """Resident memory of one process in MiB (VmRSS), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None

def port_open(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False

def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on the port now. SO_REUSEADDR as the servers themselves use it, so
    connections of a previous run lingering in TIME_WAIT do not count as "in use"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's pick), for tests and components started with 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
