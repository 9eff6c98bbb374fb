"""Phrase checks (cues.phrases): words injected at the recognizer seam, holds as frames."""

from __future__ import annotations

import math

import pytest

from appliance.config import WordsConfig
from appliance.cue_payloads import HoldNoPermission
from appliance.engine.conversation import FrameContext, HoldView, PartyFrame
from appliance.engine.cues.phrases import PhraseRule
from appliance.engine.words.locale import load_locale
from appliance.events import Cue
from tests.wordutil import say

FRAME_S = 0.032


def _pf(active):
    return PartyFrame(
        prob=0.9 if active else 0.02, level_dbfs=-26.0 if active else -60.0, echo=False,
        active=active, speaking=active, spurt_start_s=None, f0_hz=math.nan,
        digital_silence=False, noise_floor_dbfs=-60.0, music=False, nuclei_s=(),
    )


def simulate(rule, duration, words=(), *, holds=(), customer_speech=(), lag=0.6, close=True,
             heard_lag=None):
    """Drive ``rule`` like the engine: 32 ms frames, each word delivered ``lag`` s after it
    ended; holds as (start, end) with the real start in the hold view.  ``heard_lag``: the
    recognizer reports having delivered every word said before ``t - heard_lag``."""
    pending = sorted(words, key=lambda w: w.end_s)
    cues: list[Cue] = []
    t = 0.0
    for i in range(round(duration / FRAME_S)):
        t0, t = i * FRAME_S, (i + 1) * FRAME_S
        mid = 0.5 * (t0 + t)
        hold = next(((s, e) for s, e in holds if s <= mid < e), None)
        hv = HoldView(True, hold[0], "muted") if hold else HoldView(False, None, None)
        cust = any(s <= mid < e for s, e in customer_speech)
        if heard_lag is not None:
            rule.heard(t - heard_lag)
        cues += rule.on_frame(FrameContext(t0, t, _pf(False), _pf(cust), hv))
        due = [w for w in pending if w.end_s + lag <= t]
        if due:
            pending = pending[len(due):]
            cues += rule.on_words(t, due)
    if pending:
        cues += rule.on_words(t, pending)
    if close:
        cues += rule.close(t)
    for c in cues:
        assert len(c.message) <= 50, c.message
        assert c.party == "agent"
    return cues


def rule_for(lang="en", **kw):
    return PhraseRule(WordsConfig(**kw), load_locale(lang), lang=lang)


def kinds(cues, kind):
    return [c for c in cues if c.kind == kind]


# -- greeting ---------------------------------------------------------------------------------
def test_complete_greeting_with_configured_name_and_company_gets_a_positive_cue():
    rule = rule_for(agent_name="Anna Meyer", company="Acme Energy")
    words = say("agent", "Thank you for calling Acme Energy, my name is Anna, how can I help?", 1.0)
    cues = kinds(simulate(rule, 30.0, words), "greeting")
    assert len(cues) == 1 and cues[0].severity == "info"
    assert cues[0].t_s < 8.0  # as soon as it is complete
    assert rule.summary()["greeting"] == {"name": True, "company": True, "offer": True}


def test_greeting_without_configured_name_accepts_any_introduction_and_skips_company():
    rule = rule_for()
    cues = kinds(simulate(rule, 30.0, say("agent", "Hello, this is Tom speaking, how may I help"
                                          " you?", 0.5)), "greeting")
    assert len(cues) == 1 and "Good" in cues[0].message
    assert rule.summary()["greeting"] == {"name": True, "company": None, "offer": True}


def test_missing_name_is_cued_once_at_the_end_of_the_window():
    rule = rule_for()
    cues = kinds(simulate(rule, 40.0, say("agent", "Hello, how can I help you?", 0.5)), "greeting")
    assert [c.message for c in cues] == ["Greeting: say your name"]
    assert 20.0 <= cues[0].t_s <= 24.0
    assert cues[0].data.missing == ("name",)


