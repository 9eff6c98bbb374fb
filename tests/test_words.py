"""Word lists and tolerant matching (appliance.engine.words), and the filler rule (cues.filler)."""

from __future__ import annotations

import pytest

from appliance.config import WordsConfig
from appliance.engine.cues.filler import FillerRule
from appliance.engine.words.locale import PHRASE_KEYS, Locale, load_locale, parse_locale
from appliance.engine.words.matching import (
    PhraseSet,
    WordBuffer,
    compact,
    edit_distance,
    fold,
    similar,
    tokens,
)
from appliance.events import Cue, WordEvent
from tests.wordutil import say


def buffer(text, party="agent", t0=0.0, **kw):
    b = WordBuffer(300.0)
    for w in say(party, text, t0, **kw):
        b.add(w)
    return b


def found(lang, key, text, **kw):
    loc = load_locale(lang)
    assert loc is not None
    return buffer(text, **kw).find(PhraseSet(loc.phrases(key)))


# -- normalisation ----------------------------------------------------------------------------
def test_fold_casefolds_and_folds_accents_umlauts_and_sharp_s_consistently():
    assert fold("Désolé") == "desole"
    assert fold("Straße") == fold("STRASSE") == "strasse"
    assert tokens("Ähm,") == tokens("aehm") == ("aehm",)
    assert tokens("für") == ("fuer",)
    assert fold("A\u0308hm") == fold("Ähm")  # decomposed umlaut


def test_apostrophes_and_hyphens_join_other_punctuation_separates():
    assert tokens("m’appelle") == tokens("m'appelle") == tokens("M`appelle") == ("mappelle",)
    assert tokens("hell-o-world") == ("helloworld",)
    assert tokens("help, please!") == ("help", "please")
    assert tokens("c'est * à", wildcard=True) == ("cest", "*", "a")
    assert tokens("c'est * à") == ("cest", "a")


def test_compact_form_for_fillers_collapses_spelling_variants():
    assert compact("Hmmm") == compact("hmm") == compact("hm") == "hm"
    assert compact("ÄHM") == compact("aehm") == compact("äähm")
    assert compact("Mm-hmm") == compact("mhm") == "mhm"
    assert compact("euhhh") == "euh"
    assert compact("um") != compact("uhm")


def test_token_similarity_follows_the_length_rule():
    assert similar("help", "hell")  # 4 letters: one edit
    assert not similar("help", "hello")  # two edits
    assert not similar("help", "hepl")  # a swap is two edits
    assert not similar("can", "cat")  # under 4 letters: exact only
    assert similar("correctly", "corectli")  # 8+ letters: two edits
    assert not similar("correctly", "corektli")
    assert edit_distance("kitten", "sitting", 5) == 3
    assert edit_distance("kitten", "sitting", 1) == 2  # stops early: limit + 1


# -- phrase matching --------------------------------------------------------------------------
def test_phrase_found_inside_a_sentence_with_times_of_first_and_last_word():
    m = found("en", "greeting_offer", "Good morning, how can I help you today?", t0=10.0)
    assert len(m) == 1
    assert m[0].start_s == pytest.approx(10.0 + 2 * 0.38)
    assert m[0].end_s == pytest.approx(10.0 + 5 * 0.38 + 0.3)


@pytest.mark.parametrize("text", [
    "How can I help?", "HOW CAN I HELP", "how can i hell you",  # one misrecognised word
    "how can I possibly help",  # one inserted word
])
def test_tolerant_matches(text):
    assert found("en", "greeting_offer", text)


@pytest.mark.parametrize("text", [
    "how can I hell-o-world", "how can I really truly help", "how can I", "can I help",
    "how could I help",
])
def test_near_misses_do_not_match(text):
    assert not found("en", "greeting_offer", text)


def test_anything_alone_is_not_anything_else():
    assert not found("en", "closing_question", "is there anything I missed")
    assert found("en", "closing_question", "is there anything else")
    assert found("en", "closing_question", "Anything else?")


def test_a_long_pause_breaks_a_phrase():
    b = WordBuffer(300.0)
    for w in say("agent", "how can I", 0.0) + say("agent", "help", 6.0):
        b.add(w)
    assert not b.find(PhraseSet(["how can I help"]))


