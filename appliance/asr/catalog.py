"""The official Vosk models that fit a desk box (small models: ~40-50 MB, ~300 MB of RAM).

Only names, languages and addresses live here; nothing is fetched from this module.  A model
is downloaded only when IT runs ``appliance models install NAME`` (or a URL) on purpose;
at an offline site the ``.zip`` is copied to the box and installed from the file.
"""

from __future__ import annotations

from dataclasses import dataclass

MODELS_SITE = "https://alphacephei.com/vosk/models/"
"""Where the official Vosk models are published, one ``<name>.zip`` each."""


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One official Vosk model known to work on the box."""

    name: str
    """The model's official name, also the directory its zip unpacks to."""
    lang: str
    """Language code the appliance uses for it (``en``, ``de``, ``fr``, ``ko``)."""
    sample_rate_hz: int
    """Sample rate the model expects."""
    size_mb: int
    """Approximate size of the download (MB); unpacked it is about the same."""

    @property
    def url(self) -> str:
        """The download address on the official Vosk models site."""
        return f"{MODELS_SITE}{self.name}.zip"


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("vosk-model-small-de-0.15", "de", 16000, 45),
    CatalogEntry("vosk-model-small-fr-0.22", "fr", 16000, 41),
    CatalogEntry("vosk-model-small-en-us-0.15", "en", 16000, 40),
    CatalogEntry("vosk-model-small-ko-0.22", "ko", 16000, 82),
)


def catalog_entry(name: str) -> CatalogEntry | None:
    """The catalog entry called ``name`` (a trailing ``.zip`` is ignored), or ``None``."""
    name = name.removesuffix(".zip")
    return next((e for e in CATALOG if e.name == name), None)


def catalog_for_lang(lang: str) -> CatalogEntry | None:
    """The catalog's model for ``lang``, or ``None``."""
    return next((e for e in CATALOG if e.lang == lang), None)