def test_configured_name_must_be_the_agents_and_a_late_offer_does_not_count():
    rule = rule_for(agent_name="Anna Meyer", company="Acme")
    words = (say("agent", "Acme, my name is Paul.", 0.5)
             + say("agent", "how can I help", 25.0))
    cues = kinds(simulate(rule, 40.0, words), "greeting")
    assert [c.message for c in cues] == ["Greeting: add name, offer of help"]
    assert rule.summary()["greeting"] == {"name": False, "company": True, "offer": False}


def test_german_greeting_with_surname_only_and_a_lost_umlaut():
    rule = rule_for("de", agent_name="Anna Schmidt", company="Stadtwerke München")
    words = say("agent", "Stadtwerke Munchen, Schmidt, guten Tag, was kann ich für Sie tun?", 0.5)
    cues = kinds(simulate(rule, 30.0, words), "greeting")
    assert len(cues) == 1 and cues[0].message.startswith("Good")


def test_korean_greeting_with_the_name_before_its_ending_and_any_spacing():
    rule = rule_for("ko", agent_name="김민수", company="한빛통신")
    words = say("agent", "안녕하십니까 한빛 통신 상담원 김민수입니다 무엇을 도와 드릴까요", 0.5)
    cues = kinds(simulate(rule, 30.0, words), "greeting")
    assert len(cues) == 1 and cues[0].message.startswith("Good")
    rule = rule_for("ko", agent_name="김민수")
    cues = kinds(simulate(rule, 30.0, say("agent", "네 김민수입니다", 0.5)), "greeting")
    assert [c.message for c in cues] == ["Greeting: offer your help"]


def test_french_greeting_missing_the_offer():
    rule = rule_for("fr", company="Banque Lune")
    words = say("agent", "Banque Lune bonjour, c'est Marie à l'appareil.", 0.5)
    cues = kinds(simulate(rule, 30.0, words), "greeting")
    assert [c.message for c in cues] == ["Greeting: offer your help"]


def test_no_agent_words_means_no_greeting_judgement():
    rule = rule_for()
    assert simulate(rule, 40.0, say("customer", "hello hello", 1.0)) == []
    assert rule.summary()["greeting"] is None and rule.summary()["closing"] is None


# -- hold permission --------------------------------------------------------------------------
ASK = {"en": "May I put you on hold for a moment?",
       "de": "Darf ich Sie kurz in die Warteschleife legen?",
       "fr": "Puis-je vous mettre en attente un instant ?",
       "ko": "확인해 보겠습니다 잠시만 기다려 주시겠어요?"}
YES = {"en": "sure no problem", "de": "ja gern", "fr": "oui bien sûr", "ko": "네 괜찮아요"}


@pytest.mark.parametrize("lang", ["en", "de", "fr", "ko"])
def test_hold_asked_and_answered_is_fine(lang):
    rule = rule_for(lang)
    words = say("agent", ASK[lang], 20.0) + say("customer", YES[lang], 24.0)
    cues = simulate(rule, 60.0, words, holds=[(26.0, 40.0)])
    assert kinds(cues, "hold_no_permission") == []
    hp = rule.summary()["hold_permission"]
    assert hp["holds"] == 1 and hp["ok"] == 1 and hp["answered_yes"] == 1


@pytest.mark.parametrize("lang", ["en", "de", "fr", "ko"])
def test_hold_asked_but_not_answered(lang):
    rule = rule_for(lang)
    cues = simulate(rule, 60.0, say("agent", ASK[lang], 20.0), holds=[(24.0, 40.0)])
    c = kinds(cues, "hold_no_permission")
    assert len(c) == 1 and c[0].severity == "warn"
    assert c[0].data == HoldNoPermission(start_s=24.0, asked=True, answered=False)
    assert c[0].message == "Wait for the caller's answer first"
    assert 24.0 + 3.0 <= c[0].t_s <= 24.0 + 3.1  # after the recogniser's lag


