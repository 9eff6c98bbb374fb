"""Configuration: one TOML file into frozen dataclasses, validated at load.

Every threshold of every cue lives here with its unit and allowed range.  A config file only
needs the keys it changes; ``appliance config defaults`` prints the full file with the
defaults.  Errors name the file, the ``[section] key`` and the allowed values.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config_env import apply_env, overridden_by
from appliance.errors import CONFIG_INVALID, CONFIG_NOT_FOUND, ApplianceError, shown

LOG_LEVELS = ("debug", "info", "warning", "error")
#: The fully commented default file is ~12 000 characters; a file 20x larger is a mistake
#: (and parsing it would cost the service's memory).
MAX_CONFIG_CHARS = 256 * 1024
#: Dotted keys or table headers deeper than this are refused before parsing: tomllib's cost
#: grows with the square of the depth (20 000 levels in 40 KB took 1.6 GB).
MAX_KEY_DEPTH = 32
SECRET_KEYS = frozenset({"token"})
"""Keys whose values never appear in an error message (they end up in the journal)."""


def _f(default: Any, lo: float | None = None, hi: float | None = None, unit: str = "") -> Any:
    return field(default=default, metadata={"min": lo, "max": hi, "unit": unit})


@dataclass(frozen=True, slots=True)
class VadConfig:
    on_threshold: float = _f(0.5, 0.05, 0.99)
    """Silero speech probability at which a party starts speaking (0..1)."""
    off_threshold: float = _f(0.35, 0.01, 0.99)
    """Probability below which speech may end (0..1); must not exceed on_threshold."""
    hangover_s: float = _f(0.25, 0.0, 2.0, "s")
    """Seconds below off_threshold before a talk spurt ends (bridges short pauses)."""
    echo_margin_db: float = _f(20.0, 6.0, 60.0, "dB")
    """A frame quieter than the other party's recent peak by this much is treated as echo
    of the other party (sidetone / line echo), not as speech (a Geigel-style detector)."""
    echo_window_s: float = _f(0.12, 0.0, 0.5, "s")
    """How far back the other party's level is looked at for the echo test (echo delay)."""
    silence_dbfs: float = _f(-80.0, -120.0, -40.0, "dBFS")
    """Frames quieter than this are never speech."""
    level_snr_db: float = _f(15.0, 6.0, 60.0, "dB")
    """Level detector fused with Silero: two frames in a row whose every 10 ms hop is this
    far above the channel's noise floor, with a speech-like spectrum (not flat like a key
    click or hiss, not tonal like music), are speech even when Silero's probability is low
    (Silero misses some loud, clear real voices, most of all on telephone-band audio).
    The echo, music and silence gates apply to it as to Silero."""
    turn_gap_s: float = _f(0.4, 0.0, 2.0, "s")
    """Pauses up to this long inside one party's speech belong to the same turn: for the
    interruption rule (a speaker who resumes after such a pause is not starting anew), talk
    time and talk ratio."""


@dataclass(frozen=True, slots=True)
class InterruptionConfig:
    min_prior_speech_s: float = _f(0.5, 0.0, 10.0, "s")
    """The other party must have been speaking this long when the interrupter starts."""
    min_overlap_s: float = _f(0.6, 0.1, 5.0, "s")
    """Overlap that turns an onset into an interruption; shorter ones are backchannels or
    quick turn-taking."""


@dataclass(frozen=True, slots=True)
class RateConfig:
    min_syllables_per_s: float = _f(3.0, 0.5, 10.0, "syll/s")
    """Below this articulation rate the agent is told to speed up a little."""
    max_syllables_per_s: float = _f(5.0, 1.0, 15.0, "syll/s")
    """Above this articulation rate the agent is told to slow down."""
    min_wpm: float = _f(120.0, 30.0, 400.0, "wpm")
    """Lower bound of the target band in words per minute (when words are recognised)."""
    max_wpm: float = _f(170.0, 30.0, 400.0, "wpm")
    """Upper bound of the target band in words per minute (when words are recognised)."""
    window_speech_s: float = _f(25.0, 5.0, 120.0, "s")
    """Rolling window, in seconds of the agent's own speech, over which the rate is taken."""
    min_speech_s: float = _f(10.0, 2.0, 120.0, "s")
    """No rate cue before this much agent speech is in the window."""
    hysteresis: float = _f(0.3, 0.0, 2.0, "syll/s")
    """The rate must come back this far inside the band before the cue re-arms."""
    cooldown_s: float = _f(20.0, 0.0, 600.0, "s")
    """Minimum seconds between two rate warnings."""


