"""The package layout is the architecture: layers import only downwards, and no module grows
past the size a reader can hold in mind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "appliance"

LAYERS: dict[str, int] = {
    # 0: what every layer shares
    "appliance": 0, "appliance.events": 0, "appliance.cue_payloads": 0, "appliance.errors": 0,
    "appliance.config": 0, "appliance.config_env": 0, "appliance.privacy": 0,
    # 1: the per-call engine, no I/O
    "appliance.engine": 1,
    # 2: streams, sessions, recognition
    "appliance.stream": 2, "appliance.asr": 2,
    # 3: sources and sinks
    "appliance.audio": 3, "appliance.sinks": 3, "appliance.console": 3,
    # 4: the service, diagnostics and the command line
    "appliance.service": 4, "appliance.doctor": 4, "appliance.cli": 4,
    "appliance.__main__": 4,
}
MAX_LINES = 520
"""House style: no module over ~500 lines."""


def layer(module: str) -> int:
    """The layer of a module: its longest prefix in :data:`LAYERS`."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(f"{module} is in no layer: add its package to LAYERS")


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [m for m in found if m == "appliance" or m.startswith("appliance.")]


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_down_the_layers(module: str, path: Path) -> None:
    here = layer(module)
    upward = [m for m in _imports(path) if layer(m) > here]
    assert not upward, f"{module} (layer {here}) imports upwards: {upward}"


def test_the_top_holds_only_what_every_layer_shares() -> None:
    loose = sorted(p.stem for p in PACKAGE.glob("*.py")
                   if p.stem not in ("__init__", "__main__"))
    assert loose == ["config_env", "cue_payloads", "errors", "events", "privacy"]


def test_no_module_is_too_long_to_read() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these modules: {long}"


_IO = {"asyncio", "socket", "sqlite3", "subprocess", "threading", "sounddevice", "vosk",
       "http", "urllib"}


@pytest.mark.parametrize(("module", "path"), [m for m in _modules()
                                              if m[0].startswith("appliance.engine")],
                         ids=[m for m, _ in _modules() if m.startswith("appliance.engine")])
def test_the_engine_does_no_io(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            used.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            used |= {a.name.split(".")[0] for a in node.names}
    assert not used & _IO, f"{module} imports {sorted(used & _IO)}"
