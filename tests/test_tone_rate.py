"""Tone and speaking-rate rules on synthetic frame timelines."""

from __future__ import annotations

import dataclasses
import math

from appliance.config import RateConfig, ToneConfig
from appliance.engine.cues.rate import RateRule
from appliance.engine.cues.tone import ToneRule
from appliance.events import WordEvent
from tests.ctxutil import frames


def _tone_run(raised_at=None, lvl=8.0, pitch_ratio=1.25, party="agent", jitter=True,
              intonation_st=0.8, spread_db=3.0):
    """Alternating sentences with level/pitch spread; optional raised stretch of 3 s."""
    rule = ToneRule(ToneConfig())
    cues = []
    speech = [(t, t + 2.6) for t in [x * 3.0 for x in range(25)]]
    for i, ctx in enumerate(frames(75.0, agent=speech, customer=speech)):
        pf = ctx.party(party)
        if pf.active:
            # within-speaker spread: ±spread_db and ±1 semitone from sentence to sentence
            k = int(ctx.t_s // 3.0)
            level = pf.level_dbfs + (spread_db * math.sin(k * 1.7) if jitter else 0.0)
            f0 = pf.f0_hz * 2 ** ((math.sin(k * 2.3) if jitter else 0.0) / 12)
            f0 *= 2 ** ((intonation_st * math.sin(i * 0.3)) / 12)  # intonation inside a sentence
            if raised_at is not None and raised_at <= ctx.t_s < raised_at + 3.0:
                level += lvl
                f0 *= pitch_ratio
            pf = dataclasses.replace(pf, level_dbfs=level, band_level_db=level - 2.0, f0_hz=f0)
            ctx = dataclasses.replace(ctx, **{party: pf})
        cues += rule.on_frame(ctx)
    return [c for c in cues if c.kind == "tone" and c.party == party]


def test_raised_agent_voice_is_found_against_own_baseline():
    cues = [c for c in _tone_run(raised_at=45.0) if c.data.state == "raised"]
    assert len(cues) == 1
    assert 45.0 <= cues[0].t_s <= 46.6
    assert cues[0].data.level_db >= 6.0


def test_agitated_customer_is_reported_for_the_customer():
    cues = _tone_run(raised_at=45.0, party="customer")
    assert [c.data.state for c in cues] == ["agitated"]


def test_louder_by_less_than_the_level_threshold_without_higher_pitch_is_not_raised():
    assert not [c for c in _tone_run(raised_at=45.0, lvl=6.8, pitch_ratio=1.0, jitter=False)
                if c.data.state == "raised"]
    # with a pitch rise above the speaker's own spread, 6.8 dB is enough (2 dB credit)
    assert [c for c in _tone_run(raised_at=45.0, lvl=6.8, pitch_ratio=1.25, jitter=False)
            if c.data.state == "raised"]


def test_a_strong_level_rise_alone_is_raised():
    """Real raised voices (most men) often rise by well under 1.5 semitones."""
    cues = [c for c in _tone_run(raised_at=45.0, lvl=10.0, pitch_ratio=1.02)
            if c.data.state == "raised"]
    assert len(cues) == 1 and 45.0 <= cues[0].t_s <= 46.6


def test_short_episode_and_early_baseline():
    """An episode of 1.2 s is found; so is one after 4 s of the speaker's speech, which
    needs a larger rise (early margin) than the same rise later on."""
    def run(at, lvl, dur):
        rule = ToneRule(ToneConfig())
        speech = [(0.5, 2.5), (3.0, 5.0), (5.5, 8.0)] + [(t, t + 2.0) for t in range(9, 40, 3)]
        out = []
        for ctx in frames(40.0, agent=speech):
            pf = ctx.agent
            if pf.active:  # lively intonation (no monotone cue, whose cooldown is shared)
                pf = dataclasses.replace(pf, f0_hz=120.0 * 2 ** (3 * math.sin(ctx.t_s) / 12))
            if pf.active and at <= ctx.t_s < at + dur:
                pf = dataclasses.replace(pf, band_level_db=pf.band_level_db + lvl)
            ctx = dataclasses.replace(ctx, agent=pf)
            out += [c for c in rule.on_frame(ctx) if c.kind == "tone"
                    and c.data.state == "raised"]
        return out
    assert run(30.0, 9.0, 1.2), "1.2 s episode"
    assert run(9.0, 11.5, 1.8), "early baseline, strong rise"
    assert not run(9.0, 7.5, 1.8), "early baseline: 7.5 dB is not enough yet"
    assert run(30.0, 7.5, 1.8), "the same rise with a full baseline"


def test_within_speaker_spread_alone_is_not_raised():
    for spread in (3.0, 5.0, 6.0):
        assert not [c for c in _tone_run(raised_at=None, spread_db=spread)
                    if c.data.state == "raised"], spread


def test_flat_pitch_is_monotone():
    cues = _tone_run(jitter=False)
    # intonation ±0.8 st sine has a robust spread ~0.6 st: below the 1.0 st default
    assert any(c.data.state == "monotone" for c in cues)
    # ordinary speech moves 2-4 semitones
    lively = [c for c in _tone_run(jitter=True, intonation_st=2.5)
              if c.data.state == "monotone"]
    assert lively == []


def _rate_run(syll_per_s, duration=60.0, words=None):
    rule = RateRule(RateConfig())
    speech = [(t, t + 4.0) for t in range(0, int(duration), 5)]
    cues = []
    acc = 0.0
    for ctx in frames(duration, agent=speech):
        nuclei = ()
        if ctx.agent.active:
            acc += syll_per_s * ctx.dt_s
            if acc >= 1.0:
                acc -= 1.0
                nuclei = (ctx.t_s,)
        ctx = dataclasses.replace(ctx, agent=dataclasses.replace(ctx.agent, nuclei_s=nuclei))
        cues += rule.on_frame(ctx)
        if words and ctx.agent.active and int(ctx.t_s / 0.4) != int(ctx.t0_s / 0.4):
            cues += rule.on_words(ctx.t_s, [WordEvent("agent", "x", ctx.t_s - 0.3, ctx.t_s)])
    return cues, rule


def test_fast_agent_gets_one_slow_down_cue():
    cues, rule = _rate_run(6.5)
    assert [c.data.state for c in cues] == ["fast"]
    assert abs(cues[0].data.syllables_per_s - 6.5) < 0.3
    assert cues[0].t_s < 16.0  # once min_speech_s of speech is in the window
    assert abs(rule.summary()["rate"]["agent"]["syllables_per_s"] - 6.5) < 0.3
    agent = rule.summary()["rate"]["agent"]
    assert 6.0 < agent["window_min"] <= agent["window_max"] < 7.0


def test_slow_and_good_rates():
    slow, _ = _rate_run(2.0)
    assert [c.data.state for c in slow] == ["slow"]
    good, _ = _rate_run(4.0)
    assert good == []


def test_rate_cue_carries_wpm_when_words_are_known():
    cues, _ = _rate_run(6.5, words=True)
    assert cues[0].data.wpm is not None and cues[0].data.wpm > 100


def test_word_memory_stays_bounded_on_a_long_call():
    rule = RateRule(RateConfig())
    for k in range(3000):  # an hour at a word every 1.2 s
        t = 1.2 * k
        rule.on_words(t + 0.5, [WordEvent("agent", "x", t, t + 0.3)])
    assert len(rule._word_speech_s) <= 2 * RateConfig().window_speech_s / 1.2 + 2
    assert rule.summary()["rate"]["agent"]["words"] == 3000