def test_wildcard_takes_one_word_and_never_starts_or_ends_a_phrase():
    ps = PhraseSet(["this is * speaking", "* edge", "edge *"])
    assert len(ps) == 1
    assert buffer("hello this is Tom speaking").find(ps)
    assert not buffer("hello this is speaking").find(ps)


def test_german_phrases_with_umlauts_dropped_or_spelled_out():
    assert found("de", "hold_thanks", "Danke für Ihre Geduld")
    assert found("de", "hold_thanks", "danke fur ihre geduld")  # recogniser lost the umlaut
    assert found("de", "hold_thanks", "vielen Dank fuer Ihre Geduld")
    assert not found("de", "hold_thanks", "danke")
    assert not found("de", "hold_thanks", "danke schön")
    assert found("de", "closing_question", "Kann ich sonst noch etwas für Sie tun?")
    assert not found("de", "closing_question", "noch etwas")


def test_french_apostrophes_accents_and_split_words():
    assert found("fr", "hold_thanks", "Merci d’avoir patienté")
    assert found("fr", "hold_thanks", "merci d avoir patiente")  # split, no accents
    assert found("fr", "hold_request", "puis je vous mettre en attente")  # « puis-je » split
    assert found("fr", "hold_request", "Puis-je vous mettre en attente ?")
    assert not found("fr", "hold_request", "je vais vous mettre en attente")  # announces
    assert found("fr", "restate", "donc si j'ai bien compris")
    assert not found("fr", "closing_question", "une chose")


def test_hangul_is_folded_to_syllable_blocks_and_fillers_collapse_repeats():
    assert tokens("잠시만 기다려 주시겠어요?") == ("잠시만", "기다려", "주시겠어요")
    decomposed = "\u1100\u1161\u11b7\u1109\u1161"  # « 감사 » as conjoining jamo
    assert tokens(decomposed) == ("감사",)
    assert compact("어어") == compact("어") == "어" and compact("음") != compact("으음")
    assert tokens("[4] [쩜]") == ("4", "쩜")  # the Korean model's bracketed tokens


def test_korean_tolerance_counts_syllables_not_letters():
    assert similar("기다려", "기다리")  # 3 syllables: one
    assert not similar("전화", "저놔")  # 2 syllables: exact only
    assert similar("감사합니다", "감사함니다")  # as pronounced
    assert not similar("감사합니다", "감사하니")  # two syllables off a 5-syllable word
    assert similar("도와드릴까요", "도와줄까요")  # 6 syllables: two
    assert similar("김민수", "김민수입니다")  # a word with its ending
    assert not similar("네", "네트워크")  # one syllable never takes an ending


@pytest.mark.parametrize("text", [
    "무엇을 도와드릴까요", "무엇을 도와 드릴까요", "무 엇을 도와드 릴까요",  # any spacing
    "고객님 무엇을 도와드릴까요?", "무엇을 좀 도와드릴까요", "무엇을 도와드릴가요",
])
def test_korean_phrases_match_whatever_the_spacing(text):
    assert found("ko", "greeting_offer", text)


def test_korean_checks_do_not_take_each_others_sentences():
    thanks = "잠시만 기다려 주셔서 감사합니다"
    assert found("ko", "hold_thanks", thanks)
    assert not found("ko", "hold_request", thanks)  # thanking is not asking
    assert not found("ko", "closing_thanks", thanks)  # nor thanks for calling
    assert found("ko", "hold_request", "잠시만 기다려 주시겠어요")
    assert not found("ko", "hold_thanks", "잠시만 기다려 주시겠어요")
    assert not found("ko", "hold_request", "잠시만요 확인해 보겠습니다")
    assert found("ko", "closing_question", "혹시 더 궁금하신 점이 있으신가요")
    assert not found("ko", "closing_question", "궁금하신 점")
    assert found("ko", "closing_thanks", "전화 주셔서 감사합니다")
    assert not found("ko", "closing_thanks", "감사합니다")
    assert found("ko", "name_intro", "안녕하세요 상담원 김민수입니다")


