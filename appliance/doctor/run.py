"""Runs every doctor check in order; none of them may stop the others."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from appliance.doctor.audio_check import check_audio_devices, listen
from appliance.doctor.check import Check, guarded
from appliance.doctor.config_check import check_config
from appliance.doctor.dashboard_check import check_dashboard
from appliance.doctor.fleet_check import check_fleet
from appliance.doctor.model_check import check_speech_model, check_vad, installed_model
from appliance.doctor.system import check_memory, check_service, check_state_dir
from appliance.doctor.tap_check import check_tap

DEFAULTS_NOTE = " [with default settings: the config did not load]"
_CONFIG_FREE = frozenset({"vad", "service"})
"""Checks that read no setting (no DEFAULTS_NOTE for them)."""


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    """What ``appliance doctor`` was asked."""

    config: Path | None = None
    lang: str | None = None
    models_dir: Path | None = None
    listen_s: float = 3.0
    no_audio: bool = False


def run_checks(opts: DoctorOptions, env: Mapping[str, str],
               progress: TextIO | None = None) -> list[Check]:
    """Every check, in report order."""
    conf = check_config(opts.config, env)
    cfg = conf.config
    lang = opts.lang or cfg.language
    listening = not opts.no_audio and opts.listen_s > 0
    later: list[Check] = []
    devices = guarded("audio devices", lambda: check_audio_devices(cfg.audio, listening))
    later += devices
    if listening and all(c.status != "fail" for c in devices):
        later += guarded("audio levels", lambda: listen(cfg.audio, opts.listen_s, progress))
    later += guarded("speech model", lambda: check_speech_model(lang, opts.models_dir, cfg.asr))
    later += guarded("vad", check_vad)
    later += guarded("dashboard", lambda: check_dashboard(cfg.dashboard))
    later += guarded("pbx tap", lambda: check_tap(cfg))
    later += guarded("fleet", lambda: check_fleet(cfg, env))
    later += guarded("state dir", lambda: check_state_dir(cfg.storage, env))

    def memory() -> Check:
        model = installed_model(lang, opts.models_dir, cfg.asr) if cfg.asr.enabled else None
        recognizers = (2 if cfg.asr.customer else 1) if model is not None else 0
        return check_memory(model.size_bytes if model else None, recognizers)

    later += guarded("memory", memory)
    later += guarded("service", check_service)
    if not conf.loaded:
        later = [c if c.name in _CONFIG_FREE else
                 dataclasses.replace(c, detail=c.detail + DEFAULTS_NOTE) for c in later]
    return [conf.check, *later]
