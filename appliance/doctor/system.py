"""Doctor checks 5-7: the state directory (writable, free disk, summaries database),
memory (available and cgroup limits versus what the recognizers need), and the systemd
service (optional)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from appliance.config import StorageConfig
from appliance.config_env import SERVICE_UNIT, resolve_state_dir
from appliance.doctor.check import MIB, Check, Status, fail, mib, ok, warn, worst
from appliance.errors import STORE_CORRUPT, ApplianceError
from appliance.sinks.store.summaries import DB_NAME, SummaryStore

STATE = "state dir"
MEMORY = "memory"
SERVICE = "service"
DISK_WARN_BYTES = 500 * MIB
DISK_FAIL_BYTES = 50 * MIB
BASE_NEED_BYTES = 150 * MIB
"""Memory of the process without recognizers (Python, numpy, onnxruntime, Silero)."""
MODEL_FACTOR = 3.2
"""The loaded model (one, shared by every recognizer) takes about this many times its size
on disk (the Korean test model: 253 MB on disk, ~800 MiB loaded; README benchmarks)."""
RECOGNIZER_BYTES = 50 * MIB
"""Each recognizer beyond the shared model (900/927/1296 MiB peak for 1/4/8 of them)."""
UNLIMITED = 1 << 60
"""cgroup limits at or above this are "no limit" (v1 writes 2**63 rounded to a page)."""


# ------------------------------------------------------------------------- state dir
def _state_origin(storage: StorageConfig, env: Mapping[str, str]) -> str:
    if storage.state_dir:
        same = env.get("APPLIANCE_STATE_DIR", "").strip() == storage.state_dir
        return "APPLIANCE_STATE_DIR" if same else "[storage] state_dir"
    return "STATE_DIRECTORY" if env.get("STATE_DIRECTORY") else "default"


def _writable(path: Path) -> str:
    """"" when a file can be created in the existing directory ``path``, else why not."""
    try:
        fd, name = tempfile.mkstemp(prefix=".doctor-", dir=path)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return ""


def check_state_dir(storage: StorageConfig, env: Mapping[str, str],
                    warn_bytes: int = DISK_WARN_BYTES, fail_bytes: int = DISK_FAIL_BYTES) -> Check:
    """Resolved, writable (or creatable), enough free disk, the summaries database."""
    path = resolve_state_dir(storage.state_dir, env)
    where = f"{path} ({_state_origin(storage, env)})"
    fix_dir = (f"create it and give the appliance's user write access (mkdir -p {path}; "
               "chown), or set [storage] state_dir / APPLIANCE_STATE_DIR")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if path.exists():
        if not path.is_dir():
            return fail(STATE, f"{where} is not a directory", fix_dir)
        why = _writable(path)
        if why:
            return fail(STATE, f"{where} is not writable ({why})", fix_dir)
        state = "writable"
    elif not existing.is_dir():
        return fail(STATE, f"{where} cannot be created: {existing} is not a directory", fix_dir)
    elif not os.access(existing, os.W_OK | os.X_OK):
        return fail(STATE, f"{where} cannot be created: {existing} is not writable", fix_dir)
    else:
        state = "not there yet, will be created"
    free = shutil.disk_usage(existing).free
    found: list[tuple[Status, str]] = []
    if free < fail_bytes:
        found.append(("fail", f"only {mib(free)} free on its disk (need ≥ {mib(fail_bytes)})"))
    elif free < warn_bytes:
        found.append(("warn", f"only {mib(free)} free on its disk (below {mib(warn_bytes)})"))
    parts = [f"{where} {state}", f"{mib(free)} free"]
    fix = (f"free disk space on the disk of {existing}, or move [storage] state_dir to a "
           "disk with room")
    if storage.summaries:
        db = path / DB_NAME
        size = db.stat().st_size if db.is_file() else None
        parts.append(f"{DB_NAME} {mib(size)} (kept below {storage.summaries_max_mb:g} MiB)"
                     if size is not None else f"no {DB_NAME} yet")
        if size is not None and (trouble := summaries_trouble(db)):
            found.append(("fail", trouble[0]))
            fix = trouble[1]
    else:
        parts.append("summaries off")
    if storage.transcripts:
        parts.append(f"transcripts retained {storage.transcript_days:g} days")
    if not found:
        return ok(STATE, ", ".join(parts))
    detail = ", ".join(parts) + ": " + "; ".join(d for _, d in found)
    return Check(STATE, worst([s for s, _ in found]), detail, fix)


def summaries_trouble(db: Path) -> tuple[str, str] | None:
    """Why the service could not keep summaries in the existing database ``db`` (damaged,
    newer schema, read-only), with the fix; None when it is fine."""
    try:
        with SummaryStore.open_readonly(db) as store:
            store.count()
    except ApplianceError as exc:
        if exc.code == STORE_CORRUPT:
            return (f"{DB_NAME} is damaged ({exc.message.split('(', 1)[-1].split(')')[0]})",
                    f"stop the service, move {db} (and its -wal, -shm files) aside, start it: "
                    "a new, empty database is created")
        return exc.message, "see the message; `appliance summaries list` reads it read-only"
    if not os.access(db, os.R_OK | os.W_OK):
        return (f"{DB_NAME} is read-only for this user",
                f"give the appliance's user write access to {db} (chown), or check that its "
                "file system is not mounted read-only")
    return None


# ---------------------------------------------------------------------------- memory
def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable in bytes, or None when it cannot be read."""
    try:
        text = meminfo.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r"^MemAvailable:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit():
        return None  # "max": no limit
    value = int(text)
    return value if value < UNLIMITED else None