@dataclass(frozen=True, slots=True)
class ToneConfig:
    raised_level_db: float = _f(7.0, 1.0, 30.0, "dB")
    """Level (300-2500 Hz band) above the speaker's own baseline that counts as a raised
    voice; 1 dB less when the pitch rose as well (raised_pitch_st)."""
    raised_pitch_st: float = _f(1.5, 0.0, 12.0, "semitones")
    """A pitch rise of at least this much, and at least the speaker's own pitch spread,
    lowers the level rise needed by 1 dB (pitch alone never makes a raised voice)."""
    window_s: float = _f(1.0, 0.5, 10.0, "s")
    """Seconds of speech over which level and pitch are compared with the baseline."""
    min_baseline_s: float = _f(8.0, 2.0, 120.0, "s")
    """Seconds of a speaker's voiced speech before their baseline is fully trusted; from
    2 s on the rule works with a level margin (up to +3 dB) that shrinks to nothing here."""
    baseline_span_s: float = _f(90.0, 10.0, 600.0, "s")
    """Seconds of the speaker's most recent speech that make the running baseline."""
    monotone_st: float = _f(1.0, 0.1, 6.0, "semitones")
    """Pitch standard deviation below which the agent sounds monotone."""
    monotone_window_s: float = _f(20.0, 5.0, 120.0, "s")
    """Seconds of agent speech over which pitch variability is judged."""
    cooldown_s: float = _f(20.0, 0.0, 600.0, "s")
    """Minimum seconds between two tone cues for the same speaker."""


@dataclass(frozen=True, slots=True)
class HoldConfig:
    check_back_s: float = _f(45.0, 5.0, 3600.0, "s")
    """Hold duration at which the agent is reminded to check back with the caller."""
    too_long_s: float = _f(60.0, 5.0, 3600.0, "s")
    """Hold duration that is too long (alert)."""
    leak_min_s: float = _f(0.5, 0.1, 10.0, "s")
    """Seconds of agent speech during a hold that make a leak."""
    unmuted_min_s: float = _f(3.0, 0.5, 60.0, "s")
    """Seconds of open-mic noise (not digital silence, not music) on hold before the cue;
    keep it above the music detector's latency (~2.5 s) so hold music is not taken for it."""
    unmuted_floor_dbfs: float = _f(-85.0, -120.0, -30.0, "dBFS")
    """Agent-channel level above which a silent hold counts as an open microphone."""
    phrase_silence_s: float = _f(5.0, 1.0, 60.0, "s")
    """After a hold-request phrase (« one moment please »), this much silence on both sides
    starts a hold (when no music or mark says so first)."""
    phrase_max_talk_s: float = _f(4.0, 0.5, 60.0, "s")
    """Agent speech after the hold-request phrase beyond which it no longer announces a hold
    (« one moment please, let me explain… »)."""
    phrase_window_s: float = _f(30.0, 5.0, 300.0, "s")
    """A hold-request phrase only counts for a hold that begins within this many seconds."""
    music_min_s: float = _f(1.0, 0.0, 30.0, "s")
    """Seconds of continuous music (after the detector's own latency) that start a hold."""
    music_end_s: float = _f(1.5, 0.2, 30.0, "s")
    """Seconds without music after which a music hold is over."""


@dataclass(frozen=True, slots=True)
class DeadAirConfig:
    after_s: float = _f(10.0, 1.0, 600.0, "s")
    """Seconds of silence on both sides (not on hold) that make dead air."""


@dataclass(frozen=True, slots=True)
class TalkRatioConfig:
    max_share: float = _f(0.65, 0.3, 1.0)
    """Agent share of speech time above which the agent is told to listen more (0..1)."""
    window_s: float = _f(120.0, 10.0, 1800.0, "s")
    """Rolling window of call time (holds excluded) over which the share is taken."""
    min_speech_s: float = _f(30.0, 1.0, 600.0, "s")
    """No cue before both parties together have spoken this long in the window."""
    hysteresis: float = _f(0.05, 0.0, 0.3)
    """The share must fall this far below max_share before the cue re-arms."""


