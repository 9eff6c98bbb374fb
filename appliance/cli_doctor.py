"""Placeholder: filled in by the doctor work."""

from __future__ import annotations

import argparse
from typing import Any


def add_doctor_parser(sub: Any) -> None:
    pass


def run_doctor(args: argparse.Namespace) -> int | None:
    return None