@pytest.mark.parametrize("lang", ["en", "de", "fr", "ko"])
def test_hold_not_asked(lang):
    rule = rule_for(lang)
    words = say("agent", "okay let me check that", 20.0) + say("customer", YES[lang], 22.0)
    cues = simulate(rule, 60.0, words, holds=[(24.0, 40.0)])
    c = kinds(cues, "hold_no_permission")
    assert [x.message for x in c] == ["Ask before putting on hold"]
    assert rule.summary()["hold_permission"]["not_asked"] == 1


def test_answer_heard_only_by_voice_activity_counts_and_one_said_after_the_hold_does_not():
    rule = rule_for()
    cues = simulate(rule, 60.0, say("agent", ASK["en"], 20.0), holds=[(25.0, 40.0)],
                    customer_speech=[(23.0, 23.6)])
    assert kinds(cues, "hold_no_permission") == []
    rule = rule_for()
    words = say("agent", ASK["en"], 20.0) + say("customer", "okay", 26.0)
    cues = simulate(rule, 60.0, words, holds=[(25.0, 40.0)])
    assert len(kinds(cues, "hold_no_permission")) == 1


def test_a_request_older_than_a_minute_does_not_count():
    rule = rule_for()
    words = say("agent", ASK["en"], 5.0) + say("customer", "sure", 8.0)
    cues = simulate(rule, 110.0, words, holds=[(80.0, 95.0)])
    assert len(kinds(cues, "hold_no_permission")) == 1


def _late_call(rule):
    """Greeting, a hold asked for and thanked for: every word back 25 s after it was said
    (a file analysed faster than its recognizer decodes it)."""
    words = (say("agent", "Hello, this is Tom speaking, how may I help you?", 0.5)
             + say("agent", ASK["en"], 30.0) + say("customer", YES["en"], 34.0)
             + say("agent", "thank you for holding", 50.5))
    return simulate(rule, 90.0, words, holds=[(36.0, 50.0)], lag=25.0, heard_lag=25.5)


def test_word_checks_wait_for_the_recognizers_progress_rather_than_a_fixed_lag():
    rule = rule_for()
    cues = _late_call(rule)  # no progress reports: the fixed 3 s lag is too short here
    s = rule.summary()
    assert s["greeting"] is None  # judged before any word came back: no judgement
    assert s["hold_permission"]["not_asked"] == 1  # a false warning: the request came late
    assert [c.message for c in kinds(cues, "hold_no_permission")] == ["Ask before putting on hold"]
    rule = rule_for()
    rule.follow_recognizer(None)
    cues = _late_call(rule)
    s = rule.summary()
    assert s["greeting"] == {"name": True, "company": None, "offer": True}
    assert s["hold_permission"]["ok"] == 1 and s["hold_thanks"]["ok"] == 1
    assert not kinds(cues, "hold_no_permission") and not kinds(cues, "hold_no_thanks")


def test_a_live_check_waits_for_late_words_only_so_long():
    rule = rule_for()
    rule.follow_recognizer(15.0)  # the recognizer never reports progress
    cues = simulate(rule, 60.0, say("agent", "Hello, this is Tom speaking", 0.5))
    c = kinds(cues, "greeting")
    assert [x.message for x in c] == ["Greeting: offer your help"]
    assert 35.0 <= c[0].t_s <= 35.1  # the 20 s window, then 15 s for late words


def test_late_recognised_request_before_the_hold_still_counts():
    rule = rule_for()
    words = say("agent", ASK["en"], 20.0) + say("customer", "yes", 23.5)
    cues = simulate(rule, 60.0, words, holds=[(24.0, 40.0)], lag=2.5)
    assert kinds(cues, "hold_no_permission") == []


