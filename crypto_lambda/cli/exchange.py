"""`replay-exchange`: run the local replay exchange."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    pass
