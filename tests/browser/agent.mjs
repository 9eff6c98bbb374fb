// One agent's page (/agent/<id>) in the system's headless Chromium.
// Usage: node agent.mjs URL
// Prints one JSON object a line at each checkpoint; tests/test_dashboard_views.py publishes
// cues for this agent, another agent and the desk after "loaded", and asserts on "cues";
// the hold key must then POST to this agent's hold route.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const guard = setTimeout(() => { say({ step: "error", error: "overall timeout" }); process.exit(3); }, 90000);
const profile = mkdtempSync(join(tmpdir(), "agent-chromium-"));
let browser;
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: 30000,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = browser.pages()[0] || await browser.newPage();
  const requests = [];
  const consoleErrors = [];
  page.on("request", (r) => requests.push(r.method() + " " + new URL(r.url()).pathname));
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.setDefaultTimeout(15000);

  await page.goto(url, { waitUntil: "load", timeout: 15000 });
  await page.waitForFunction(() => document.body.dataset.connected === "1");
  say({ step: "loaded", title: await page.title() });

  // Python publishes a cue for another agent, one for the desk, then this agent's.
  await page.waitForFunction(() => document.querySelectorAll("#cue-list li").length > 0);
  const cues = await page.$$eval("#cue-list li", (els) => els.map((e) => e.textContent));
  say({ step: "cues", cues });

  await page.click("#hold-key");
  await page.waitForFunction(() => document.getElementById("key-status").textContent === "Hold started");
  say({ step: "held", requests, consoleErrors });
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
