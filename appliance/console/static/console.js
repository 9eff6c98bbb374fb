// The floor: refresh the table every 5 s from /floor/fragment (same origin, HTML the server
// escaped), and tick the call and hold timers every second in between.  Nothing else.
"use strict";
(function () {
  const floor = document.getElementById("floor");
  if (!floor) return;
  const clock = (s) => {
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = String(m).padStart(h ? 2 : 1, "0"), rr = String(r).padStart(2, "0");
    return h ? `${h}:${mm}:${rr}` : `${mm}:${rr}`;
  };
  let loaded = Date.now();
  const tick = () => {
    const dt = (Date.now() - loaded) / 1000;
    for (const el of floor.querySelectorAll("[data-since-s]")) {
      const s = Number(el.dataset.sinceS) + dt;
      el.textContent = (el.classList.contains("hold") ? "hold " : "") + clock(s);
    }
  };
  const refresh = async () => {
    try {
      const r = await fetch(floor.dataset.refresh, { credentials: "same-origin" });
      if (r.status === 401) { location.href = "/login"; return; }
      if (r.ok) { floor.innerHTML = await r.text(); loaded = Date.now(); document.body.dataset.refreshed = String(loaded); }
    } catch (e) { /* the console restarts: try again at the next turn */ }
  };
  setInterval(tick, 1000);
  setInterval(refresh, 5000);
})();