def test_hold_requested_s_is_set_until_a_hold_follows_and_expires():
    rule = rule_for()
    simulate(rule, 25.0, say("agent", "one moment please", 20.0), close=False)
    assert rule.hold_requested_s == pytest.approx(20.0 + 2 * 0.38 + 0.3)
    rule = rule_for()
    simulate(rule, 30.0, say("agent", "one moment please", 20.0), holds=[(23.0, 40.0)],
             close=False)
    assert rule.hold_requested_s is None
    rule = rule_for()
    simulate(rule, 90.0, say("agent", "one moment please", 20.0), close=False)
    assert rule.hold_requested_s is None  # more than a minute old
    assert rule_for().hold_requested_s is None


# -- after the hold ---------------------------------------------------------------------------
THANKS = {"en": "Thank you for holding, I found your order",
          "de": "Danke für Ihre Geduld, ich habe Ihre Bestellung",
          "fr": "Merci d'avoir patienté, j'ai trouvé votre commande",
          "ko": "기다려 주셔서 감사합니다 주문 내역을 찾았습니다"}
NO_THANKS = {"en": "So I found your order", "de": "Also ich habe Ihre Bestellung",
             "fr": "Alors j'ai trouvé votre commande",
             "ko": "네 주문 내역을 찾았습니다"}


def _hold_call(lang, after):
    words = (say("agent", ASK[lang], 20.0) + say("customer", YES[lang], 24.0)
             + say("agent", after, 41.0))
    rule = rule_for(lang)
    return rule, simulate(rule, 70.0, words, holds=[(26.0, 40.0)])


@pytest.mark.parametrize("lang", ["en", "de", "fr", "ko"])
def test_thanks_after_hold(lang):
    rule, cues = _hold_call(lang, THANKS[lang])
    assert kinds(cues, "hold_no_thanks") == []
    assert rule.summary()["hold_thanks"]["ok"] == 1
    rule, cues = _hold_call(lang, NO_THANKS[lang])
    c = kinds(cues, "hold_no_thanks")
    assert [x.message for x in c] == ["Thank the caller for waiting"]
    assert c[0].severity == "info" and 50.0 <= c[0].t_s <= 54.0
    assert rule.summary()["hold_thanks"]["missing"] == 1


def test_thanks_said_too_late_or_silence_after_hold():
    rule, cues = _hold_call("en", "So here we are")
    late = say("agent", "thanks for waiting", 55.0)
    assert len(kinds(cues, "hold_no_thanks")) == 1
    rule = rule_for()
    words = say("agent", ASK["en"], 20.0) + say("customer", "yes", 24.0) + late
    cues = simulate(rule, 70.0, words, holds=[(26.0, 40.0)])
    assert kinds(cues, "hold_no_thanks") == []  # nothing said in the 10 s: not judged
    assert rule.summary()["hold_thanks"]["unknown"] == 1


# -- closing ----------------------------------------------------------------------------------
CLOSE = {"en": ("Is there anything else I can help with?", "Thank you for calling, goodbye"),
         "de": ("Kann ich sonst noch etwas für Sie tun?", "Danke für Ihren Anruf"),
         "fr": ("Puis-je faire autre chose pour vous ?", "Merci de votre appel, au revoir"),
         "ko": ("혹시 더 궁금하신 점 있으신가요?", "전화 주셔서 감사합니다 좋은 하루 되세요")}


@pytest.mark.parametrize("lang", ["en", "de", "fr", "ko"])
def test_closing_present(lang):
    q, th = CLOSE[lang]
    rule = rule_for(lang)
    cues = simulate(rule, 100.0, say("agent", q, 80.0) + say("agent", th, 90.0))
    assert kinds(cues, "closing") == []
    assert rule.summary()["closing"] == {"question": True, "thanks": True}


@pytest.mark.parametrize("lang", ["en", "de", "fr", "ko"])
def test_closing_missing_question(lang):
    q, th = CLOSE[lang]
    rule = rule_for(lang)
    cues = simulate(rule, 100.0, say("agent", q, 20.0) + say("agent", th, 90.0))
    c = kinds(cues, "closing")
    assert [x.message for x in c] == ["Closing: ask if anything else is needed"]
    assert rule.summary()["closing"] == {"question": False, "thanks": True}