def test_one_word_recognition_error_still_matches_in_each_language():
    assert found("en", "hold_request", "may I put you on hole")
    assert found("de", "hold_request", "darf ich Sie kurz in die Warteschleiffe legen")
    assert found("fr", "hold_thanks", "merci de votre patiance")
    assert not found("en", "hold_request", "may I put you on")
    assert found("ko", "hold_thanks", "기다려 주셔서 감사함니다")


def test_strict_phrase_sets_need_exact_words():
    ps = PhraseSet(["DSLAM port"], strict=True)
    assert buffer("the dslam port is down").find(ps)
    assert not buffer("the dslan port is down").find(ps)
    assert not buffer("the dslam big port").find(ps)


def test_buffer_keeps_late_words_in_time_order_and_forgets_old_ones():
    b = WordBuffer(60.0)
    for w in say("agent", "thank you", 1.0) + say("agent", "holding", 2.0):
        b.add(w)
    b.add(WordEvent("agent", "for", 1.8, 1.95))  # arrives late
    assert [t.text for t in b.tokens] == ["thank", "you", "for", "holding"]
    assert b.find(PhraseSet(["thank you for holding"]))
    assert b.any_between(1.7, 2.0) and not b.any_between(3.0, 9.0)
    b.prune(100.0)
    assert b.tokens == []


# -- locale files -----------------------------------------------------------------------------
def test_bundled_languages_load_and_regional_codes_fall_back():
    for lang in ("en", "de", "fr", "ko"):
        loc = load_locale(lang)
        assert isinstance(loc, Locale) and loc.language == lang
    de_at = load_locale("de-AT")
    assert de_at is not None and de_at.language == "de"
    assert load_locale("FR_ca") is not None
    assert load_locale("xx") is None
    assert load_locale("../en") is None
    assert load_locale("") is None


@pytest.mark.parametrize("lang, required", [
    ("en", ["um", "uh", "er", "erm", "hmm"]),
    ("de", ["äh", "ähm", "öh", "hm", "aehm"]),
    ("fr", ["euh", "heu", "ben", "bah", "hein"]),
    ("ko", ["음", "어", "그", "저"]),
])
def test_spec_fillers_are_listed_and_backchannels_are_not_fillers(lang, required):
    loc = load_locale(lang)
    assert loc is not None
    fillers = {compact(f) for f in loc.fillers}
    assert {compact(r) for r in required} <= fillers
    listening = "네" if lang == "ko" else "mhm"
    assert listening not in fillers and listening in {compact(b) for b in loc.backchannels}


@pytest.mark.parametrize("lang", ["en", "de", "fr", "ko"])
def test_every_phrase_list_has_variants_and_each_phrase_matches_itself(lang):
    loc = load_locale(lang)
    assert loc is not None
    for key in PHRASE_KEYS:
        phrases = loc.phrases(key)
        assert len(phrases) >= 4, key
        ps = PhraseSet(phrases)
        assert len(ps) == len(phrases)
        for p in phrases:
            assert buffer("well " + p.replace("*", "Marie") + " now").find(ps), (key, p)


def test_extra_fillers_are_added_once():
    loc = load_locale("en", ["like", "Um"])
    assert loc is not None
    assert "like" in loc.fillers and loc.fillers.count("Um") == 0


def _raw():
    return {
        "language": "en", "fillers": ["um"], "backchannels": ["mhm"],
        "phrases": {k: ["a phrase"] for k in PHRASE_KEYS},
    }


@pytest.mark.parametrize("change, error", [
    (lambda r: r.pop("fillers"), "fillers"),
    (lambda r: r["phrases"].pop("restate"), "restate"),
    (lambda r: r.update(language="de"), "file name"),
    (lambda r: r.update(backchannels=["hmm", "um"]), "both a filler and a backchannel"),
    (lambda r: r["phrases"].update(restate=["* so"]), "word at each end"),
    (lambda r: r["phrases"].update(restate=[]), "non-empty"),
    (lambda r: r["phrases"].update(extra=["x"]), "unknown key"),
    (lambda r: r.update(fillers=["you know"]), "single word"),
    (lambda r: r.update(colour="blue"), "unknown key"),
])
def test_invalid_locale_documents_are_rejected_with_the_key(change, error):
    raw = _raw()
    parse_locale(raw, "x.toml", expect="en")  # valid as built
    change(raw)
    with pytest.raises(ValueError, match=error):
        parse_locale(raw, "x.toml", expect="en")


