"""Local storage: call summaries (SQLite) and, if the site opts in, masked transcripts.

Nothing here holds audio.  Both live under the service's state directory
(:func:`appliance.config_env.resolve_state_dir`).
"""

from appliance.sinks.store.summaries import (
    DB_NAME,
    SCHEMA_VERSION,
    StoreInfo,
    SummaryStore,
    iso_utc,
    summaries_path,
)
from appliance.sinks.store.transcripts import TRANSCRIPTS_DIR, TranscriptStore, transcripts_dir

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "TRANSCRIPTS_DIR",
    "StoreInfo",
    "SummaryStore",
    "TranscriptStore",
    "iso_utc",
    "summaries_path",
    "transcripts_dir",
]
