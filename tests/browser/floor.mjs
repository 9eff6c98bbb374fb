// The team lead's floor (/floor) and one agent's page (/agent/a-1) of a running PBX tap, in
// the system's headless Chromium.  Usage: node floor.mjs BASE_URL TOKEN SCREENSHOT_DIR
// Prints one JSON object a line at each checkpoint; tests/test_floor_page.py streams the
// calls, reacts to the checkpoints (lets a paused call go on, stops the service) and
// asserts on what is reported here.  Every wait is on what the page shows (the timeouts
// only bound a hang).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, token, shotDir] = process.argv.slice(2);
const HANG_MS = 240000;
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const guard = setTimeout(() => { say({ step: "error", error: "overall timeout" }); process.exit(3); }, 900000);
const profile = mkdtempSync(join(tmpdir(), "floor-chromium-"));
let browser;
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: 30000,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 600 },
  });
  const consoleErrors = [];
  const external = [];
  const watch = (page, requests) => {
    page.on("request", (r) => {
      const u = new URL(r.url());
      if (u.origin !== new URL(base).origin && u.protocol !== "data:") external.push(r.url());
      else requests.push(r.method() + " " + u.pathname + u.search);
    });
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    page.setDefaultTimeout(HANG_MS);
  };

  // -- the floor, reached once with the token ---------------------------------------------
  const floor = browser.pages()[0] || await browser.newPage();
  const floorRequests = [];
  watch(floor, floorRequests);
  const resp = await floor.goto(base + "/floor?token=" + encodeURIComponent(token),
                                { waitUntil: "load", timeout: 30000 });
  await floor.waitForFunction(() => document.body.dataset.connected === "1"
    && !document.getElementById("empty").hidden);
  say({ step: "empty", title: await floor.title(), headers: resp.headers(),
        empty: await floor.locator("#empty").innerText(),
        count: await floor.locator("#count").innerText() });

  const rows = () => floor.$$eval("#rows tr", (trs) => trs.map((tr) => {
    const cell = (cls) => tr.querySelector("." + cls);
    return { call: tr.dataset.call, hold_state: tr.dataset.hold, agent: cell("agent").textContent,
             dur: cell("dur").textContent, hold: cell("hold").textContent,
             hold_title: cell("hold").title,
             kind: cell("cue").dataset.kind, severity: cell("cue").dataset.severity,
             cue: cell("cue").textContent, sev_color: getComputedStyle(cell("sev")).color,
             source: cell("source").textContent };
  }));
  // -- both calls on the floor, each with a cue --------------------------------------------
  // (predicates are functions: a string would need eval, which the page's CSP forbids)
  await floor.waitForFunction(() => {
    const kinds = {};
    for (const tr of document.querySelectorAll("#rows tr")) {
      kinds[tr.querySelector(".agent").textContent] = tr.querySelector(".cue").dataset.kind;
    }
    return kinds["a-1"] && kinds["b-2"];
  });
  say({ step: "rows", rows: await rows(), count: await floor.locator("#count").innerText(),
        emptyHidden: await floor.locator("#empty").isHidden() });

  // -- a-1 is put on hold: its timer passes check_back_s, then too_long_s ------------------
  // (the cue comes with the call's events, the timer with its states: both are waited for)
  const held = (state, kind) => floor.waitForFunction(([state, kind]) => {
    const a = [...document.querySelectorAll("#rows tr")]
      .find((tr) => tr.querySelector(".agent").textContent === "a-1");
    return a && a.dataset.hold === state && a.querySelector(".cue").dataset.kind === kind;
  }, [state, kind]);
  await held("check", "hold_check_back");
  say({ step: "check_back", rows: await rows() });
  await held("long", "hold_too_long");
  await floor.screenshot({ path: join(shotDir, "floor.png") });
  say({ step: "long", rows: await rows() });

  // -- a-1's own page, on the cookie (no token in its address) ----------------------------
  const agent = await browser.newPage();
  const agentRequests = [];
  watch(agent, agentRequests);
  await agent.addInitScript(() => {  // what the page's stream brings, by call
    const Real = window.EventSource;
    window.__seen = [];
    class Recording extends Real {
      constructor(url, opts) {
        super(url, opts);
        for (const kind of ["state", "cue", "summary", "call"]) {
          this.addEventListener(kind, (e) => {
            try { window.__seen.push([kind, JSON.parse(e.data).call_id ?? null]); } catch (_) {}
          });
        }
      }
    }
    window.EventSource = Recording;
  });
  await agent.goto(base + "/agent/a-1", { waitUntil: "load", timeout: 30000 });
  // a-1 waits 61 s into its hold: its page shows a minute on hold and its cues
  await agent.waitForFunction(() => document.body.dataset.connected === "1"
    && document.getElementById("hold-panel").dataset.on === "1"
    && /^[1-9]\d*:\d\d$/.test(document.getElementById("hold-timer").textContent)
    && document.querySelectorAll("#cue-list li").length > 0);
  await agent.screenshot({ path: join(shotDir, "agent-a-1.png") });
  say({ step: "agent", title: await agent.title(),
        holdTimer: await agent.locator("#hold-timer").innerText(),
        holdType: await agent.locator("#hold-type").innerText(),
        cues: await agent.$$eval("#cue-list li", (els) => els.map((e) => e.dataset.kind)),
        seen: await agent.evaluate(() => window.__seen), requests: agentRequests });

  // -- the calls end: their rows leave ------------------------------------------------------
  await floor.waitForFunction(() => document.querySelectorAll("#rows tr").length === 0
    && !document.getElementById("empty").hidden);
  const seenLater = await agent.evaluate(() => window.__seen);
  await agent.close();
  say({ step: "gone", count: await floor.locator("#count").innerText(),
        empty: await floor.locator("#empty").innerText(), seen: seenLater,
        floorRequests: [...new Set(floorRequests)], consoleErrors: [...consoleErrors], external });

  // -- the service stops: the floor says it is offline ------------------------------------
  await floor.waitForFunction(() => !document.getElementById("stale").hidden);
  await floor.screenshot({ path: join(shotDir, "floor-offline.png") });
  say({ step: "offline", banner: await floor.locator("#stale").innerText(),
        conn: await floor.locator("#conn-text").innerText() });
  clearTimeout(guard);
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(0);
} catch (err) {
  say({ step: "error", error: String(err && err.message ? err.message : err).slice(0, 2000) });
  if (browser) await browser.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}
