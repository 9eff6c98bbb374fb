// The team lead's floor: one row per live call of the PBX tap (agent, call time, hold
// timer, last cue, source).  Polls /api/floor every second; talks only to the box that served
// it.  The box sends no words and no audio, and the page shows none.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1000;
  const TIMEOUT_MS = 4000;
  const RUN_ON_S = 5;  // timers run on between polls, up to this long after the last answer
  const SEV = { info: "●", warn: "▲", alert: "■" };
  const HOLD = { on: "❚❚", check: "▲", long: "■" };
  const SOURCE = { websocket: "WebSocket", rtp: "RTP", audiosocket: "AudioSocket" };
  const LABEL = {
    speaking_rate: "Pace", dead_air: "Silence", talk_ratio: "Talk share", filler: "Fillers",
    hold_started: "Hold started", hold_ended: "Hold ended", hold_leak: "Heard on hold",
    hold_unmuted: "Mic open on hold", hold_check_back: "Check back", hold_too_long: "Hold too long",
    hold_no_permission: "Hold not asked", hold_no_thanks: "No thanks after hold",
    greeting: "Greeting", closing: "Closing", restated: "Restated", follow_up: "Callback promised",
    jargon: "Jargon", answer_delay: "Slow answer", hung_up_first: "Hung up first",
  };

  // the page is opened once with ?token=…: the box answers with a cookie, which the polls
  // carry; the token in the address is sent again only if the box refuses the cookie
  const token = new URLSearchParams(window.location.search).get("token") || "";
  let sendToken = false;

  let limits = { check_back_s: 45, too_long_s: 60 };
  let polledAt = 0;    // performance.now() of the last answer
  let answeredAt = 0;  // Date.now() of it, for the banner
  let everAnswered = false;
  let failing = false;
  let why = "";
  const rows = new Map();  // call_id -> row

  const text = (el, s) => { if (el.textContent !== s) el.textContent = s; };
  const show = (el, on) => { el.hidden = !on; };
  const num = (v) => (typeof v === "number" && isFinite(v) ? v : null);
  const pad = (n) => String(n).padStart(2, "0");
  const clock = (s) => {
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    return (h ? h + ":" + pad(m) : String(m)) + ":" + pad(s % 60);
  };

  // -- polling ------------------------------------------------------------------------
  async function poll() {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    const get = () => fetch(sendToken ? "/api/floor?token=" + encodeURIComponent(token) : "/api/floor",
                            { credentials: "same-origin", cache: "no-store", signal: ctl.signal });
    try {
      let r = await get();
      if (r.status === 401 && token && !sendToken) {
        sendToken = true;
        r = await get();
      }
      if (r.status === 401) throw new Error("signed out");
      if (!r.ok) throw new Error("HTTP " + r.status);
      const view = await r.json();
      if (!view || !Array.isArray(view.calls)) throw new Error("unexpected answer");
      onView(view);
      setFresh(true, "");
    } catch (e) {
      setFresh(false, e && e.message ? e.message : "offline");
    } finally {
      clearTimeout(timer);
      setTimeout(poll, POLL_MS);
    }
  }

  function setFresh(ok, reason) {
    failing = !ok;
    why = reason;
    if (ok) {
      everAnswered = true;
      answeredAt = Date.now();
    }
    document.body.dataset.connected = ok ? "1" : "0";
    text($("conn-text"), ok ? "Live" : everAnswered ? "Offline" : "Connecting…");
    renderBanner();
  }

  function renderBanner() {
    let msg = "";
    if (failing && why === "signed out") msg = "Signed out — open the floor's link with its token again";
    else if (failing && everAnswered) {
      const s = Math.max(0, Math.floor((Date.now() - answeredAt) / 1000));
      msg = "No connection to the call box — last update " + (s < 60 ? s + " s" : clock(s)) + " ago";
    } else if (failing) msg = "Cannot reach the call box";
    text($("stale-text"), msg);
    show($("stale"), msg !== "");
  }

  // -- the calls ----------------------------------------------------------------------
  function onView(v) {
    const hl = v.hold_limits || {};
    if (num(hl.check_back_s) !== null) limits.check_back_s = hl.check_back_s;
    if (num(hl.too_long_s) !== null) limits.too_long_s = hl.too_long_s;
    polledAt = performance.now();
    const body = $("rows");
    const seen = new Set();
    let i = 0;
    for (const c of v.calls) {
      if (!c || typeof c.call_id !== "string" || seen.has(c.call_id)) continue;
      seen.add(c.call_id);
      let row = rows.get(c.call_id);
      if (!row) {
        row = makeRow(c.call_id);
        rows.set(c.call_id, row);
      }
      row.call = c;
      if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
      fill(row);
      i += 1;
    }
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    const n = rows.size;
    text($("count"), n === 0 ? "No calls" : n === 1 ? "1 call" : n + " calls");
    const left = num(v.left_out) ?? 0;
    text($("left-out"), left > 0 ? "+ " + left + " calls not listed (the floor is full)" : "");
    show($("left-out"), left > 0);
    show($("calls"), n > 0);
    show($("empty"), n === 0);
  }

  function makeRow(callId) {
    const tr = document.createElement("tr");
    tr.dataset.call = callId;
    const td = (cls) => {
      const el = document.createElement("td");
      el.className = cls;
      tr.append(el);
      return el;
    };
    const span = (parent, cls) => {
      const el = document.createElement("span");
      el.className = cls;
      parent.append(el);
      return el;
    };
    const row = { tr, call: null, shownDur: 0, shownHold: 0 };
    row.agent = td("agent");
    row.dur = td("dur");
    row.hold = td("hold");
    row.cue = td("cue");
    row.sev = span(row.cue, "sev");
    row.label = span(row.cue, "what");
    row.when = span(row.cue, "when");
    row.source = td("source");
    return row;
  }

  function fill(row) {
    const c = row.call;
    text(row.agent, c.agent_id ? String(c.agent_id) : "–");
    text(row.source, SOURCE[c.source] || String(c.source || "–"));
    const q = c.last_cue && typeof c.last_cue === "object" ? c.last_cue : null;
    const sev = q && SEV[q.severity] ? q.severity : "info";
    row.cue.dataset.kind = q ? String(q.kind || "") : "";
    row.cue.dataset.severity = q ? sev : "";
    row.sev.className = "sev sev-" + sev;
    text(row.sev, q ? SEV[sev] : "");
    text(row.label, q ? label(q) : "–");
    text(row.when, q && num(q.t_s) !== null ? "at " + clock(q.t_s) : "");
    tick(row);
  }

  function label(q) {
    if (q.kind === "interruption") return q.party === "customer" ? "Caller interrupted" : "Interrupted";
    if (q.kind === "tone") return q.party === "customer" ? "Caller upset" : "Tone";
    return LABEL[q.kind] || String(q.kind || "Cue").replace(/_/g, " ");
  }

  // the call and hold timers count on between polls (never backwards) while the box answers
  function tick(row) {
    const c = row.call;
    const run = failing ? 0 : Math.min(RUN_ON_S, (performance.now() - polledAt) / 1000);
    row.shownDur = Math.max(row.shownDur, (num(c.duration_s) ?? 0) + run);
    text(row.dur, clock(row.shownDur));
    let state = "off";
    if (c.on_hold) {
      row.shownHold = Math.max(row.shownHold, (num(c.hold_s) ?? 0) + run);
      const h = row.shownHold;
      state = h >= limits.too_long_s ? "long" : h >= limits.check_back_s ? "check" : "on";
      text(row.hold, HOLD[state] + " " + clock(h));
      row.hold.title = state === "long" ? "On hold over " + limits.too_long_s + " s"
        : state === "check" ? "On hold over " + limits.check_back_s + " s: time to check back" : "On hold";
    } else {
      row.shownHold = 0;
      text(row.hold, "–");
      row.hold.title = "";
    }
    row.tr.dataset.hold = state;
  }

  setInterval(() => {
    for (const row of rows.values()) tick(row);
    if (failing) renderBanner();
  }, 250);

  poll();
})();
