"""`import`: load history files into the staging area of raw partitions."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    pass
