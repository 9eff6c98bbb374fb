"""Masking of digit runs (card, account and phone numbers) in transcripts.

Recognizers write numbers as digits or as number words; a run of three or more of either
(« four two four two », « 4 2 4 2 », « vier zwei ») is replaced by ``•••``.
"""

from __future__ import annotations

import re

_NUMBER_WORDS = {
    # en
    "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "eleven", "twelve", "twenty", "thirty", "forty", "fifty", "hundred", "thousand",
    # de
    "null", "eins", "ein", "zwei", "zwo", "drei", "vier", "fünf", "sechs", "sieben", "acht",
    "neun", "zehn", "elf", "zwölf", "zwanzig", "dreißig", "hundert", "tausend",
    # fr
    "zéro", "un", "une", "deux", "trois", "quatre", "cinq", "sept", "huit", "neuf",
    "dix", "onze", "douze", "vingt", "trente", "cent", "mille",
}
MASK = "•••"
_DIGITS = re.compile(r"^\d+([.,/-]\d+)*$")


def _is_number(token: str) -> bool:
    t = token.casefold().strip(".,;:!?")
    return bool(_DIGITS.match(t)) or t in _NUMBER_WORDS


def mask_digit_runs(text: str, min_run: int = 3) -> str:
    """Replace every run of ``min_run`` or more number tokens, and any token with 3+ digits."""
    tokens = text.split()
    out: list[str] = []
    run: list[str] = []
    for tok in tokens:
        if _is_number(tok):
            run.append(tok)
            continue
        out += [MASK] if len(run) >= min_run else run
        run = []
        out.append(MASK if sum(c.isdigit() for c in tok) >= 3 else tok)
    out += [MASK] if len(run) >= min_run else run
    masked = [MASK if sum(c.isdigit() for c in t) >= 3 else t for t in out]
    return " ".join(masked)
