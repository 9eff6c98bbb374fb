"""Tolerant matching of phrases on recognised words.

Normalisation (the same on both sides, phrase lists and recognised words):

* NFC, casefold; ä ö ü → ae oe ue, ß → ss, œ æ → oe ae (so « ähm » = « aehm », « für » =
  « fuer »); every other accent is dropped (« désolé » = « desole »);
* apostrophes (' ’ ‘ ` ´ ʼ) and hyphens join (« m'appelle » → « mappelle », « puis-je »
  → « puisje », « hell-o-world » → « helloworld »); any other punctuation separates.

A phrase matches a run of one party's recent words when each phrase token matches a word
(or two consecutive words written together: « puis je » for « puis-je », « m' appelle »
for « m'appelle ») with at most one extra word inserted inside the phrase, and no pause
longer than ``max_gap_s`` between the matched words.  A token matches when it is equal, or
— for tokens of ≥ 4 letters — within edit distance 1 (≥ 8 letters: 2), the length taken
from the phrase's token.  ``*`` in a phrase matches any one word (« c'est * à l'appareil »).

Fillers are compared in a compact form: the tokens written together and runs of one
letter collapsed (« hmmm » = « hmm » = « hm », « mm-hmm » = « mhm »).

Korean (Hangul) is compared by syllable blocks: a phrase token of 3+ syllables may differ
from the recognised one by one syllable (6+: two), and spacing is free — a phrase token may
match up to three consecutive recognised words written together (« 잠시 만 » for « 잠시만 »),
and one recognised word may cover two consecutive phrase tokens (« 도와드릴까요 » for
« 도와 드릴까요 »), since recognisers and people space Korean differently.  A phrase token
of 2+ syllables also matches the head of a word that goes on for up to three syllables of
particles or endings (« 김민수 » in « 김민수입니다 », « 점 » is too short for that).

Nothing here logs: the buffers hold transcript words, which never leave memory.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliance.events import WordEvent

WILDCARD = "*"
_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "œ": "oe", "æ": "ae"})
_JOIN = re.compile(r"['’‘`´ʼ\-‐‑–]")
_SPLIT = re.compile(r"[^\w*]+|_")
_SPLIT_NO_WILDCARD = re.compile(r"[^\w]+|_")
_RUNS = re.compile(r"(.)\1+")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_KO_SUFFIX_MAX = 3  # syllables of particles / endings after a Korean phrase token


def fold(text: str) -> str:
    """Casefold and fold accents: « Ähm » → « aehm », « Désolé » → « desole »."""
    s = unicodedata.normalize("NFC", text).casefold().translate(_FOLD)
    s = unicodedata.normalize("NFKD", s)
    # NFC again: Hangul syllables decomposed into jamo above are put back together
    return unicodedata.normalize("NFC", "".join(c for c in s if not unicodedata.combining(c)))


def tokens(text: str, *, wildcard: bool = False) -> tuple[str, ...]:
    """Normalised tokens of ``text`` (a recognised word may give several, or none)."""
    s = _JOIN.sub("", fold(text))
    parts = (_SPLIT if wildcard else _SPLIT_NO_WILDCARD).sub(" ", s).split()
    if wildcard:
        # "*" is a token of its own; "ab*c" is not a wildcard
        parts = [p for p in parts if p == WILDCARD or WILDCARD not in p]
    return tuple(parts)


def compact(text: str) -> str:
    """Form for fillers and backchannels: « Hmmm » → « hm », « Mm-hmm » → « mhm »."""
    once = _RUNS.sub(r"\1", unicodedata.normalize("NFC", text).casefold())  # « ää » → « ä »
    return _RUNS.sub(r"\1", "".join(tokens(once)))


def is_hangul(text: str) -> bool:
    """Is ``text`` (a normalised token) Korean?  Then syllable blocks are its letters."""
    return _HANGUL.search(text) is not None


def tolerance(n_letters: int, hangul: bool = False) -> int:
    """Edit distance allowed for a phrase token of this length (letters, or syllable
    blocks for Korean: a block holds two or three letters)."""
    if hangul:
        return 2 if n_letters >= 6 else 1 if n_letters >= 3 else 0
    return 2 if n_letters >= 8 else 1 if n_letters >= 4 else 0


def edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance, or ``limit + 1`` as soon as it must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]


def similar(ref: str, got: str) -> bool:
    """Does the recognised token ``got`` match the phrase token ``ref``?"""
    if ref == got:
        return True
    hangul = is_hangul(ref)
    k = tolerance(len(ref), hangul)
    if k > 0 and edit_distance(ref, got, k) <= k:
        return True
    # Korean attaches particles and endings to the word (« 김민수 » → « 김민수입니다 »,
    # « 점 » → « 점이 »): a phrase token of 2+ syllables may be the head of a longer word
    if hangul and len(ref) >= 2 and 0 < len(got) - len(ref) <= _KO_SUFFIX_MAX:
        head = got[:len(ref)]
        return head == ref or (k > 0 and edit_distance(ref, head, k) <= k)
    return False


@dataclass(frozen=True, slots=True)
class Token:
    """One normalised token of a recognised word, with the word's times (s)."""

    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Match:
    """Where a phrase was found: the times (s) of its first and last word."""

    start_s: float
    end_s: float
    phrase: int
    """Index of the phrase in its :class:`PhraseSet`."""