@dataclass(frozen=True, slots=True)
class AsrConfig:
    enabled: bool = True
    """Run speech recognition when a model for the call's language is installed."""
    customer: bool = True
    """Also recognise the customer channel (the hold-permission rule needs the answer)."""
    preroll_s: float = _f(0.3, 0.0, 2.0, "s")
    """Audio kept before a speech onset and fed to the recognizer, so onsets are not cut."""
    postroll_s: float = _f(0.3, 0.0, 2.0, "s")
    """Audio still fed after speech ends, so word endings are not cut."""
    segment_gap_s: float = _f(1.0, 0.0, 10.0, "s")
    """Quiet after which the recognizer finalises an utterance (shorter pauses are only
    cut out of what it is fed; each finalisation costs a lattice pass)."""
    queue_s: float = _f(20.0, 1.0, 600.0, "s")
    """Seconds of audio the queue to the recognizer holds; beyond it audio is dropped and
    counted (recognition is behind), the acoustic cues are never delayed."""
    models_dir: str = ""
    """Where models are installed; empty = APPLIANCE_MODELS_DIR or models/ of the project."""


@dataclass(frozen=True, slots=True)
class WordsConfig:
    filler_per_min: float = _f(6.0, 0.5, 120.0, "1/min")
    """Fillers per minute of agent speech (over filler_window_s) that trigger the cue."""
    filler_window_s: float = _f(60.0, 10.0, 600.0, "s")
    """Rolling window of call time over which fillers are counted."""
    extra_fillers: list[str] = field(default_factory=list)
    """Site-specific filler words, added to the language's own list."""
    agent_name: str = ""
    """The agent's name for the greeting check; empty = any « my name is … »."""
    company: str = ""
    """The company name for the greeting check; empty = that item is not checked."""
    greeting_window_s: float = _f(20.0, 5.0, 120.0, "s")
    """The greeting must be complete within this many seconds of the call start."""
    closing_window_s: float = _f(30.0, 5.0, 300.0, "s")
    """The closing question and thanks are looked for in the call's last seconds."""
    jargon: list[str] = field(default_factory=list)
    """Site jargon the agent should avoid with callers (empty by default)."""
    transcript: bool = False
    """Add a transcript event per final result to the JSONL output (memory only)."""


@dataclass(frozen=True, slots=True)
class AudioConfig:
    wiring: str = "stereo"
    """"stereo": one input with a splitter (agent and customer on two channels);
    "two_devices": an agent microphone device and a customer (earpiece / line) device."""
    device: str = ""
    """Stereo wiring: input device, by index or a substring of its name; empty = default."""
    agent_channel: int = _f(0, 0, 63)
    """Stereo wiring: channel of the agent's microphone (swap the two to fix a wiring)."""
    customer_channel: int = _f(1, 0, 63)
    """Stereo wiring: channel of the customer (earpiece / line)."""
    agent_device: str = ""
    """Two-device wiring: the agent's microphone device (index or name substring)."""
    customer_device: str = ""
    """Two-device wiring: the customer's device (index or name substring)."""
    sample_rate_hz: int = _f(0, 0, 192000, "Hz")
    """Capture rate; 0 = the device's default rate (resampled to 16 kHz)."""
    block_s: float = _f(0.032, 0.005, 0.5, "s")
    """Audio delivered per callback."""
    queue_s: float = _f(2.0, 0.1, 60.0, "s")
    """Audio the capture queue holds before it drops (and counts) blocks."""
    reconnect_max_s: float = _f(10.0, 0.5, 300.0, "s")
    """Longest wait between attempts to reopen a device that went away (backoff)."""


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    enabled: bool = True
    """Serve the agent's dashboard."""
    host: str = "127.0.0.1"
    """Address to bind; anything but loopback needs a token."""
    port: int = _f(8765, 1, 65535)
    """TCP port of the dashboard."""
    token: str = ""
    """Access token required on every request when bound beyond loopback."""
    snapshot_s: float = _f(0.25, 0.05, 5.0, "s")
    """How often the gauges (rate, timers, counters) are pushed to the page."""


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    """Log level on stderr (journald): debug, info, warning or error.  Never transcript text."""
    format: str = "auto"
    """"text": ``LEVEL logger: message``; "json": one JSON object per line; "auto": text,
    with a syslog priority prefix that journald reads when running under systemd."""


