"""Atomic text files for what is not a dataset (state JSON, summaries, configs): every dataset is a Delta
table (:mod:`crypto_lambda.lake.tables`), and Delta's log makes those writes atomic."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def atomic_text(path: Path, text: str) -> Path:
    """Text (JSON, CSV) written via temp file + rename: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
