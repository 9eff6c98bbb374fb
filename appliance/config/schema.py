"""The configuration's schema: one frozen dataclass per TOML table, each field with its
default, unit and allowed range (``_f``) and a docstring.  Loading and validation:
:mod:`appliance.config.load`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.config.console import ConsoleConfig
from appliance.config.fleet import FleetConfig
from appliance.config.tap import TapConfig

LOG_LEVELS = ("debug", "info", "warning", "error")
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
class CallsConfig:
    idle_end_s: float = _f(60.0, 0.0, 3600.0, "s")
    """At the desk, a call ends after this many seconds with no speech on either side and
    no hold; the next call starts when the line comes alive again.  0: only the End key
    (or the service stopping) ends a call.  Otherwise at least 10 s."""
    start_margin_db: float = _f(15.0, 6.0, 40.0, "dB")
    """Between calls, a new call starts when either party is this much louder than the
    line's quiet level for about 0.1 s."""
    preroll_s: float = _f(0.5, 0.0, 2.0, "s")
    """Audio kept from just before a call starts, so its first syllable is analysed."""
    rate_hold_s: float = _f(15.0, 2.0, 600.0, "s")
    """The pace gauge shows the agent's rate this long after the agent last spoke, then
    returns to neutral (a verdict on old speech is no longer true)."""


@dataclass(frozen=True, slots=True)
class CallControlConfig:
    answer_within_s: float = _f(12.0, 1.0, 120.0, "s")
    """From the PBX's signalling (a tap call): a call answered later than this after its
    first ring gets an ``answer_delay`` cue (3 rings ≈ 12 s)."""
    hangup_grace_s: float = _f(0.3, 0.0, 5.0, "s")
    """The agent's leg must end this much before the customer's to count as the agent
    hanging up first (the two legs' ends arrive a little apart when the PBX tears a call
    down)."""


@dataclass(frozen=True, slots=True)
class WorkersConfig:
    processes: int = _f(0, 0, 256)
    """Worker processes that analyse the box's calls when it carries many (a PBX tap); 0:
    one per core.  Each loads its own Silero session (about 20 MiB) and its own speech
    models."""
    recognizer_threads: int = _f(1, 1, 64)
    """Speech recognizer threads per worker, shared by the worker's calls (agent audio
    first; when they fall behind, customer audio is dropped first and counted)."""
    max_calls: int = _f(0, 0, 100000)
    """Calls one worker takes at most (0: no limit); a call beyond every worker's limit
    is refused with ``calls.full``."""
    max_restarts: int = _f(5, 0, 1000)
    """A worker that dies is started again this many times in the service's life, then
    the box reports itself unhealthy."""


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
    calls: CallsConfig = field(default_factory=CallsConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    call_control: CallControlConfig = field(default_factory=CallControlConfig)
    tap: TapConfig = field(default_factory=TapConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
