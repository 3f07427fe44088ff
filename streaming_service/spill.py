"""Append-only spill file for records the broker could not take, replayed in order when it is back.

Records go to numbered segments (``000001.spill``...), one JSON line each: topic, key, value (text) and the
original timestamp. A segment is deleted only after every record in it was acknowledged, so a crash
during replay re-sends at most one segment (at-least-once; the consumer drops duplicates by trade id).
A torn last line from a crash mid-write is skipped. Writes are flushed per record and fsynced at most every
``fsync_every_s``, bounding what an OS crash (not a process crash) could lose.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpilledRecord:
    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int | None


class SpillFile:
    """Thread-safe; ``append`` from any thread, ``segments``/``read``/``remove`` from the replaying one."""

    def __init__(self, folder: Path, fsync_every_s: float = 1.0) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fsync_every_s = fsync_every_s
        self._lock = threading.Lock()
        self._handle: IO[str] | None = None
        self._current: Path | None = None
        self._last_sync = 0.0
        self.appended = 0
        self.pending = sum(self._count(p) for p in self.segments())

    def segments(self) -> list[Path]:
        return sorted(self.folder.glob("*.spill"))

    def _next_path(self) -> Path:
        existing = self.segments()
        last = int(existing[-1].stem) if existing else 0
        return self.folder / f"{last + 1:06d}.spill"

    def append(self, record: SpilledRecord) -> None:
        line = json.dumps({"t": record.topic, "k": record.key.decode() if record.key is not None else None,
                           "v": record.value.decode(), "ts": record.timestamp_ms}, separators=(",", ":"))
        with self._lock:
            if self._handle is None:
                self._current = self._next_path()
                self._handle = open(self._current, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            self._handle.write(line + "\n")
            self._handle.flush()
            now = time.monotonic()
            if now - self._last_sync >= self.fsync_every_s:
                os.fsync(self._handle.fileno())
                self._last_sync = now
            self.appended += 1
            self.pending += 1

    def seal(self) -> list[Path]:
        """Close the segment being written so everything so far can be replayed; returns all segments."""
        with self._lock:
            if self._handle is not None:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()
                self._handle = None
            return self.segments()

    @staticmethod
    def read(segment: Path) -> Iterator[SpilledRecord]:
        with open(segment, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("spill %s line %d is torn (crash mid-write); skipped", segment.name, number)
                    continue
                key = item.get("k")
                yield SpilledRecord(item["t"], key.encode() if key is not None else None, item["v"].encode(),
                                    item.get("ts"))

    def remove(self, segment: Path, records: int) -> None:
        segment.unlink(missing_ok=True)
        with self._lock:
            self.pending = max(0, self.pending - records)

    @staticmethod
    def _count(segment: Path) -> int:
        with open(segment, "rb") as handle:
            return sum(1 for _ in handle)

    def close(self) -> None:
        self.seal()
