// Drives the dashboard in the system's headless Chromium (never a downloaded browser).
// Usage: node check.mjs URL SCREENSHOT_DIR
// Prints one JSON object a line at each checkpoint; tests/test_dashboard.py reacts to them
// (publishes the next events) and asserts on the timings and values reported here.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, shotDir] = process.argv.slice(2);
const STEP_MS = 8000;
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const guard = setTimeout(() => { say({ step: "error", error: "overall timeout" }); process.exit(3); }, 90000);
const profile = mkdtempSync(join(tmpdir(), "dash-chromium-"));
let browser;  // a persistent context on a fresh profile directory (--user-data-dir)
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: 30000,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 800 },
  });
  const page = browser.pages()[0] || await browser.newPage();
  const external = [];
  const consoleErrors = [];
  page.on("request", (r) => { if (!r.url().startsWith(new URL(url).origin) && !r.url().startsWith("data:")) external.push(r.url()); });
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.setDefaultTimeout(STEP_MS);

  await page.goto(url, { waitUntil: "load", timeout: 15000 });
  await page.waitForSelector("#hold-key");
  await page.waitForFunction(() => document.body.dataset.connected === "1");
  say({ step: "loaded" });

  // Python publishes states; wait until one is on screen.
  await page.waitForFunction(() => document.getElementById("fillers").textContent === "3");
  say({ step: "state_seen" });

  // Python publishes an interruption cue right after reading "state_seen".
  await page.locator("#flash-interruption").waitFor({ state: "visible" });
  const flashAt = Date.now();
  say({ step: "flash", at: flashAt / 1000, text: await page.locator("#flash-interruption").innerText() });
  await page.screenshot({ path: join(shotDir, "flash.png") });
  await page.locator("#flash-interruption").waitFor({ state: "hidden", timeout: 6000 });
  say({ step: "flash_hidden", after_s: (Date.now() - flashAt) / 1000 });

  // Python now puts the call on hold and keeps publishing hold states.
  await page.waitForFunction(() => document.getElementById("hold-panel").dataset.on === "1");
  const timer = [];
  for (let i = 0; i < 4; i++) {
    timer.push(await page.locator("#hold-timer").innerText());
    await page.waitForTimeout(700);
  }
  say({ step: "timer", values: timer, type: await page.locator("#hold-type").innerText() });

  // Python publishes a hold_leak cue.
  await page.locator("#leak-alert").waitFor({ state: "visible" });
  say({ step: "leak", text: await page.locator("#leak-alert").innerText() });
  await page.screenshot({ path: join(shotDir, "dashboard.png") });
  say({ step: "screenshot", path: join(shotDir, "dashboard.png") });

  // Python ends the hold; press the hold key in the page (must POST start).
  await page.waitForFunction(() => document.getElementById("hold-panel").dataset.on === "0");
  await page.locator("#leak-alert").waitFor({ state: "hidden" });
  await page.click("#hold-key");
  await page.waitForFunction(() => document.getElementById("key-status").textContent === "Hold started");
  say({ step: "hold_clicked", pressed: await page.locator("#hold-key").getAttribute("aria-pressed") });

  // Python reports no audio.
  await page.locator("#no-audio").waitFor({ state: "visible" });
  say({ step: "no_audio", text: await page.locator("#no-audio").innerText() });

  // Python publishes the call summary.
  await page.locator("#summary").waitFor({ state: "visible" });
  await page.screenshot({ path: join(shotDir, "summary.png") });
  say({ step: "summary", text: await page.locator("#summary").innerText() });

  say({ step: "done", cues: await page.locator("#cue-list li").count(), external, consoleErrors });
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
