"""Library results -> Dagster materialization metadata."""

from __future__ import annotations

import dagster as dg


def as_metadata(meta: dict) -> dict:
    """The library's plain result dict with its dict and list values as JSON metadata (the rest, numbers and
    text, Dagster types itself)."""
    return {k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v for k, v in meta.items()}
