"""What keeps the producer's stream whole across connections and processes.

A connection being rotated in buffers what it sends until the old one has caught up (``RotationBuffer``); a
process saves each symbol's last event time (``last_seen.json`` beside the spill) so the next process publishes
a restart gap marker from there (``load_last_seen``, ``save_last_seen``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from crypto_lambda.lake.files import atomic_text


@dataclass
class RotationBuffer:
    """What a connection being rotated in has sent before it becomes the active one, with the two facts the
    handover waits on, taken as each message arrives (not re-parsed on every check)."""

    texts: list[str] = field(default_factory=list)
    first_ms: int | None = None  # earliest exchange event time
    first_trade: dict[str, int] = field(default_factory=dict)  # symbol -> first trade id

    def add(self, text: str) -> None:
        self.texts.append(text)
        try:
            data = json.loads(text).get("data") or {}
        except (ValueError, AttributeError):
            return
        if isinstance(data.get("E"), int):
            self.first_ms = data["E"] if self.first_ms is None else min(self.first_ms, data["E"])
        if data.get("e") == "trade" and isinstance(data.get("s"), str):
            self.first_trade.setdefault(data["s"], int(data.get("t", -1)))


LAST_SEEN_FILE = "last_seen.json"


def load_last_seen(path: Path) -> dict[str, int]:
    """The previous process's last event time per symbol; {} on a first start or an unreadable file (then no
    restart marker: the batch layer's completeness checks still find the hole)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int) and v > 0}


def save_last_seen(path: Path, seen: dict[str, int]) -> None:
    """Atomically, so a process killed mid-write leaves the previous file, never half of one."""
    atomic_text(path, json.dumps(seen, sort_keys=True) + "\n")
