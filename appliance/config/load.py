"""Loading a TOML file (with the environment overrides) into the frozen
:class:`~appliance.config.schema.Config`, validated at load: finite numbers inside their
ranges, known keys, the relations between keys; bounded in size and nesting before parsing.
Errors name the file, the ``[section] key`` and the allowed values."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from appliance.config.console import check_console
from appliance.config.fleet import check_fleet
from appliance.config.schema import LOG_LEVELS, SECRET_KEYS, Config
from appliance.config.tap import check_tap
from appliance.config_env import apply_env, overridden_by
from appliance.errors import CONFIG_INVALID, CONFIG_NOT_FOUND, ApplianceError, shown

#: The fully commented default file is ~12 000 characters; a file 20x larger is a mistake
#: (and parsing it would cost the service's memory).
MAX_CONFIG_CHARS = 256 * 1024
#: Dotted keys or table headers deeper than this are refused before parsing: tomllib's cost
#: grows with the square of the depth (20 000 levels in 40 KB took 1.6 GB).
MAX_KEY_DEPTH = 32
MAX_TABLES = 4096
"""Entries of one array of tables (``[[tap.rtp.streams]]``) at most."""

_LANGUAGE = re.compile(r"[a-z]{2,3}")


def _bad(src: str, where: str, msg: str) -> ApplianceError:
    return ApplianceError(CONFIG_INVALID, f"{src}: {where}: {msg}")


def _in_range(value: float, lo: float | None, hi: float | None) -> bool:
    """Finite and inside the bounds; written so that NaN (every comparison false) fails."""
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def _build(cls: type, raw: dict[str, Any], src: str, section: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        allowed = ", ".join(sorted(names))
        where = f"[{section}] {unknown[0]}" if section else unknown[0]
        raise _bad(src, where, f"unknown key (allowed: {allowed})")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        f = names[name]
        where = f"[{section}] {name}" if section else name
        hint = hints[name]
        item = _table_list_item(hint)
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise _bad(src, where, "must be a table")
            kwargs[name] = _build(typing.cast(type, hint), value, src,
                                  f"{section}.{name}" if section else name)
        elif item is not None:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise _bad(src, where, f"must be an array of tables ([[{section}.{name}]])")
            if len(value) > MAX_TABLES:
                raise _bad(src, where, f"at most {MAX_TABLES} entries")
            kwargs[name] = [_build(item, v, src, f"{section}.{name}") for v in value]
        elif hint is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _bad(src, where, f"must be a number, not {shown(value)}")
            lo, hi, unit = f.metadata["min"], f.metadata["max"], f.metadata["unit"]
            if not _in_range(value, lo, hi):
                raise _bad(src, where,
                           f"{shown(value)} is out of range {lo}..{hi} {unit}".rstrip())
            kwargs[name] = float(value)
        elif hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _bad(src, where, f"must be a whole number, not {shown(value)}")
            lo, hi, unit = f.metadata["min"], f.metadata["max"], f.metadata["unit"]
            if not _in_range(value, lo, hi):
                raise _bad(src, where,
                           f"{shown(value)} is out of range {lo}..{hi} {unit}".rstrip())
            kwargs[name] = value
        elif hint is str:
            if not isinstance(value, str):
                what = "a secret" if name in SECRET_KEYS else shown(value)
                raise _bad(src, where, f"must be a string, not {what}")
            if (name == "language" and not _LANGUAGE.fullmatch(value)
                    and not (value == "" and f.default == "")):
                raise _bad(src, where, f"{shown(value)} is not a language code like en, de, "
                           "fr (two or three lower-case letters)")
            kwargs[name] = value
        elif hint is bool:
            if not isinstance(value, bool):
                raise _bad(src, where, f"must be true or false, not {shown(value)}")
            kwargs[name] = value
        elif hint == dict[str, list[str]]:  # a table of lists ([console.teams])
            if not isinstance(value, dict) or not all(
                    isinstance(v, list) and all(isinstance(x, str) and x for x in v)
                    for v in value.values()):
                raise _bad(src, where, f"must be a table of lists of strings ([{where}])")
            if len(value) > MAX_TABLES:
                raise _bad(src, where, f"at most {MAX_TABLES} entries")
            kwargs[name] = {k: list(v) for k, v in value.items()}
        elif hint == list[str]:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise _bad(src, where, "must be a list of non-empty strings")
            kwargs[name] = list(value)
        else:  # pragma: no cover - a field type the loader does not know yet
            raise TypeError(f"unsupported config type {hint!r}")
    return cls(**kwargs)


def _table_list_item(hint: Any) -> type | None:
    """The dataclass of a ``list[SomeConfig]`` field (an array of tables), else None."""
    if typing.get_origin(hint) is list:
        (arg,) = typing.get_args(hint)
        if dataclasses.is_dataclass(arg):
            return typing.cast(type, arg)
    return None


def _check_relations(cfg: Config, src: str) -> None:
    for broken in (check_tap(cfg.tap, is_loopback), check_fleet(cfg.fleet, is_loopback),
                   check_console(cfg.console, is_loopback)):
        if broken is not None:
            raise _bad(src, *broken)
    if cfg.vad.off_threshold > cfg.vad.on_threshold:
        raise _bad(src, "[vad] off_threshold", "must not exceed on_threshold")
    if cfg.rate.min_syllables_per_s >= cfg.rate.max_syllables_per_s:
        raise _bad(src, "[rate] min_syllables_per_s", "must be below max_syllables_per_s")
    if cfg.rate.min_wpm >= cfg.rate.max_wpm:
        raise _bad(src, "[rate] min_wpm", "must be below max_wpm")
    if 0 < cfg.calls.idle_end_s < 10:
        raise _bad(src, "[calls] idle_end_s", "must be 0 (off) or at least 10 s")
    if cfg.hold.check_back_s >= cfg.hold.too_long_s:
        raise _bad(src, "[hold] check_back_s", "must be below too_long_s")
    if cfg.audio.wiring not in ("stereo", "two_devices"):
        raise _bad(src, "[audio] wiring", f"{shown(cfg.audio.wiring)}: allowed stereo, two_devices")
    if cfg.audio.wiring == "stereo" and cfg.audio.agent_channel == cfg.audio.customer_channel:
        raise _bad(src, "[audio] agent_channel", "must differ from customer_channel")
    if cfg.dashboard.enabled and not cfg.dashboard.token and not is_loopback(cfg.dashboard.host):
        raise _bad(src, "[dashboard] host", f"{shown(cfg.dashboard.host)} is beyond loopback: set "
                   "[dashboard] token (or APPLIANCE_DASHBOARD_TOKEN, or the dashboard-token "
                   "credential), or bind 127.0.0.1")
    if cfg.logging.level not in LOG_LEVELS:
        raise _bad(src, "[logging] level",
                   f"{shown(cfg.logging.level)}: allowed {', '.join(LOG_LEVELS)}")
    if cfg.logging.format not in ("auto", "text", "json"):
        raise _bad(src, "[logging] format",
                   f"{shown(cfg.logging.format)}: allowed auto, text, json")
    if cfg.audio.wiring == "two_devices" and not (cfg.audio.agent_device
                                                  and cfg.audio.customer_device):
        raise _bad(src, "[audio] agent_device",
                   "two_devices wiring needs agent_device and customer_device")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (an empty host means every address)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def config_from_dict(raw: dict[str, Any], src: str = "<config>") -> Config:
    """Validate a parsed TOML document and build the frozen :class:`Config`."""
    cfg = typing.cast(Config, _build(Config, raw, src, ""))
    _check_relations(cfg, src)
    return cfg


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate ``path``; ``None`` gives the defaults.  With ``env`` (the process
    environment, from the CLI) the documented overrides of :mod:`appliance.config_env`
    apply on top of the file."""
    if path is None:
        if env and (overridden_by(env) or env.get("CREDENTIALS_DIRECTORY")):
            return config_from_dict(apply_env({}, env), _env_src("defaults", env))
        return Config()
    try:
        if path.is_dir():
            raise ApplianceError(CONFIG_NOT_FOUND, f"{path} is a directory, not a config file")
        with path.open("rb") as f:  # never more than the bound (a config is a few kB)
            data = f.read(MAX_CONFIG_CHARS * 4 + 1)
    except FileNotFoundError as exc:
        raise ApplianceError(CONFIG_NOT_FOUND, f"config file not found: {path}") from exc
    except OSError as exc:
        raise ApplianceError(CONFIG_NOT_FOUND, f"cannot read config file {path}: "
                             f"{exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is fine
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ApplianceError(CONFIG_INVALID, f"{path}: line {line} is not UTF-8 text (byte "
                             f"{exc.start}); save the file as UTF-8") from exc
    if len(text) > MAX_CONFIG_CHARS:
        raise ApplianceError(CONFIG_INVALID, f"{path}: too long for a config file (at most "
                             f"{MAX_CONFIG_CHARS} characters)")
    deepest = _deepest_key(text)
    if deepest > MAX_KEY_DEPTH:
        raise ApplianceError(CONFIG_INVALID, f"{path}: a key nested {deepest} levels deep (at "
                             f"most {MAX_KEY_DEPTH}; the appliance's own keys have two)")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ApplianceError(CONFIG_INVALID, f"{path}: not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ApplianceError(CONFIG_INVALID, f"{path}: nested too deeply") from exc
    except ValueError as exc:  # an integer of more than 4300 digits
        raise ApplianceError(CONFIG_INVALID, f"{path}: a number too long to read") from exc
    if env:
        return config_from_dict(apply_env(raw, env), _env_src(str(path), env))
    return config_from_dict(raw, str(path))


def _deepest_key(text: str) -> int:
    """The most dots in a key or table header of any line (a cheap bound, no parsing)."""
    deepest = 0
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("["):
            key = stripped.split("]", 1)[0]
        elif "=" in stripped:
            key = stripped.split("=", 1)[0]
        else:
            continue
        deepest = max(deepest, key.count(".") + 1)
    return deepest


def _env_src(src: str, env: Mapping[str, str]) -> str:
    used = overridden_by(env)
    return f"{src} (with {', '.join(used)})" if used else src


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def defaults_toml() -> str:
    """The full default configuration as commented TOML (every key, unit and range)."""
    import ast
    import inspect

    def docs(cls: type) -> dict[str, str]:
        out: dict[str, str] = {}
        tree = ast.parse(inspect.getsource(cls))
        body = typing.cast(ast.ClassDef, tree.body[0]).body
        for a, b in itertools.pairwise(body):
            if (
                isinstance(a, ast.AnnAssign)
                and isinstance(a.target, ast.Name)
                and isinstance(b, ast.Expr)
                and isinstance(b.value, ast.Constant)
            ):
                out[a.target.id] = " ".join(str(b.value.value).split())
        return out

    def field_lines(obj: Any, prefix: str = "", section: str = "") -> list[str]:
        out: list[str] = []
        d = docs(type(obj))
        for sf in dataclasses.fields(obj):
            value = getattr(obj, sf.name)
            if dataclasses.is_dataclass(value) or _table_list_item(
                    typing.get_type_hints(type(obj))[sf.name]) is not None:
                continue
            m = sf.metadata
            if isinstance(value, dict):  # a table of lists: a commented example
                out += [f"# {d.get(sf.name, '')}", f"# [{section}.{sf.name}]",
                        '# name = ["id-1", "id-2"]']
                continue
            rng = f" Range {m['min']}..{m['max']} {m['unit']}".rstrip() + "." if m else ""
            out.append(f"# {d.get(sf.name, '')}{rng}")
            out.append(f"{prefix}{sf.name} = {_toml_value(value)}")
        return out

    def table(obj: Any, name: str) -> list[str]:
        out = [f"[{name}]", *field_lines(obj, section=name), ""]
        hints = typing.get_type_hints(type(obj))
        d = docs(type(obj))
        for sf in dataclasses.fields(obj):
            value = getattr(obj, sf.name)
            item = _table_list_item(hints[sf.name])
            if dataclasses.is_dataclass(value):
                out += table(value, f"{name}.{sf.name}")
            elif item is not None:  # an array of tables: one commented example entry
                out += [f"# {d.get(sf.name, '')}", f"# [[{name}.{sf.name}]]",
                        *field_lines(item(), "# "), ""]
        return out

    lines = ["# Call-etiquette appliance configuration (defaults).", ""]
    top = Config()
    lines += [f"# {docs(Config)['language']}", f'language = "{top.language}"', ""]
    for f in dataclasses.fields(Config):
        sub = getattr(top, f.name)
        if dataclasses.is_dataclass(sub):
            lines += table(sub, f.name)
    return "\n".join(lines)