def _unit_memory_max(unit: Path) -> int | None:
    """``MemoryMax=`` of the service unit (K/M/G/T suffixes; infinity and % ignored)."""
    try:
        text = unit.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = None
    for m in re.finditer(r"^\s*MemoryMax\s*=\s*(\d+(?:\.\d+)?)\s*([KMGT]?)\s*$", text,
                         re.MULTILINE | re.IGNORECASE):
        scale = 1024 ** " KMGT".index(m.group(2).upper() or " ")
        found = int(float(m.group(1)) * scale)
    return found


def memory_limits(proc_cgroup: Path = Path("/proc/self/cgroup"),
                  root: Path = Path("/sys/fs/cgroup"),
                  unit: Path = SERVICE_UNIT) -> list[tuple[str, int]]:
    """The memory limits that apply: this process's cgroup (v2 memory.max or v1
    memory.limit_in_bytes), the running service's cgroup and the unit's MemoryMax=."""
    out: list[tuple[str, int]] = []
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for line in lines:
        _, controllers, rel = [*line.split(":", 2), "", ""][:3]
        rel = rel.lstrip("/")
        if controllers == "":  # cgroup v2
            candidates = [root / rel / "memory.max", root / "memory.max"]
        elif "memory" in controllers.split(","):
            candidates = [root / "memory" / rel / "memory.limit_in_bytes",
                          root / "memory" / "memory.limit_in_bytes"]
        else:
            continue
        limit = next((v for p in candidates if (v := _read_limit(p)) is not None), None)
        if limit is not None:
            out.append(("this shell's cgroup", limit))
            break
    svc = _read_limit(root / "system.slice" / "appliance.service" / "memory.max")
    if svc is not None:
        out.append(("appliance.service cgroup", svc))
    unit_max = _unit_memory_max(unit)
    if unit_max is not None:
        out.append((f"MemoryMax= in {unit}", unit_max))
    return out


def memory_need(model_bytes: int | None, recognizers: int) -> int:
    """Estimated memory of the running appliance (bytes)."""
    if not model_bytes or recognizers <= 0:
        return BASE_NEED_BYTES
    return BASE_NEED_BYTES + round(MODEL_FACTOR * model_bytes) + recognizers * RECOGNIZER_BYTES


def judge_memory(need: int, available: int | None, limits: list[tuple[str, int]],
                 how: str) -> Check:
    """Need versus MemAvailable and every limit (warn when short)."""
    parts = [f"need about {mib(need)} ({how})"]
    parts.append(f"{mib(available)} available" if available is not None
                 else "MemAvailable unreadable")
    parts += [f"limit {mib(v)} ({label})" for label, v in limits]
    short: list[str] = []
    fixes: list[str] = []
    if available is not None and available < need:
        short.append("less memory available than needed")
        fixes.append("stop other programs or add memory; or set [asr] customer = false "
                     "(one recognizer) or install a smaller model")
    tight = [(label, v) for label, v in limits if v < need]
    if tight:
        short.append("a memory limit is below the need: " + ", ".join(name for name, _ in tight))
        fixes.append(f"raise MemoryMax= to at least {mib(need * 1.25)} "
                     "(systemctl edit appliance)")
    if not short:
        return ok(MEMORY, ", ".join(parts))
    return warn(MEMORY, ", ".join(parts) + ": " + "; ".join(short), "; ".join(fixes))


def check_memory(model_bytes: int | None, recognizers: int,
                 meminfo: Path = Path("/proc/meminfo"),
                 limits: list[tuple[str, int]] | None = None) -> Check:
    need = memory_need(model_bytes, recognizers)
    if model_bytes and recognizers > 0:
        how = (f"{mib(BASE_NEED_BYTES)} base + {MODEL_FACTOR:g} × {mib(model_bytes)} model + "
               f"{recognizers} recognizer(s) × {mib(RECOGNIZER_BYTES)}")
    else:
        how = f"{mib(BASE_NEED_BYTES)} base, no recognizer"
    return judge_memory(need, mem_available(meminfo),
                        memory_limits() if limits is None else limits, how)


# --------------------------------------------------------------------------- service
def check_service(unit: Path = SERVICE_UNIT, systemctl: str | None = None) -> Check:
    """Optional: the systemd unit installed (and whether it is active)."""
    if not unit.is_file():
        return warn(SERVICE, f"not installed as a service ({unit} does not exist; optional)",
                    "to start the appliance at boot: appliance install-service (as root)")
    tool = systemctl or shutil.which("systemctl")
    if tool is None:
        return ok(SERVICE, f"{unit} installed (systemctl not found: state unknown)")
    try:
        res = subprocess.run([tool, "is-active", unit.name], capture_output=True, text=True,
                             timeout=5, check=False)
        state = res.stdout.strip() or res.stderr.strip() or "unknown"
    except (OSError, subprocess.SubprocessError) as exc:
        state = f"unknown ({exc})"
    if state == "active":
        return ok(SERVICE, f"{unit} installed, active")
    return warn(SERVICE, f"{unit} installed but {state}",
                f"systemctl enable --now {unit.name}; journalctl -u {unit.name} says why it "
                "stopped")