class PhraseSet:
    """A compiled list of phrases.  ``strict``: exact tokens only, no inserted word."""

    def __init__(self, phrases: Iterable[str], *, strict: bool = False) -> None:
        self.phrases: tuple[tuple[str, ...], ...] = tuple(
            t for t in (tokens(p, wildcard=True) for p in phrases)
            if t and t[0] != WILDCARD and t[-1] != WILDCARD
        )
        self.strict = strict
        # per set (so per call): recognised words never outlive the call in a global cache
        self._similar: dict[tuple[str, str], bool] = {}

    def __len__(self) -> int:
        return len(self.phrases)

    def match_at(
        self, toks: Sequence[Token], i: int, max_gap_s: float,
    ) -> tuple[Match, int] | None:
        """The first phrase that matches starting exactly at ``toks[i]``, and the index of
        its last token."""
        for n, p in enumerate(self.phrases):
            last = self._match(p, toks, 0, i, not self.strict, None, max_gap_s)
            if last is not None:
                return Match(toks[i].start_s, toks[last].end_s, n), last
        return None

    def _eq(self, ref: str, got: str) -> bool:
        if ref == got or self.strict:
            return ref == got
        key = (ref, got)
        hit = self._similar.get(key)
        if hit is None:
            if len(self._similar) >= 20_000:
                self._similar.clear()
            hit = self._similar[key] = similar(ref, got)
        return hit

    def _match(
        self, p: tuple[str, ...], toks: Sequence[Token], k: int, j: int, can_insert: bool,
        prev_end: float | None, max_gap_s: float,
    ) -> int | None:
        if k == len(p):
            return j - 1
        if j >= len(toks) or (prev_end is not None and toks[j].start_s - prev_end > max_gap_s):
            return None
        ref, got = p[k], toks[j]
        if ref == WILDCARD or self._eq(ref, got.text):
            r = self._match(p, toks, k + 1, j + 1, can_insert, got.end_s, max_gap_s)
            if r is not None:
                return r
        if ref == WILDCARD:
            return self._match(p, toks, k, j + 1, False, got.end_s, max_gap_s) \
                if can_insert and k > 0 else None
        korean = is_hangul(ref)
        # a phrase token written as 2 (Korean: up to 3) recognised words
        joined, end = got.text, got.end_s
        for n in range(1, 3 if korean else 2):
            if j + n >= len(toks) or toks[j + n].start_s - end > max_gap_s:
                break
            joined, end = joined + toks[j + n].text, toks[j + n].end_s
            if self._eq(ref, joined):
                r = self._match(p, toks, k + 1, j + n + 1, can_insert, end, max_gap_s)
                if r is not None:
                    return r
        # Korean: two phrase tokens written as one recognised word (that starts like the
        # first: a tolerance must not swallow a whole short token)
        if korean and k + 1 < len(p) and p[k + 1] != WILDCARD \
                and got.text[0] == ref[0] and self._eq(ref + p[k + 1], got.text):
            r = self._match(p, toks, k + 2, j + 1, can_insert, got.end_s, max_gap_s)
            if r is not None:
                return r
        if can_insert and k > 0:
            return self._match(p, toks, k, j + 1, False, got.end_s, max_gap_s)
        return None


class WordBuffer:
    """One party's recent words as normalised tokens, in time order, for ``span_s`` seconds."""

    def __init__(self, span_s: float, max_gap_s: float = 2.0) -> None:
        self.span_s = span_s
        self.max_gap_s = max_gap_s
        self.tokens: list[Token] = []
        self._starts: list[float] = []
        self.words_seen = 0

    def add(self, w: WordEvent) -> None:
        self.words_seen += 1
        for text in tokens(w.word):
            tok = Token(text, w.start_s, w.end_s)
            if not self._starts or w.start_s >= self._starts[-1]:
                self.tokens.append(tok)
                self._starts.append(w.start_s)
            else:  # a late word: keep time order
                i = bisect.bisect_right(self._starts, w.start_s)
                self.tokens.insert(i, tok)
                self._starts.insert(i, w.start_s)

    def prune(self, now_s: float) -> None:
        """Forget words that ended more than ``span_s`` before ``now_s``."""
        cut = 0
        while cut < len(self.tokens) and self.tokens[cut].end_s < now_s - self.span_s:
            cut += 1
        if cut:
            del self.tokens[:cut]
            del self._starts[:cut]

    def index_at(self, t_s: float) -> int:
        """Index of the first token starting at or after ``t_s``."""
        return bisect.bisect_left(self._starts, t_s)

    def any_between(self, t_from: float, t_to: float) -> bool:
        """Any word starting in [t_from, t_to)?"""
        i = self.index_at(t_from)
        return i < len(self.tokens) and self.tokens[i].start_s < t_to

    def find(
        self, phrases: PhraseSet, t_from: float = float("-inf"), t_to: float = float("inf"),
    ) -> list[Match]:
        """Non-overlapping matches, left to right, whose first word starts in [t_from, t_to)."""
        out: list[Match] = []
        i = self.index_at(t_from)
        while i < len(self.tokens) and self.tokens[i].start_s < t_to:
            found = phrases.match_at(self.tokens, i, self.max_gap_s)
            if found is None:
                i += 1
                continue
            out.append(found[0])
            i = found[1] + 1
        return out
