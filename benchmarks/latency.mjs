// Watches the dashboard's cue list in the system's headless Chromium and prints, for every
// cue that appears in the DOM, {kind, t, dom_s}: dom_s is the wall-clock time (seconds) at
// which the element was in the DOM.  Used by benchmarks/bench_latency.py.
// Usage: node latency.mjs URL SECONDS
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";

// playwright-core is installed (pinned) in tests/browser by scripts/setup.sh
const require = createRequire(new URL("../tests/browser/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [url, seconds] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "lat-chromium-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  await page.exposeFunction("report", (o) => process.stdout.write(JSON.stringify(o) + "\n"));
  await page.goto(url, { waitUntil: "load" });
  await page.evaluate(() => {
    const seen = new Set();
    const scan = () => {
      for (const li of document.querySelectorAll("#cue-list li")) {
        const key = li.dataset.kind + "@" + li.dataset.t;
        if (!seen.has(key)) {
          seen.add(key);
          window.report({ kind: li.dataset.kind, t: Number(li.dataset.t), dom_s: Date.now() / 1000 });
        }
      }
    };
    new MutationObserver(scan).observe(document.getElementById("cue-list"), { childList: true, subtree: true });
    scan();
  });
  process.stdout.write(JSON.stringify({ ready: true }) + "\n");
  await page.waitForTimeout(Number(seconds) * 1000).catch(() => {});
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
