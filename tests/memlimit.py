"""Run one appliance call in a child process under an address-space limit: an input that
makes the code allocate what the input merely declares shows up as a MemoryError there."""

from __future__ import annotations

import subprocess
import sys


def error_code_under_limit(call: str, arg: str, limit_bytes: int, timeout_s: float = 120.0
                           ) -> tuple[str, str]:
    """Run ``call`` (e.g. ``"from appliance.config import load_config as f"``, which must bind
    ``f``) as ``f(arg)`` with RLIMIT_AS = ``limit_bytes``.  Returns (the ApplianceError code
    printed, or "" when the call returned or crashed; the child's stderr tail)."""
    code = ("import resource, sys\n"
            f"resource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes}))\n"
            f"{call}\n"
            "from pathlib import Path\n"
            "from appliance.errors import ApplianceError\n"
            "try:\n    f(Path(sys.argv[1]))\n"
            "except ApplianceError as e:\n    print(e.code)\n")
    out = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True,
                         timeout=timeout_s)
    return (out.stdout.strip() if out.returncode == 0 else ""), out.stderr[-500:]