# -- filler rule ------------------------------------------------------------------------------
def agent_stream(n_fillers, duration=60.0, filler="um", words_per_s=2.5, t0=0.0):
    """Agent words for ``duration`` s, ``n_fillers`` of them fillers, evenly spread."""
    n = int(duration * words_per_s)
    step = n // n_fillers if n_fillers else n + 1
    out = []
    for i in range(n):
        t = t0 + i / words_per_s
        w = filler if n_fillers and i % step == step // 2 and i // step < n_fillers else "word"
        out.append(WordEvent("agent", w, t, t + 0.3))
    return out


def feed(rule, words, batch_s=2.0):
    """Deliver words in batches, as the recognizer does (a little after they were said)."""
    cues: list[Cue] = []
    batch: list[WordEvent] = []
    next_t = batch_s
    for w in words:
        if w.end_s > next_t and batch:
            cues += rule.on_words(next_t + 0.5, batch)
            batch, next_t = [], next_t + batch_s
        batch.append(w)
    if batch:
        cues += rule.on_words(batch[-1].end_s + 0.5, batch)
    for c in cues:
        assert len(c.message) <= 50
    return cues


def filler_rule(lang="en", **kw):
    return FillerRule(WordsConfig(**kw), load_locale(lang), lang=lang)


def test_three_fillers_a_minute_do_not_cue_twelve_do():
    assert feed(filler_rule(), agent_stream(3)) == []
    cues = feed(filler_rule(), agent_stream(12))
    assert [c.kind for c in cues] == ["filler"]
    c = cues[0]
    assert c.party == "agent" and c.severity == "warn"
    assert c.message == "Many fillers (um): pause instead"
    assert c.data.count >= 3 and c.data.per_min > 6.0  # as soon as the rate shows
    assert set(c.data.words) == {"um"}  # filler tokens only, no transcript


def test_filler_threshold_is_configurable():
    assert feed(filler_rule(filler_per_min=2.0), agent_stream(4))
    assert not feed(filler_rule(filler_per_min=20.0), agent_stream(12))


def test_cooldown_and_rearm():
    rule = filler_rule()
    cues = feed(rule, agent_stream(24, duration=120.0))
    assert len(cues) == 1  # still high, but no repeat
    # calm for two minutes (re-arms), then many fillers again: a second cue
    cues = feed(rule, agent_stream(0, duration=120.0, t0=120.0) +
                agent_stream(12, duration=60.0, t0=240.0))
    assert len(cues) == 1 and cues[0].t_s > 240.0


@pytest.mark.parametrize("lang, spoken", [
    ("de", ["Ähm", "aehm", "äh", "hmm"]), ("fr", ["euh", "Euhh", "ben", "hein"]),
    ("en", ["Um", "uhh", "erm", "hmmm"]), ("ko", ["음", "어어", "그", "저"]),
])
def test_spelling_variants_are_counted(lang, spoken):
    rule = filler_rule(lang)
    words = [WordEvent("agent", w, i * 2.0, i * 2.0 + 0.3) for i, w in enumerate(spoken)]
    rule.on_words(10.0, words)
    s = rule.summary()["fillers"]
    assert s["agent"] == len(spoken) and s["by_source"]["asr"] == len(spoken)
    assert s["available"] is True


def test_backchannels_are_not_fillers():
    rule = filler_rule()
    rule.on_words(5.0, say("agent", "mhm mm-hmm uh huh okay", 0.0) +
                  say("customer", "uh-huh mm hmm", 0.0))
    assert rule.summary()["fillers"]["agent"] == 0
    assert rule.summary()["fillers"]["customer"] == 0
    rule.on_words(9.0, say("agent", "uh I think hmm", 6.0))
    assert rule.summary()["fillers"]["agent"] == 2


