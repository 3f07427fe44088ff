"""The ``crypto-lambda up`` supervisor: start the stack in order, keep it running, stop it cleanly.

Why a supervisor of plain child processes (not threads, not compose): each component is a command that
already runs alone, Spark and Dagster want their own processes anyway, and a child that crashes can be
restarted without touching the others. Each child gets its own process group (so a terminal's Ctrl-C reaches
only the supervisor, which then stops the children in order) and a log file under
``$CRYPTO_LAMBDA_HOME/logs/<component>.log``.

Stopping is the reverse of starting: web page and Dagster first, in parallel (no new runs), then the consumer (its stop
signal goes to the Python process only, which ends the streaming queries between micro-batches, so every
``offsets/N`` in the checkpoint has its ``commits/N``), the producer (flushes), the broker, the exchange. A
component that overstays its timeout is killed with its group, and a final sweep kills anything still
carrying the stack's environment marker (see :mod:`procs`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto_lambda import machine
from crypto_lambda.config import Settings, ensure_dagster_home
from crypto_lambda.errors import last_error
from crypto_lambda_app.stack import procs
from crypto_lambda_app.stack.components import ComponentSpec, StackOptions, base_env, build_components
from crypto_lambda_app.stack.state import logs_dir, now_iso, read_state, state_path, write_state

log = logging.getLogger("crypto_lambda_app.stack")

BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0)
# SIGHUP too: a closed terminal should stop the stack in order, not leave each child to its death signal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# A child that ran this long before dying gets its restart budget back: the bound is on crash loops, not on
# the number of crashes over a stack's lifetime.
STABLE_S = 600.0


class StartupError(RuntimeError):
    """A component did not become ready; the message names it and its log file."""


@dataclass
class Child:
    spec: ComponentSpec
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    ticks: int | None = None
    started_at: str | None = None
    restarts: int = 0  # in total, reported
    recent_restarts: int = 0  # since it last ran STABLE_S, bounded by max_restarts
    spawned_mono: float = 0.0
    state: str = "pending"  # pending | starting | running | restarting | failed | stopped
    log_offset: int = 0
    next_restart: float = 0.0
    last_exit: int | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join("    " + line for line in text[-lines:])


def _why(child: Child) -> str:
    """The child's own one-line error, when its last words were one (a busy port, an unreachable service)."""
    line = last_error(child.log_path)
    return f": {line}" if line else ""


