"""``$CRYPTO_LAMBDA_HOME/stack/state.json``: the supervisor's published view of the stack.

Written atomically (temp file + ``os.replace``) on every change, so ``crypto-lambda status`` in another
terminal never reads half a file. It is marked ``stopped`` rather than deleted on shutdown: the last pids,
exit codes and restart counts stay inspectable after the stack is down.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from crypto_lambda.config import Settings
from crypto_lambda.lake import atomic_text


def stack_dir(settings: Settings) -> Path:
    return settings.home / "stack"


def state_path(settings: Settings) -> Path:
    return stack_dir(settings) / "state.json"


def logs_dir(settings: Settings) -> Path:
    return settings.home / "logs"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_state(path: Path, state: dict[str, Any]) -> None:
    atomic_text(path, json.dumps(state, indent=2, sort_keys=True) + "\n")  # umask mode: status may be another user


def read_state(path: Path) -> dict[str, Any] | None:
    """The state, or None when there is none (or it is unreadable: status then says 'not running')."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
