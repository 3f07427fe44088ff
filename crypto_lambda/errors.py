"""The one error boundary of every `crypto-lambda` command and long-running component.

Why one place: a user who passes a bad file, points BINANCE_API_URL at nothing or starts a second web page on
a busy port should read ONE line that names the input or the service and says what to do, and a script
should get an honest exit code: 2 for a usage error (bad argument, file, date, SQL), 1 for a runtime fault
(a service unreachable, a port in use, out of memory, a corrupt state file, a bug), 130 when interrupted.
The traceback is printed only with ``-v``; for runtime faults it is also appended to
``$CRYPTO_LAMBDA_HOME/logs/errors.log`` (a component run by ``crypto-lambda up`` logs there too).
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

USAGE, FAULT, INTERRUPTED = 2, 1, 130
ERROR_MARK = ": error: "  # "<prog>: error: <message>", argparse's own format for usage errors too
ERRORS_LOG = "errors.log"
log = logging.getLogger(__name__)


class Fault(RuntimeError):
    """A runtime fault whose message is already phrased for the user (what failed, which service or file,
    what to do). Raised where the context is known, so the boundary never has to guess."""


class UsageError(ValueError):
    """Bad input whose message names it; exits 2 like every ValueError."""


def _java_class(exc: BaseException) -> str:
    """The Java exception class behind a Py4J/PySpark error ('' when there is none)."""
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    try:
        return str(java.getClass().getName()) if java is not None else ""
    except Exception:  # noqa: BLE001 - the JVM may be gone: then there is no class to ask for
        return ""


def _first_line(text: object) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _spark_jvm_died(wait_s: float = 3.0) -> bool:
    """True when the JVM this process's PySpark launched has exited, or exits within ``wait_s``: a JVM killed
    by an OutOfMemoryError often reaches Python first as a refused connection, before the process is gone."""
    if "pyspark" not in sys.modules:
        return False
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    proc = getattr(getattr(context, "_gateway", None), "proc", None)
    if proc is None:
        return False
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def _spark(exc: BaseException) -> tuple[int, str] | None:
    """Spark's errors: out of memory and a dead JVM are faults; an analysis or parse error is bad SQL."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a Py4JJavaError asks the JVM for its text; a dead JVM cannot answer
        text = "Answer from Java side is empty"
        names.add("Py4JError")
    if "OutOfMemoryError" in text or "OutOfMemoryError" in _java_class(exc):
        return FAULT, ("Spark ran out of memory: narrow the query (LIMIT, WHERE, aggregate) or give it more "
                       "with SPARK_DRIVER_MEMORY=4g")
    # A dead gateway shows as an empty answer, or (a call racing the JVM's exit) as a plain Py4JError saying an
    # object "does not exist in the JVM": then ask whether the JVM is gone rather than call it a bug.
    lost = names & {"Py4JNetworkError"} or (names & {"Py4JError"} and "Answer from Java side is empty" in text) \
        or (type(exc).__name__ == "Py4JError" and "does not exist in the JVM" in text and _spark_jvm_died())
    if lost or (isinstance(exc, ConnectionError) and _spark_jvm_died()):
        return FAULT, ("Spark's JVM stopped answering (it died, most often out of memory): rerun with a "
                       "narrower query or SPARK_DRIVER_MEMORY=4g")
    if names & {"AnalysisException", "ParseException"}:
        return USAGE, f"SQL error: {_first_line(text)}"
    if names & {"PySparkException", "Py4JJavaError"}:
        return FAULT, f"Spark failed: {_first_line(text)}"
    return None


def _os_error(exc: OSError) -> tuple[int, str]:
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno == errno.EADDRINUSE:
        return FAULT, f"{where}address already in use ({exc.strerror}): choose another --port or stop what uses it"
    if exc.errno == errno.ENOSPC:
        return FAULT, f"{where}no space left on the device: free space under CRYPTO_LAMBDA_HOME and rerun"
    if isinstance(exc, PermissionError):
        return FAULT, f"{where}permission denied: check the file's owner and mode (or CRYPTO_LAMBDA_HOME)"
    return FAULT, f"{where}{exc.strerror or exc}"


def describe(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one line) for an expected fault; None for anything else (a bug)."""
    from crypto_lambda.exchange.client import ExchangeError

    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED, ("interrupted; what was written is complete (every write is atomic): rerun the "
                             "command to finish")
    if isinstance(exc, ExchangeError):
        return FAULT, f"{exc}; check BINANCE_API_URL (or start `crypto-lambda replay-exchange`) and rerun"
    if isinstance(exc, Fault):
        return FAULT, str(exc)
    spark = _spark(exc)
    if spark is not None:
        return spark
    if isinstance(exc, FileNotFoundError):
        return USAGE, str(exc) if exc.filename is None else f"{exc.filename}: no such file or directory"
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, ValueError):
        return USAGE, str(exc)
    if isinstance(exc, MemoryError):
        return FAULT, "out of memory: narrow the request (fewer days, symbols or rows) and rerun"
    if "DatabaseError" in {cls.__name__ for cls in type(exc).__mro__}:  # sqlite3 / SQLAlchemy
        return FAULT, (f"the Dagster instance's storage is unreadable ({_first_line(exc)[:200]}): check "
                       "DAGSTER_HOME (default $CRYPTO_LAMBDA_HOME/dagster) or move it aside to start afresh")
    return None


def _errors_log() -> Path | None:
    from crypto_lambda.config import home_dir

    path = home_dir() / "logs" / ERRORS_LOG
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path


def record_traceback(exc: BaseException, context: str) -> Path | None:
    """Append the traceback to ``logs/errors.log`` under the home; None when the home is not writable."""
    path = _errors_log()
    if path is None:
        return None
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"--- {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} pid {os.getpid()} "
                     f"{context}\n")
            fh.write("".join(traceback.format_exception(exc)))
    except OSError:
        return None
    return path


def report(exc: BaseException, *, prog: str, context: str, verbose: bool) -> int:
    """Print the one line for ``exc`` (and with ``verbose`` its traceback) to stderr; return the exit code."""
    known = describe(exc)
    code, message = known if known else (FAULT, f"internal error: {type(exc).__name__}: {_first_line(exc)}")
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    if code == FAULT:
        saved = record_traceback(exc, context)
        if known is None:
            message += f" (a bug: the traceback is in {saved}; -v prints it)" if saved else " (-v prints it)"
    print(f"{prog}{ERROR_MARK}{message}", file=sys.stderr, flush=True)
    return code


def last_error(log_path: str | Path | None, tail_bytes: int = 65_536) -> str | None:
    """The newest one-line error a command printed into ``log_path`` (a stack component's log), or None:
    `crypto-lambda status` and the supervisor show it beside a component that died."""
    if not log_path:
        return None
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - tail_bytes))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    return next((line.strip() for line in reversed(lines) if ERROR_MARK in line and not line.startswith(" ")), None)