def test_customer_fillers_are_counted_but_never_cued():
    words = [WordEvent("customer", w.word, w.start_s, w.end_s) for w in agent_stream(20)]
    rule = filler_rule()
    assert feed(rule, words) == []
    s = rule.summary()["fillers"]
    assert s["customer"] == 20 and s["agent"] == 0


def test_acoustic_and_asr_at_overlapping_times_count_once():
    rule = filler_rule()
    rule.add_acoustic(11.0, "agent", 10.05, 10.45)
    rule.on_words(12.0, [WordEvent("agent", "um", 10.0, 10.3)])  # same filler, recognised later
    rule.on_words(21.0, [WordEvent("agent", "uh", 20.0, 20.3)])
    rule.add_acoustic(22.0, "agent", 20.1, 20.4)  # same, acoustic later
    rule.add_acoustic(31.0, "agent", 30.0, 30.4)  # acoustic only
    rule.on_words(41.0, [WordEvent("agent", "er", 40.0, 40.3)])  # asr only
    rule.add_acoustic(42.0, "agent", 41.0, 41.3)  # not overlapping: its own filler
    s = rule.summary()["fillers"]
    assert s["agent"] == 5
    assert s["by_source"] == {"asr": 1, "acoustic": 2, "both": 2}
    assert s["words"]["agent"] == {"um": 1, "uh": 1, "er": 1}


def test_acoustic_fillers_alone_can_cue():
    rule = filler_rule()
    rule.on_words(60.5, agent_stream(0))  # a minute of speech, no recognised fillers
    cues = []
    for i in range(10):
        cues += rule.add_acoustic(61.0, "agent", 2.0 + 5 * i, 2.4 + 5 * i)
    assert [c.message for c in cues] == ["Many filled pauses: pause instead"]


def test_unknown_language_counts_only_site_fillers_and_says_so():
    rule = FillerRule(WordsConfig(extra_fillers=["genre"]), None, lang="xx")
    rule.on_words(5.0, say("agent", "um genre euh", 0.0))
    s = rule.summary()["fillers"]
    assert s["agent"] == 1 and s["available"] is True
    bare = FillerRule(WordsConfig(), None, lang="xx")
    bare.on_words(5.0, say("agent", "um", 0.0))
    s = bare.summary()["fillers"]
    # no word list: recognised words find no fillers, only the acoustic source is left
    assert s["agent"] == 0 and s["sources"] == ["acoustic"] and "xx" in s["note"]


def test_multi_word_site_fillers_and_the_agents_own_name():
    rule = filler_rule(extra_fillers=["you know"])
    rule.on_words(5.0, say("agent", "it is you know broken you see", 0.0))
    assert rule.summary()["fillers"]["words"]["agent"] == {"you know": 1}
    rule = filler_rule("fr", agent_name="Ben")
    rule.on_words(5.0, say("agent", "je m'appelle Ben euh", 0.0))
    assert rule.summary()["fillers"]["agent"] == 1


def test_summary_shape_and_rates_per_minute_of_speech():
    rule = filler_rule()
    feed(rule, agent_stream(6))
    s = rule.summary()["fillers"]
    assert set(s) >= {"agent", "customer", "by_source", "per_min", "available"}
    # 6 fillers over ~60 s of speech (word spans, short gaps bridged)
    assert s["per_min"]["agent"] == pytest.approx(6.0, rel=0.1)
    assert s["per_min"]["customer"] is None


@pytest.mark.parametrize("cooldown_s, n_cues", [(60.0, 1), (0.0, 2)])
def test_cooldown_holds_back_a_second_cue_even_after_rearming(cooldown_s, n_cues):
    rule = FillerRule(WordsConfig(filler_window_s=20.0), load_locale("en"),
                      cooldown_s=cooldown_s, min_speech_s=5.0)
    words = (agent_stream(8, duration=20.0) + agent_stream(0, duration=25.0, t0=20.0)
             + agent_stream(8, duration=20.0, t0=45.0))
    cues = feed(rule, words)
    assert len(cues) == n_cues
    assert cues[-1].t_s > (45.0 if n_cues == 2 else 0.0)