class Supervisor:
    def __init__(self, settings: Settings, options: StackOptions) -> None:
        self.settings = settings
        self.options = options
        self.stack_id = uuid.uuid4().hex
        self.state_file = state_path(settings)
        self.children = [Child(spec, logs_dir(settings) / f"{spec.name}.log") for spec in build_components(options)]
        self.env = base_env(settings, options, self.stack_id)
        self.stop_requested = False
        self.status = "starting"
        self.started_at = now_iso()
        self._lock = threading.Lock()

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Start everything, supervise until a signal, stop everything. 0 = clean stop, 1 = startup failed."""
        self._refuse_second_stack()
        self._check_ports()
        ensure_dagster_home(self.settings)  # dagster.yaml into the instance the children share
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        code = 0
        began = time.monotonic()
        try:
            for child in self.children:
                if self.stop_requested:
                    break
                self._spawn(child)
                self._wait_ready(child)
            if not self.stop_requested:
                self.status = "running"
                self._write()
                log.info("stack up in %.0f s: %s", time.monotonic() - began, ", ".join(
                    f"{c.spec.name}{' ' + c.spec.url if c.spec.url else ''}" for c in self.children))
            while not self.stop_requested:
                self._supervise()
                time.sleep(0.5)
        except StartupError as exc:
            log.error("%s", exc)
            code = 1
        finally:
            self.shutdown()
        return code

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if not self.stop_requested:
            log.info("%s received: stopping the stack", signal.Signals(signum).name)
        self.stop_requested = True

    def _refuse_second_stack(self) -> None:
        """One stack per home. A previous supervisor that died without stopping (SIGKILL, OOM) may have left
        children behind (they get SIGTERM from the kernel, but helpers need not): sweep them first."""
        state = read_state(self.state_file)
        if not state or state.get("status") == "stopped":
            return
        if machine.pid_alive(state.get("supervisor_pid"), state.get("supervisor_ticks")):
            raise ValueError(f"a stack is already running on {self.settings.home} "
                             f"(supervisor pid {state['supervisor_pid']}); stop it first")
        if state.get("stack_id"):
            left = procs.kill_marked(state["stack_id"], grace=10.0)
            if left:
                log.warning("killed %d process(es) left by the previous stack (supervisor pid %s died): %s",
                            len(left), state.get("supervisor_pid"), left)

    def _check_ports(self) -> None:
        for child in self.children:
            port = child.spec.port
            if port and not machine.port_free(port):
                raise ValueError(f"{child.spec.name}: port {port} on 127.0.0.1 is already in use "
                                 f"(pick another with the matching --*-port option)")

    # ---- one child ---------------------------------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**self.env, procs.COMPONENT_ENV: child.spec.name}
        with open(child.log_path, "ab") as out:
            out.write(f"\n=== {now_iso()} crypto-lambda up: starting {child.spec.name} "
                      f"(restart {child.restarts}): {' '.join(child.spec.argv)}\n".encode())
            out.flush()
            child.log_offset = out.tell()
            child.proc = subprocess.Popen(child.spec.argv, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, env=env, cwd=self.settings.home,
                                          start_new_session=True, preexec_fn=procs.die_with_parent)
        child.ticks = machine.start_ticks(child.proc.pid)
        child.spawned_mono = time.monotonic()
        child.started_at = now_iso()
        child.state = "starting"
        log.info("started %s (pid %s), log %s", child.spec.name, child.proc.pid, child.log_path)
        self._write()

    def _is_ready(self, child: Child) -> bool:
        kind, target = child.spec.ready
        if kind == "http":
            return procs.http_ok(str(target))
        if kind == "tcp":
            return machine.port_open(int(target))
        try:
            with open(child.log_path, "rb") as handle:
                handle.seek(child.log_offset)
                return str(target).encode() in handle.read()
        except FileNotFoundError:
            return False

    def _wait_ready(self, child: Child) -> None:
        began = time.monotonic()
        next_note = began + 10
        while not self.stop_requested:
            code = child.exited()
            if code is not None:
                child.last_exit, child.state = code, "failed"
                self._write()
                raise StartupError(f"{child.spec.name} exited with code {code} while starting; "
                                   f"see {child.log_path}:\n{child.log_tail()}")
            if self._is_ready(child):
                child.state = "running"
                log.info("%s ready after %.1f s", child.spec.name, time.monotonic() - began)
                self._write()
                return
            waited = time.monotonic() - began
            if waited > self.options.ready_timeout:
                raise StartupError(f"{child.spec.name} not ready after {waited:.0f} s (waiting for "
                                   f"{child.spec.ready[0]} {child.spec.ready[1]}); see {child.log_path}:\n"
                                   f"{child.log_tail()}")
            if time.monotonic() >= next_note:
                log.info("waiting for %s (%.0f s so far; log %s)", child.spec.name, waited, child.log_path)
                next_note += 10
            time.sleep(0.3)

    def _supervise(self) -> None:
        """One pass of the restart policy: notice deaths, restart with backoff up to ``max_restarts``."""
        now = time.monotonic()
        for child in self.children:
            if child.state in ("starting", "running"):
                code = child.exited()
                if code is None:
                    if child.state == "starting" and self._is_ready(child):
                        child.state = "running"
                        log.info("%s is back (restart %d)", child.spec.name, child.restarts)
                        self._write()
                    continue
                child.last_exit = code
                self._clean_leftovers(child)
                if now - child.spawned_mono >= STABLE_S:
                    child.recent_restarts = 0
                if child.recent_restarts >= self.options.max_restarts:
                    child.state = "failed"
                    log.error("%s exited with code %s and used up its %d restarts in a row; leaving it down (log %s)%s",
                              child.spec.name, code, self.options.max_restarts, child.log_path, _why(child))
                else:
                    delay = BACKOFF_S[min(child.recent_restarts, len(BACKOFF_S) - 1)]
                    child.state, child.next_restart = "restarting", now + delay
                    log.warning("%s exited unexpectedly with code %s; restarting in %.0f s (log %s)%s",
                                child.spec.name, code, delay, child.log_path, _why(child))
                self._write()
            elif child.state == "restarting" and now >= child.next_restart:
                child.restarts += 1
                child.recent_restarts += 1
                self._spawn(child)

    def _clean_leftovers(self, child: Child, grace: float = 2.0) -> None:
        """A dead child can leave helpers behind (the Kafka JVM in its own session, the Spark JVM, a Dagster run
        worker): SIGTERM them, so a run worker can still record its run as failed, then SIGKILL after
        ``grace``; before a restart this frees the port."""
        left = procs.kill_marked(self.stack_id, child.spec.name, grace=grace)
        if child.proc is not None:
            procs.signal_group(child.proc.pid, signal.SIGKILL)
        if left:
            log.info("%s: killed leftover process(es) %s", child.spec.name, left)

    # ---- shutdown ----------------------------------------------------------------------------------------------
    def _stop_child(self, child: Child) -> None:
        proc = child.proc
        if proc is None or child.state in ("stopped", "pending"):
            return
        if proc.poll() is None:
            log.info("stopping %s (pid %s, %s)", child.spec.name, proc.pid, signal.Signals(child.spec.stop_signal).name)
            procs.signal_pid(proc.pid, child.spec.stop_signal)
            began = time.monotonic()
            next_note = began + 10
            while proc.poll() is None and time.monotonic() - began < child.spec.stop_timeout:
                if time.monotonic() >= next_note:
                    log.info("still stopping %s (%.0f s)", child.spec.name, time.monotonic() - began)
                    next_note += 10
                time.sleep(0.2)
            if proc.poll() is None:
                log.warning("%s did not stop within %.0f s: SIGTERM/SIGKILL to its process group (log %s)",
                            child.spec.name, child.spec.stop_timeout, child.log_path)
                procs.signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    procs.signal_group(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        child.last_exit = proc.returncode
        # Its work is done once the leader is gone (the consumer committed its last batch), so helpers that
        # outlive it (the Spark JVM, Dagster code servers, a run worker that records its run as failed) get
        # SIGTERM now and SIGKILL after a grace period.
        self._clean_leftovers(child, grace=10.0)
        child.state = "stopped"
        self._write()

    def _stop_quietly(self, child: Child) -> None:
        try:
            self._stop_child(child)
        except Exception:  # noqa: BLE001 - one failed stop must not leave the later ones running
            log.exception("stopping %s failed", child.spec.name)

    def shutdown(self) -> None:
        """Stop in reverse start order; signals are ignored meanwhile so a second Ctrl-C cannot cut it short."""
        self.status = "stopping"
        self._write()
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        for group in sorted({c.spec.stop_group for c in self.children}):
            members = [c for c in reversed(self.children) if c.spec.stop_group == group]
            threads = [threading.Thread(target=self._stop_quietly, args=(c,), name=f"stop-{c.spec.name}")
                       for c in members]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        orphans = procs.kill_marked(self.stack_id, grace=3.0)
        if orphans:
            log.warning("killed %d orphaned process(es): %s", len(orphans), orphans)
        remaining = procs.marked_pids(self.stack_id)
        self.status = "stopped" if not remaining else "stopped-with-leftovers"
        self._write()
        if remaining:
            log.error("processes still alive after shutdown: %s", remaining)
        else:
            log.info("stack stopped; no process left")

    # ---- state file --------------------------------------------------------------------------------------------
    def _write(self) -> None:
        with self._lock:  # stop threads of one group write concurrently
            self._write_locked()

    def _write_locked(self) -> None:
        write_state(self.state_file, {
            "status": self.status, "supervisor_pid": os.getpid(), "supervisor_ticks": machine.start_ticks(os.getpid()),
            "stack_id": self.stack_id, "started_at": self.started_at, "updated_at": now_iso(),
            "mode": "live" if self.options.live else "replay", "home": str(self.settings.home),
            "dagster_home": str(self.settings.dagster_home), "max_restarts": self.options.max_restarts,
            "components": [{
                "name": c.spec.name, "pid": c.pid, "pid_ticks": c.ticks, "port": c.spec.port, "url": c.spec.url,
                "probe": list(c.spec.probe) if c.spec.probe else None, "started_at": c.started_at,
                "restarts": c.restarts, "state": c.state, "last_exit": c.last_exit, "log": str(c.log_path),
                "command": c.spec.argv,
            } for c in self.children],
        })
