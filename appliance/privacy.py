"""Masking of digit runs (card, account and phone numbers) in transcripts.

Recognizers write numbers as digits or as number words; a run of three or more of either
(« four two four two », « 4 2 4 2 », « vier zwei ») is replaced by ``•••``.  Korean
numbers are Sino-Korean syllables (« 공일공 », « 일 이 삼 », « 오륙칠 »: 영 공 일 이 삼 사 오 육 칠
팔 구 십 백 천 만) or native words (« 하나 둘 셋 »); a word made only of three or more digit
syllables is a number on its own.  Digits a recognizer writes in brackets (the Korean
model's « [4] », « [02] ») count as digits.
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
    # ko: Sino-Korean digits and native numbers (« 이 » « 오 » alone are also words, so
    # only runs of three count, like every other number word)
    "영", "공", "일", "이", "삼", "사", "오", "육", "륙", "칠", "팔", "구", "십", "백", "천", "만",
    "하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉", "열", "스물", "쩜", "점",
}
_KO_DIGIT_SYLLABLES = frozenset("영공일이삼사오육륙칠팔구십백천만")
MASK = "•••"
_DIGITS = re.compile(r"^\d+([.,/-]\d+)*$")


def _is_number(token: str) -> bool:
    t = token.casefold().strip(".,;:!?[]()")
    return bool(_DIGITS.match(t)) or t in _NUMBER_WORDS or _ko_digits(t) > 0


def _ko_digits(token: str) -> int:
    """Length of a word made only of Sino-Korean digit syllables (« 공일공 » → 3), else 0."""
    t = token.strip(".,;:!?[]()")
    return len(t) if t and all(c in _KO_DIGIT_SYLLABLES for c in t) else 0


def mask_digit_runs(text: str, min_run: int = 3) -> str:
    """Replace every run of ``min_run`` or more number tokens, and any token with 3+ digits
    (or 3+ Sino-Korean digit syllables)."""
    tokens = text.split()
    out: list[str] = []
    run: list[str] = []
    for tok in tokens:
        if _is_number(tok):
            run.append(tok)
            continue
        out += [MASK] if len(run) >= min_run else run
        run = []
        out.append(tok)
    out += [MASK] if len(run) >= min_run else run
    masked = [MASK if sum(c.isdigit() for c in t) >= 3 or _ko_digits(t) >= 3 else t for t in out]
    return " ".join(masked)
