// Drives the supervisor console in the system's headless Chromium (never a downloaded browser).
// Usage: node console.mjs BASE_URL TOKEN SHOT_DIR
// Prints one JSON object a line per checkpoint; tests/test_console_page.py asserts on them.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, token, shotDir] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const guard = setTimeout(() => { say({ step: "error", error: "overall timeout" }); process.exit(3); }, 90000);
const profile = mkdtempSync(join(tmpdir(), "console-chromium-"));
let browser;
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, timeout: 30000,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
  });
  const page = browser.pages()[0] || await browser.newPage();
  const external = [], errors = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) external.push(r.url()); });
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.setDefaultTimeout(15000);

  await page.goto(base + "/floor", { waitUntil: "load" });
  say({ step: "redirected", url: page.url(), form: await page.locator("#login").count() });
  await page.fill("#token", "wrong");
  await page.click("#login button");
  await page.waitForSelector("#login-error");
  say({ step: "refused", text: await page.locator("#login-error").innerText() });
  await page.fill("#token", token);
  await page.click("#login button");
  await page.waitForSelector("#floor-table");
  const rows = await page.locator("#floor-table tbody tr").allInnerTexts();
  const holdA = await page.locator(".hold").first().innerText();
  await page.waitForFunction((h) => document.querySelector(".hold").textContent !== h, holdA);
  const holdB = await page.locator(".hold").first().innerText();
  await page.screenshot({ path: join(shotDir, "floor.png"), fullPage: true });
  say({ step: "floor", url: page.url(), rows, holdA, holdB,
        totals: await page.locator("#totals").innerText() });
  await page.waitForFunction(() => document.body.dataset.refreshed, null, { timeout: 20000 });
  say({ step: "refreshed", rows: await page.locator("#floor-table tbody tr").count() });

  await page.click("nav a[href='/trends']");
  await page.waitForSelector("#charts svg");
  await page.selectOption("select[name=by]", "team");
  await page.click("#trend-form button");
  await page.waitForURL(/by=team/);
  await page.screenshot({ path: join(shotDir, "trends.png"), fullPage: true });
  say({ step: "trends", charts: await page.locator("#charts svg").count(),
        points: await page.locator("#charts circle").count(),
        table: await page.locator("#trend-table tbody tr").allInnerTexts() });
  say({ step: "done", external, errors });
} catch (e) {
  say({ step: "error", error: String(e) });
} finally {
  clearTimeout(guard);
  if (browser) await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
