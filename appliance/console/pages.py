"""The console's pages as HTML, rendered on the server (every value escaped): the login,
the floor now, the trends with their SVG charts.  The only script, ``static/console.js``,
refreshes the floor and ticks its timers; the pages work without it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from appliance.console.svg import line_chart
from appliance.console.trends import METRICS, TrendPoint, series

NOTICE = ("Coaching, not surveillance: counts and trends of etiquette cues. No audio and no "
          "words are ever stored or shown.")


def _page(title: str, body: str, *, nav: bool = True) -> str:
    links = ('<nav><a href="/floor">Floor</a> <a href="/trends">Trends</a> '
             '<a href="/export.csv">Export CSV</a> <a href="/export.jsonl">Export JSONL</a>'
             '<form method="post" action="/logout" class="logout">'
             '<button type="submit">Log out</button></form></nav>') if nav else ""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)} · supervisor console</title>"
            "<link rel=\"stylesheet\" href=\"/static/console.css\">"
            "<script src=\"/static/console.js\" defer></script></head><body>"
            f"<header><h1>{escape(title)}</h1>{links}</header><main>{body}</main>"
            f"<footer>{escape(NOTICE)}</footer></body></html>")


def login_page(error: str = "", next_path: str = "/floor") -> str:
    err = f'<p class="error" id="login-error">{escape(error)}</p>' if error else ""
    return _page("Log in", f'{err}<form method="post" action="/login" id="login">'
                 f'<input type="hidden" name="next" value="{escape(next_path)}">'
                 '<label>Token <input type="password" name="token" id="token" '
                 'autocomplete="current-password" required></label> '
                 '<button type="submit">Log in</button></form>', nav=False)


def _clock(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60}:{s % 60:02d}"


def floor_fragment(view: Mapping[str, Any]) -> str:
    """The floor's table (what the script swaps in on refresh)."""
    t = view["totals"]
    rows = []
    for b in view["boxes"]:
        state = "online" if b["online"] else b["state"]
        health = ("healthy" if b["healthy"] else "unhealthy" if b["healthy"] is False
                  else "unknown")
        problems = ", ".join(b["problems"])
        calls = "".join(
            f'<div class="call" data-call="{escape(c["call_id"])}">'
            f'<span class="agent">{escape(c["agent_id"] or "?")}</span> '
            f'<span class="dur" data-since-s="{c["duration_s"] or 0:.0f}">'
            f'{_clock(c["duration_s"])}</span>'
            + (f' <span class="hold" data-since-s="{c["hold_s"]:.0f}">hold '
               f'{_clock(c["hold_s"])}</span>' if c["on_hold"] else "")
            + f' <span class="cue">{escape(c["last_cue"] or "")}</span></div>'
            for c in b["calls"]) or '<span class="idle">no call</span>'
        silent = (f'<span class="silent">silent {_clock(b["quiet_s"])}</span>'
                  if b["silent"] else "")
        rows.append(
            f'<tr class="box {escape(state)}{" is-silent" if b["silent"] else ""}" '
            f'data-box="{escape(b["site"])}/{escape(b["box"])}">'
            f'<td>{escape(b["site"])}</td><td>{escape(b["box"])}</td>'
            f'<td class="state">{escape(state)} {silent}</td>'
            f'<td class="health {health}" title="{escape(problems)}">{health}'
            f'{" (" + escape(problems) + ")" if problems else ""}</td><td>{calls}</td></tr>')
    return (f'<p class="totals" id="totals" data-boxes="{t["boxes"]}" data-online="{t["online"]}"'
            f' data-calls="{t["calls"]}">{t["online"]} of {t["boxes"]} boxes online · '
            f'{t["calls"]} calls in progress · {t["silent"]} silent · {t["unhealthy"]} unhealthy'
            '</p><table id="floor-table"><thead><tr><th>Site</th><th>Box</th><th>State</th>'
            f'<th>Health</th><th>Call in progress</th></tr></thead><tbody>{"".join(rows)}'
            '</tbody></table>')


def floor_page(view: Mapping[str, Any]) -> str:
    return _page("Floor now", f'<div id="floor" data-refresh="/floor/fragment">'
                 f'{floor_fragment(view)}</div>')


def _select(name: str, value: str, options: Sequence[tuple[str, str]]) -> str:
    opts = "".join(f'<option value="{escape(v)}"{" selected" if v == value else ""}>'
                   f'{escape(label)}</option>' for v, label in options)
    return f'<label>{escape(name)} <select name="{escape(name)}">{opts}</select></label>'


def trends_page(points: Sequence[TrendPoint], *, by: str, period: str, days: int) -> str:
    form = ('<form method="get" action="/trends" id="trend-form">'
            + _select("by", by, (("agent", "per agent"), ("team", "per team")))
            + _select("period", period, (("day", "by day"), ("week", "by week")))
            + f'<label>days <input type="number" name="days" min="1" max="3650" '
              f'value="{days}"></label> <button type="submit">Show</button></form>')
    charts = "".join(f'<figure class="trend" data-metric="{m}">'
                     f'{line_chart(series(points, m), title=title, unit=unit)}</figure>'
                     for m, title, unit in METRICS)
    head = "".join(f"<th>{escape(t)}</th>" for _, t, _ in METRICS)
    body = "".join(
        f"<tr><td>{escape(p.group)}</td><td>{escape(p.period)}</td><td>{p.calls}</td>"
        + "".join(f"<td>{'' if getattr(p, m) is None else getattr(p, m)}</td>"
                  for m, _, _ in METRICS) + "</tr>" for p in points)
    q = urlencode({"by": by, "period": period, "days": days})
    return _page("Trends", form + f'<div class="charts" id="charts">{charts}</div>'
                 f'<p><a href="/api/trends?{escape(q)}">these figures as JSON</a></p>'
                 f'<table id="trend-table"><thead><tr><th>{"Agent" if by == "agent" else "Team"}'
                 f'</th><th>Period</th><th>Calls</th>{head}</tr></thead><tbody>{body}</tbody>'
                 '</table>')