@dataclass(frozen=True, slots=True)
class StorageConfig:
    state_dir: str = ""
    """Where summaries (and, if enabled, transcripts) are kept; empty = systemd's
    STATE_DIRECTORY, else APPLIANCE_STATE_DIR, else ~/.local/state/appliance."""
    summaries: bool = True
    """Keep each call's summary (no audio, no transcript) in summaries.sqlite3."""
    summaries_days: float = _f(90.0, 1.0, 3650.0, "days")
    """Summaries older than this are deleted."""
    summaries_max_mb: float = _f(64.0, 1.0, 10240.0, "MiB")
    """The summaries database is kept below this size by deleting the oldest calls."""
    transcripts: bool = False
    """Retain transcripts on disk (digit runs masked) in state_dir/transcripts; off = the
    transcript lives only in memory for the duration of the call."""
    transcript_days: float = _f(7.0, 0.1, 365.0, "days")
    """Retained transcript files older than this are deleted."""


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; each section is a TOML table of the same name."""

    language: str = "en"
    """Default call language (en, de, fr, ...)."""
    vad: VadConfig = field(default_factory=VadConfig)
    interruption: InterruptionConfig = field(default_factory=InterruptionConfig)
    rate: RateConfig = field(default_factory=RateConfig)
    tone: ToneConfig = field(default_factory=ToneConfig)
    hold: HoldConfig = field(default_factory=HoldConfig)
    dead_air: DeadAirConfig = field(default_factory=DeadAirConfig)
    talk_ratio: TalkRatioConfig = field(default_factory=TalkRatioConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    words: WordsConfig = field(default_factory=WordsConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)


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
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise _bad(src, where, "must be a table")
            kwargs[name] = _build(typing.cast(type, hint), value, src, name)
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
            if name == "language" and not _LANGUAGE.fullmatch(value):
                raise _bad(src, where, f"{shown(value)} is not a language code like en, de, "
                           "fr (two or three lower-case letters)")
            kwargs[name] = value
        elif hint is bool:
            if not isinstance(value, bool):
                raise _bad(src, where, f"must be true or false, not {shown(value)}")
            kwargs[name] = value
        elif hint == list[str]:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise _bad(src, where, "must be a list of non-empty strings")
            kwargs[name] = list(value)
        else:  # pragma: no cover - a field type the loader does not know yet
            raise TypeError(f"unsupported config type {hint!r}")
    return cls(**kwargs)


def _check_relations(cfg: Config, src: str) -> None:
    if cfg.vad.off_threshold > cfg.vad.on_threshold:
        raise _bad(src, "[vad] off_threshold", "must not exceed on_threshold")
    if cfg.rate.min_syllables_per_s >= cfg.rate.max_syllables_per_s:
        raise _bad(src, "[rate] min_syllables_per_s", "must be below max_syllables_per_s")
    if cfg.rate.min_wpm >= cfg.rate.max_wpm:
        raise _bad(src, "[rate] min_wpm", "must be below max_wpm")
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

    lines = ["# Call-etiquette appliance configuration (defaults).", ""]
    top = Config()
    lines += [f"# {docs(Config)['language']}", f'language = "{top.language}"', ""]
    for f in dataclasses.fields(Config):
        sub = getattr(top, f.name)
        if not dataclasses.is_dataclass(sub):
            continue
        lines.append(f"[{f.name}]")
        d = docs(type(sub))
        for sf in dataclasses.fields(sub):
            m = sf.metadata
            rng = f" Range {m['min']}..{m['max']} {m['unit']}".rstrip() + "." if m else ""
            lines.append(f"# {d.get(sf.name, '')}{rng}")
            lines.append(f"{sf.name} = {_toml_value(getattr(sub, sf.name))}")
        lines.append("")
    return "\n".join(lines)


