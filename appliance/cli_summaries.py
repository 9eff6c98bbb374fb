"""Placeholder: filled in by the summaries work."""

from __future__ import annotations

import argparse
from typing import Any


def add_summaries_parser(sub: Any) -> None:
    pass


def run_summaries(args: argparse.Namespace) -> int | None:
    return None