def test_closing_missing_thanks_and_both():
    rule = rule_for()
    cues = simulate(rule, 100.0, say("agent", "anything else today?", 85.0))
    assert [c.message for c in kinds(cues, "closing")] == ["Closing: thank the caller for calling"]
    rule = rule_for()
    cues = simulate(rule, 100.0, say("agent", "okay bye", 95.0))
    msgs = [c.message for c in kinds(cues, "closing")]
    assert msgs == ["Closing: ask 'anything else?' and thank"]


def test_closing_window_is_configurable():
    q, th = CLOSE["en"]
    rule = rule_for(closing_window_s=60.0)
    cues = simulate(rule, 100.0, say("agent", q, 50.0) + say("agent", th, 90.0))
    assert kinds(cues, "closing") == []


# -- restated, follow-up, jargon --------------------------------------------------------------
@pytest.mark.parametrize("lang, text", [
    ("en", "so if I understand correctly the bill is wrong"),
    ("de", "wenn ich Sie richtig verstehe ist die Rechnung falsch"),
    ("fr", "si je comprends bien la facture est fausse"),
    ("ko", "제가 이해한 게 맞다면 요금이 두 번 청구된 거죠"),
])
def test_restating_gets_a_positive_cue_at_most_once_a_minute(lang, text):
    rule = rule_for(lang)
    words = say("agent", text, 30.0) + say("agent", text, 50.0) + say("agent", text, 100.0)
    cues = kinds(simulate(rule, 120.0, words), "restated")
    assert [c.message for c in cues] == ["Good: you restated the problem"] * 2
    assert rule.summary()["restated"] == 3


def test_restating_near_miss():
    rule = rule_for()
    cues = simulate(rule, 60.0, say("agent", "if I understand the bill", 30.0))
    assert kinds(cues, "restated") == []


@pytest.mark.parametrize("lang, text", [
    ("en", "I'll call you back tomorrow"), ("de", "ich rufe Sie morgen zurück"),
    ("fr", "je vous rappelle demain"),
    ("ko", "다시 전화 드리겠습니다 내일 오전에요"),
])
def test_promised_callbacks_are_cued_and_listed(lang, text):
    rule = rule_for(lang)
    words = say("agent", text, 30.0) + say("agent", text, 40.0) + say("agent", text, 90.0)
    cues = kinds(simulate(rule, 120.0, words), "follow_up")
    assert len(cues) == 2 and cues[0].severity == "info"
    assert rule.summary()["follow_up"] == [{"t": 30.0}, {"t": 90.0}]


def test_jargon_is_cued_once_per_term_within_the_cooldown():
    rule = rule_for(jargon=["DSLAM", "port profile"])
    words = (say("agent", "the DSLAM is fine", 10.0) + say("agent", "the dslam again", 20.0)
             + say("agent", "your port profile", 25.0) + say("customer", "dslam?", 30.0)
             + say("agent", "the dslan is", 35.0) + say("agent", "DSLAM", 80.0))
    cues = kinds(simulate(rule, 100.0, words), "jargon")
    assert [c.data.term for c in cues] == ["DSLAM", "port profile", "DSLAM"]
    assert cues[0].message == "Jargon: 'DSLAM' — say it plainly"
    assert rule.summary()["jargon"] == {"DSLAM": 3, "port profile": 1}


# -- no word lists for the language -----------------------------------------------------------
def test_unknown_language_turns_phrase_checks_off_and_says_so():
    rule = PhraseRule(WordsConfig(jargon=["DSLAM"]), load_locale("xx"), lang="xx")
    words = say("agent", "hello DSLAM", 1.0) + say("agent", "wait", 20.0)
    cues = simulate(rule, 60.0, words, holds=[(25.0, 40.0)])
    assert [c.kind for c in cues] == ["jargon"]
    assert rule.summary() == {"phrases": "unavailable for language xx", "jargon": {"DSLAM": 1}}
    assert rule.hold_requested_s is None
