"""Per-language word lists: fillers, backchannels and the phrases of the etiquette checks.

One TOML file a language in ``appliance/locales/`` (``en.toml``, ``de.toml``, ``fr.toml``),
read with :mod:`importlib.resources` and validated at load::

    language = "en"                      # must equal the file name
    fillers = ["um", "uh", ...]          # single words; counted by the filler rule
    backchannels = ["mhm", "uh-huh", ...]  # listening sounds; never counted as fillers
    [phrases]                            # every key below is required, each a list
    greeting_offer = [...]               # of phrases (``*`` = any one word inside)
    name_intro = [...]
    hold_request = [...]
    customer_yes = [...]
    hold_thanks = [...]
    closing_question = [...]
    closing_thanks = [...]
    restate = [...]
    follow_up = [...]

``load_locale("de-AT")`` reads ``de.toml``; an unknown language gives ``None`` (the phrase
checks are then off and say so in the summary; words per minute still work).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from appliance.engine.words.matching import WILDCARD, compact, tokens

PHRASE_KEYS: tuple[str, ...] = (
    "greeting_offer", "name_intro", "hold_request", "customer_yes", "hold_thanks",
    "closing_question", "closing_thanks", "restate", "follow_up",
)
_LANG = re.compile(r"^[a-z]{2,3}$")


@dataclass(frozen=True, slots=True)
class Locale:
    """The word lists of one language, as written in its file (normalised when matched)."""

    language: str
    fillers: tuple[str, ...]
    backchannels: tuple[str, ...]
    greeting_offer: tuple[str, ...]
    name_intro: tuple[str, ...]
    hold_request: tuple[str, ...]
    customer_yes: tuple[str, ...]
    hold_thanks: tuple[str, ...]
    closing_question: tuple[str, ...]
    closing_thanks: tuple[str, ...]
    restate: tuple[str, ...]
    follow_up: tuple[str, ...]

    def phrases(self, key: str) -> tuple[str, ...]:
        if key not in PHRASE_KEYS:
            raise KeyError(key)
        return tuple(getattr(self, key))

    def with_fillers(self, extra: Iterable[str]) -> Locale:
        """This locale with site fillers added (duplicates dropped)."""
        have = {compact(f) for f in self.fillers}
        add = tuple(f for f in extra if tokens(f) and compact(f) not in have)
        return dataclasses.replace(self, fillers=self.fillers + add) if add else self


def base_language(lang: str) -> str:
    """« de-AT » → « de », « FR_fr » → « fr »."""
    return lang.strip().casefold().replace("_", "-").split("-")[0]


def available_languages() -> tuple[str, ...]:
    root = resources.files("appliance").joinpath("locales")
    return tuple(sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml")))


def load_locale(lang: str, extra_fillers: Iterable[str] = ()) -> Locale | None:
    """The word lists for ``lang`` with ``extra_fillers`` added; ``None`` if not bundled."""
    base = base_language(lang)
    loc = _load(base) if _LANG.match(base) else None
    return None if loc is None else loc.with_fillers(extra_fillers)


@functools.lru_cache(maxsize=16)
def _load(base: str) -> Locale | None:
    res = resources.files("appliance").joinpath("locales", f"{base}.toml")
    if not res.is_file():
        return None
    src = f"locales/{base}.toml"
    try:
        raw = tomllib.loads(res.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{src}: not valid TOML: {exc}") from exc
    return parse_locale(raw, src, expect=base)


def _str_list(v: Any, where: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
        raise ValueError(f"{where}: must be a non-empty list of non-empty strings")
    return tuple(x.strip() for x in v)


def parse_locale(raw: dict[str, Any], src: str = "<locale>", expect: str | None = None) -> Locale:
    """Validate a parsed locale document; errors name the file and the key."""
    allowed = {"language", "fillers", "backchannels", "phrases"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"{src}: unknown key {unknown[0]!r} (allowed: {sorted(allowed)})")
    lang = raw.get("language")
    if not isinstance(lang, str) or not _LANG.match(lang):
        raise ValueError(f"{src}: language: must be a code like en, de, fr")
    if expect is not None and lang != expect:
        raise ValueError(f"{src}: language: {lang!r} does not match the file name")
    fillers = _str_list(raw.get("fillers"), f"{src}: fillers")
    backchannels = _str_list(raw.get("backchannels"), f"{src}: backchannels")
    for f in fillers:
        if len(tokens(f)) != 1:
            raise ValueError(f"{src}: fillers: {f!r} must be a single word")
    clash = {compact(f) for f in fillers} & {compact(b) for b in backchannels}
    if clash:
        raise ValueError(f"{src}: {sorted(clash)[0]!r} is both a filler and a backchannel")
    table = raw.get("phrases")
    if not isinstance(table, dict):
        raise ValueError(f"{src}: [phrases] table is missing")
    extra = sorted(set(table) - set(PHRASE_KEYS))
    if extra:
        raise ValueError(f"{src}: [phrases] {extra[0]}: unknown key")
    lists: dict[str, tuple[str, ...]] = {}
    for key in PHRASE_KEYS:
        where = f"{src}: [phrases] {key}"
        lists[key] = _str_list(table.get(key), where)
        for p in lists[key]:
            t = tokens(p, wildcard=True)
            if not t or WILDCARD in (t[0], t[-1]):
                raise ValueError(f"{where}: {p!r} needs a word at each end")
    return Locale(language=lang, fillers=fillers, backchannels=backchannels, **lists)
