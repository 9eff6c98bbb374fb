"""Placeholder: filled in by the service work."""

from __future__ import annotations

import argparse
from typing import Any


def add_service_parsers(sub: Any) -> None:
    pass


def run_service(args: argparse.Namespace) -> int | None:
    return None
