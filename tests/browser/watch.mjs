// Opens the dashboard in the system's headless Chromium and reports what a person would see,
// one JSON object a line: {ev: "ready"}, {ev: "cue", kind, t, at}, {ev: "flash", at},
// {ev: "hold", on, at}, {ev: "timer", text, at}, {ev: "leak", at}, {ev: "clicked", at}.
// Usage: node watch.mjs URL SECONDS CLICK_HOLD_AFTER_S SCREENSHOT
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, seconds, clickAfter, shot] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const profile = mkdtempSync(join(tmpdir(), "watch-chromium-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 800 },
});
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  await page.exposeFunction("report", (o) => out({ ...o, at: Date.now() / 1000 }));
  await page.goto(url, { waitUntil: "load" });
  await page.evaluate(() => {
    const seen = new Set();
    const vis = (el) => !!el && !el.hidden && getComputedStyle(el).display !== "none";
    let flash = false, leak = false, hold = "0", timer = "";
    const scan = () => {
      for (const li of document.querySelectorAll("#cue-list li")) {
        const key = li.dataset.kind + "@" + li.dataset.t;
        if (!seen.has(key)) { seen.add(key); window.report({ ev: "cue", kind: li.dataset.kind, t: Number(li.dataset.t) }); }
      }
      const f = vis(document.getElementById("flash-interruption"));
      if (f && !flash) window.report({ ev: "flash" });
      flash = f;
      const l = vis(document.getElementById("leak-alert"));
      if (l && !leak) window.report({ ev: "leak" });
      leak = l;
      const h = document.getElementById("hold-panel").dataset.on || "0";
      if (h !== hold) window.report({ ev: "hold", on: h === "1" });
      hold = h;
      const tt = document.getElementById("hold-timer").textContent;
      if (h === "1" && tt !== timer) window.report({ ev: "timer", text: tt });
      timer = tt;
    };
    new MutationObserver(scan).observe(document.body, { childList: true, subtree: true, attributes: true, characterData: true });
    setInterval(scan, 50);
  });
  out({ ev: "ready", at: Date.now() / 1000 });
  await page.waitForTimeout(Number(clickAfter) * 1000);
  await page.click("#hold-key");
  out({ ev: "clicked", at: Date.now() / 1000 });
  await page.waitForTimeout(Math.max(0, Number(seconds) - Number(clickAfter)) * 1000).catch(() => {});
  await page.screenshot({ path: shot }).catch(() => {});
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
