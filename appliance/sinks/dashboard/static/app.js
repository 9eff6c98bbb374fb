// Call coach dashboard.  No external assets; talks only to the box that served it.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(window.location.search);
  const token = params.get("token") || "";
  // the desk's page is served at "/", an agent's at "/agent/<id>": so are its stream and keys
  const agentPath = window.location.pathname.match(/^\/agent\/([^/]+)$/);
  let agent = null;
  if (agentPath) {
    try { agent = decodeURIComponent(agentPath[1]); } catch (_) { agent = agentPath[1]; }
  }
  const base = agent === null ? "" : "/agent/" + encodeURIComponent(agent);
  const withToken = (path) => {
    path = base + path;
    return token ? path + "?token=" + encodeURIComponent(token) : path;
  };
  if (agent !== null) document.title = "Call coach · " + agent;

  const FLASH_MS = 3000;
  const MAX_CUES = 5;
  const SEV = { info: ["●", "Note"], warn: ["▲", "Heads-up"], alert: ["■", "Alert"] };
  const TONE = {
    calm: ["●", "Calm", "state-ok"],
    raised: ["▲", "Raised", "state-warn"],
    monotone: ["▬", "Flat", "state-warn"],
    agitated: ["▲", "Agitated", "state-warn"],
  };
  const SHORT = {
    interruption: "Let the caller finish",
    hold_leak: "Caller can hear you on hold",
    hold_unmuted: "Microphone open on hold",
    dead_air: "Silence — talk to the caller",
  };

  let state = null;          // last state snapshot
  let stateAt = 0;           // performance.now() when it arrived
  let connected = false;
  let everConnected = false;
  let flashTimer = 0;
  let holdOn = false;
  let holdPending = null;    // "start" | "end" while a POST is in flight
  let holdPendingUntil = 0;  // ...or until the box confirms it (or not) in a snapshot
  let leakSeen = false;      // hold_leak cue during the current hold
  let holdHint = "";
  let deadAirCued = false;
  let endConfirmUntil = 0;
  const cues = [];

  const text = (el, s) => { if (el.textContent !== s) el.textContent = s; };
  const show = (el, on) => { el.hidden = !on; };
  const clock = (s) => {
    if (s == null || !isFinite(s)) return "–";
    s = Math.max(0, Math.floor(s));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  };
  const num = (v) => (typeof v === "number" && isFinite(v) ? v : null);

  // -- connection ---------------------------------------------------------------------
  let source = null;
  function connect() {
    source = new EventSource(withToken("/events"));
    source.addEventListener("open", () => setConnected(true));
    source.addEventListener("error", () => {
      setConnected(false);
      if (source.readyState === EventSource.CLOSED) {  // refused (401, 503): retry ourselves
        source.close();
        setTimeout(connect, 2000);
      }
    });
    source.addEventListener("state", (e) => onState(parse(e.data)));
    source.addEventListener("cue", (e) => onCue(parse(e.data)));
    source.addEventListener("summary", (e) => onSummary(parse(e.data)));
    source.addEventListener("call", (e) => {
      const ev = parse(e.data);
      if (ev && ev.kind === "call_started") newCall();
    });
  }
  function parse(s) { try { return JSON.parse(s); } catch (_) { return null; } }
  function setConnected(on) {
    connected = on;
    everConnected = everConnected || on;
    document.body.dataset.connected = on ? "1" : "0";
    text($("conn-text"), on ? "Live" : everConnected ? "Reconnecting…" : "Connecting…");
    renderBanner();
  }

  function renderBanner() {
    const flowing = !state || !state.audio || state.audio.flowing !== false;
    if (!connected) text($("no-audio-text"), everConnected ? "Reconnecting to the call box…"
                                                           : "Connecting to the call box…");
    else if (!flowing) text($("no-audio-text"), "No audio — check the headset and the line");
    show($("no-audio"), !connected || !flowing);
  }

  // -- state snapshot -----------------------------------------------------------------
  function onState(s) {
    if (!s || typeof s !== "object") return;
    state = s;
    stateAt = performance.now();
    renderBanner();
    renderSpeaking(s.speaking || {}, num(s.talk_share));
    renderRate(s.rate);
    text($("fillers"), String(num(s.fillers_last_min) ?? 0));
    renderTone(s.tone || {});
    renderHold(s.hold || {});
    renderDeadAir(num(s.dead_air_s) ?? 0);
    renderChecks(s.greeting, s.closing, s.phrases);
    if (s.idle) {  // between calls: nothing of the last call is shown as if it were live
      text($("talk-share"), "Between calls — waiting for the line");
    }
  }

  function newCall() {
    cues.length = 0;
    renderCues();
    show($("summary"), false);
    leakSeen = false;
    holdHint = "";
  }

  function renderSpeaking(sp, share) {
    $("spk-agent").classList.toggle("on", !!sp.agent);
    $("spk-customer").classList.toggle("on", !!sp.customer);
    const el = $("talk-share");
    text(el, share === null ? "Share of talk: –" : "You talk " + Math.round(share * 100) + " %");
    el.classList.toggle("high", share !== null && share > 0.65);
  }

  function renderRate(r) {
    const marker = $("rate-marker"), band = $("rate-band");
    const st = $("rate-state");
    if (!r || num(r.syllables_per_s) === null) {
      show(marker, false);
      text(st, "Listening…");
      st.className = "big state-off";
      text($("rate-value"), " ");
      return;
    }
    const lo = num(r.band && r.band[0]) ?? 3, hi = num(r.band && r.band[1]) ?? 5;
    const max = Math.max(hi * 1.6, r.syllables_per_s * 1.05);
    const pct = (v) => Math.min(100, Math.max(0, (100 * v) / max)) + "%";
    band.style.left = pct(lo);
    band.style.width = "calc(" + pct(hi) + " - " + pct(lo) + ")";
    marker.style.left = pct(r.syllables_per_s);
    show(marker, true);
    const words = { ok: ["✓ Good pace", "state-ok"], fast: ["▲ Too fast — slow down", "state-warn"],
                    slow: ["▼ A little slow", "state-warn"] }[r.state] || ["✓ Good pace", "state-ok"];
    text(st, words[0]);
    st.className = "big " + words[1];
    let v = r.syllables_per_s.toFixed(1) + " syllables/s";
    if (num(r.wpm) !== null) v += " · " + Math.round(r.wpm) + " words/min";
    text($("rate-value"), v);
  }

  function renderTone(t) {
    for (const who of ["agent", "customer"]) {
      const el = $("tone-" + who);
      const d = TONE[t[who]] || ["○", "–", "state-off"];
      text(el, d[0] + " " + d[1]);
      el.className = "chip " + d[2];
    }
  }

  function holdElapsed(h) {
    let e = num(h.elapsed_s);
    if (e === null && num(h.start) !== null && state && num(state.t) !== null) e = state.t - h.start;
    if (e === null) return null;
    const since = (performance.now() - stateAt) / 1000;
    return e + (connected && since < 2 ? since : 0);  // run on between snapshots
  }

  function renderHold(h) {
    const on = !!h.on;
    if (on !== holdOn) { leakSeen = false; holdHint = ""; }
    holdOn = on;
    if (holdPending === (on ? "start" : "end") || performance.now() > holdPendingUntil) {
      holdPending = null;
    }
    const panel = $("hold-panel");
    panel.dataset.on = on ? "1" : "0";
    panel.classList.toggle("open-mic", on && !!h.open_mic);
    text($("hold-timer"), on ? clock(holdElapsed(h)) : "–");
    let type = "Not on hold";
    if (on) {
      type = "On hold · " + ({ music: "♪ music", muted: "✓ muted", unmuted: "▲ microphone open" }[h.type]
        || "judging…");
      if (h.open_mic) type = "▲ OPEN MIC — the caller may hear the room";  // words, not colour
      if (h.via) type += " · via " + h.via;
    }
    text($("hold-type"), type);
    text($("hold-hint"), holdHint);
    show($("hold-hint"), on && holdHint !== "");
    show($("leak-alert"), on && (leakSeen || !!h.leak));
    renderHoldKey();
  }

  function renderHoldKey() {
    const key = $("hold-key");
    const on = holdPending ? holdPending === "start" : holdOn;
    key.setAttribute("aria-pressed", on ? "true" : "false");
    text($("hold-key-text"), on ? "End hold" : "Hold");
  }

  function renderDeadAir(s) {
    text($("dead-air"), Math.floor(s) + " s");
    if (s <= 0) deadAirCued = false;
    $("dead-air-tile").classList.toggle("long", deadAirCued && s > 0);
    text($("dead-air-hint"), deadAirCued && s > 0 ? "▲ Tell the caller what you are doing"
                                                  : "nobody speaking");
  }

  function renderChecks(greeting, closing, phrases) {
    const fill = (listId, d, final) => {
      for (const li of $(listId).children) {
        const v = d ? d[li.dataset.key] : null;
        li.className = v === true ? "done" : v === false && final ? "missed" : v === null ? "na" : "";
      }
    };
    const off = $("checks-off");
    off.textContent = phrases === "no_locale" ? "Phrase checks are off for this language"
                                                 : "Phrase checks need a speech model";
    show(off, !greeting && !closing);
    fill("greeting-list", greeting, true);
    fill("closing-list", closing, false);
  }

  // -- cues ---------------------------------------------------------------------------
  function onCue(c) {
    if (!c || typeof c !== "object") return;
    cues.unshift(c);
    cues.length = Math.min(cues.length, MAX_CUES);
    renderCues();
    if (c.replay) return;  // history on (re)connect: list it, do not flash it
    if (c.kind === "interruption" && c.party !== "customer") flash(SHORT.interruption);
    if (c.kind === "hold_leak") { leakSeen = true; show($("leak-alert"), holdOn); }
    if (c.kind === "hold_check_back" || c.kind === "hold_too_long") holdHint = "▲ " + c.message;
    if (c.kind === "dead_air") deadAirCued = true;
    if (state) renderHold(state.hold || {});
  }

  function flash(msg) {
    text($("flash-text"), msg);
    show($("flash-interruption"), true);
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => show($("flash-interruption"), false), FLASH_MS);
  }

  function renderCues() {
    const list = $("cue-list");
    list.replaceChildren(...cues.map((c) => {
      const li = document.createElement("li");
      li.dataset.kind = String(c.kind || "");
      li.dataset.t = String(c.t);
      const sev = SEV[c.severity] || SEV.info;
      const s = document.createElement("span");
      s.className = "sev sev-" + (SEV[c.severity] ? c.severity : "info");
      s.textContent = sev[0] + " " + sev[1];
      const m = document.createElement("span");
      let msg = SHORT[c.kind] || String(c.message || c.kind || "");
      if (msg.length > 60) msg = msg.slice(0, 57) + "…";
      m.textContent = msg;
      const w = document.createElement("span");
      w.className = "when";
      w.textContent = clock(num(c.t));
      li.append(s, m, w);
      return li;
    }));
    show($("cue-empty"), cues.length === 0);
  }

  // -- summary ------------------------------------------------------------------------
  function onSummary(ev) {
    const d = (ev && ev.data) || {};
    const pair = (o) => (o && typeof o === "object" ? [o.agent, o.customer] : ["–", "–"]);
    const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(1))
                                              : v == null ? "–" : String(v));
    const rate = d.rate || {};
    const fill = d.fillers || {};
    const tone = d.tone || {};
    const rows = [
      ["Talk time (s)", ...pair(d.talk_s)],
      ["Interruptions made", ...pair(d.interruptions)],
      ["Syllables / s", (rate.agent || {}).syllables_per_s, (rate.customer || {}).syllables_per_s],
      ["Fillers", fill.available === false ? "n/a" : fill.agent, fill.available === false ? "n/a" : fill.customer],
      ["Raised / agitated", (tone.agent || {}).raised, (tone.customer || {}).agitated],
    ];
    $("summary-rows").replaceChildren(...rows.map((r) => {
      const tr = document.createElement("tr");
      r.forEach((v, i) => {
        const td = document.createElement(i === 0 ? "th" : "td");
        td.textContent = i === 0 ? v : fmt(v);
        tr.append(td);
      });
      return tr;
    }));
    text($("summary-duration"), "Length " + clock(num(d.duration_s)));
    const notes = [];
    const holds = Array.isArray(d.holds) ? d.holds : [];
    if (holds.length) {
      const total = holds.reduce((a, h) => a + (num(h.duration_s) ?? 0), 0);
      const leaks = holds.reduce((a, h) => a + (Array.isArray(h.leaks) ? h.leaks.length : 0), 0);
      notes.push(holds.length + " hold(s), " + clock(total) + " in all" + (leaks ? ", ▲ " + leaks + " leak(s)" : ""));
    }
    if (d.dead_air && num(d.dead_air.count)) notes.push("▲ Silences: " + d.dead_air.count);
    if (num(d.agent_share) !== null) notes.push("You talked " + Math.round(d.agent_share * 100) + " % of the time");
    const g = d.greeting, cl = d.closing;
    if (g && typeof g === "object") notes.push("Greeting: " + checkWords(g));
    if (cl && typeof cl === "object") notes.push("Closing: " + checkWords(cl));
    $("summary-notes").replaceChildren(...notes.map((n) => {
      const li = document.createElement("li");
      li.textContent = n;
      return li;
    }));
    show($("summary"), true);
  }
  function checkWords(o) {
    return Object.entries(o).filter(([, v]) => typeof v === "boolean")
      .map(([k, v]) => (v ? "✓ " : "✗ ") + k.replace(/_/g, " ")).join("  ") || "–";
  }

  // -- keys ---------------------------------------------------------------------------
  async function post(path, body) {
    const r = await fetch(withToken(path), {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}), credentials: "same-origin", cache: "no-store",
    });
    if (!r.ok) throw new Error((await r.text()).trim() || String(r.status));
  }

  function status(msg) { text($("key-status"), msg || " "); }

  $("hold-key").addEventListener("click", async () => {
    const action = (holdPending ? holdPending === "start" : holdOn) ? "end" : "start";
    holdPending = action;
    holdPendingUntil = performance.now() + 3000;
    renderHoldKey();
    try {
      await post("/hold", { action });
      status(action === "start" ? "Hold started" : "Hold ended");
    } catch (e) {
      holdPending = null;
      renderHoldKey();
      status("Hold key failed: " + e.message);
    }
  });

  $("end-key").addEventListener("click", async () => {
    const key = $("end-key");
    if (performance.now() > endConfirmUntil) {  // two taps: no call ends by accident
      endConfirmUntil = performance.now() + 3000;
      key.classList.add("confirm");
      text($("end-key-text"), "Tap again to end");
      setTimeout(() => {
        key.classList.remove("confirm");
        text($("end-key-text"), "End call");
      }, 3000);
      return;
    }
    endConfirmUntil = 0;
    key.classList.remove("confirm");
    text($("end-key-text"), "End call");
    try { await post("/end"); status("Call ended"); } catch (e) { status("End call failed: " + e.message); }
  });

  $("summary-close").addEventListener("click", () => show($("summary"), false));

  // the hold timer runs on between snapshots; a silent stream is shown as such
  setInterval(() => {
    if (state && state.hold && state.hold.on) text($("hold-timer"), clock(holdElapsed(state.hold)));
  }, 250);

  renderCues();
  renderBanner();
  connect();
})();
