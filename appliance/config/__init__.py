"""Configuration: one TOML file into frozen dataclasses, validated at load.

Every threshold of every cue lives in :mod:`appliance.config.schema` with its unit and
allowed range; :mod:`appliance.config.load` reads and validates a file.  A config file only
needs the keys it changes; ``appliance config defaults`` prints the full file with the
defaults.  Errors name the file, the ``[section] key`` and the allowed values.
"""

from appliance.config.fleet import FleetConfig
from appliance.config.load import (
    MAX_CONFIG_CHARS,
    MAX_KEY_DEPTH,
    config_from_dict,
    defaults_toml,
    is_loopback,
    load_config,
)
from appliance.config.schema import (
    LOG_LEVELS,
    SECRET_KEYS,
    AsrConfig,
    AudioConfig,
    CallControlConfig,
    CallsConfig,
    Config,
    DashboardConfig,
    DeadAirConfig,
    HoldConfig,
    InterruptionConfig,
    LoggingConfig,
    RateConfig,
    StorageConfig,
    TalkRatioConfig,
    ToneConfig,
    VadConfig,
    WordsConfig,
    WorkersConfig,
)

__all__ = [
    "LOG_LEVELS", "MAX_CONFIG_CHARS", "MAX_KEY_DEPTH", "SECRET_KEYS", "AsrConfig",
    "AudioConfig", "CallControlConfig", "CallsConfig", "Config", "DashboardConfig",
    "DeadAirConfig", "FleetConfig", "HoldConfig", "InterruptionConfig", "LoggingConfig",
    "RateConfig",
    "StorageConfig", "TalkRatioConfig", "ToneConfig", "VadConfig", "WordsConfig",
    "WorkersConfig", "config_from_dict", "defaults_toml", "is_loopback", "load_config",
]
