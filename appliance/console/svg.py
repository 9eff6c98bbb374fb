"""Line charts as server-side SVG: the trend pages need no chart library and load nothing
from anywhere (the page's Content-Security-Policy allows only its own origin).  Every text
is escaped; a point's exact value is its ``<title>`` (a browser shows it on hover)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
MAX_SERIES = 10
"""Lines drawn at most (the groups with the most points first); the table has the rest."""


def nice_max(v: float) -> float:
    """A round upper bound for the y axis (1, 2, 2.5, 5 times a power of ten)."""
    if v <= 0 or not math.isfinite(v):
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if v <= m * exp:
            return m * exp
    return 10.0 * exp


def _fmt(v: float) -> str:
    """A tick label without false precision or rounding: 0.25 stays 0.25, 12.5 stays 12.5."""
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def line_chart(series: Mapping[str, Sequence[tuple[str, float | None]]], *, title: str,
               unit: str = "", width: int = 560, height: int = 220) -> str:
    """An ``<svg>`` element: one line per series over the union of their periods (x, in
    text order), y from 0.  Gaps (None) break a line."""
    groups = sorted(series, key=lambda g: (-sum(v is not None for _, v in series[g]), g))
    groups = groups[:MAX_SERIES]
    legend_rows = max(1, math.ceil(len(groups) / 4))
    height += 16 * (legend_rows - 1)
    left, right, top, bottom = 44, 12, 28, 28 + 16 * legend_rows
    periods = sorted({p for g in groups for p, _ in series[g]})
    values = [v for g in groups for _, v in series[g] if v is not None]
    top_v = nice_max(max(values, default=0.0))
    pw, ph = width - left - right, height - top - bottom
    label = f"{title} ({unit})" if unit else title

    def x(i: int) -> float:
        return left + (pw / 2 if len(periods) == 1 else pw * i / (len(periods) - 1))

    def y(v: float) -> float:
        return top + ph * (1.0 - v / top_v)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="{escape(label)}">',
             f'<text x="{left}" y="16" class="title">{escape(label)}</text>']
    for k in range(5):
        tick = top_v * k / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" '
                     f'y2="{y(tick):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 4}" y="{y(tick) + 4:.1f}" class="tick" '
                     f'text-anchor="end">{_fmt(tick)}</text>')
    step = max(1, math.ceil(len(periods) / 8))
    for i, p in enumerate(periods):
        if i % step == 0 or i == len(periods) - 1:
            parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" class="tick" '
                         f'text-anchor="middle">{escape(p[5:] if len(p) == 10 else p)}</text>')
    if not values:
        parts.append(f'<text x="{width / 2:.0f}" y="{top + ph / 2:.0f}" class="empty" '
                     'text-anchor="middle">no calls in this period</text>')
    index = {p: i for i, p in enumerate(periods)}
    for n, g in enumerate(groups):
        color = PALETTE[n % len(PALETTE)]
        runs: list[list[tuple[float, float, str, float]]] = [[]]
        for p, v in sorted(series[g]):
            if v is None:
                runs.append([])
                continue
            runs[-1].append((x(index[p]), y(v), p, v))
        for run in runs:
            if len(run) > 1:
                pts = " ".join(f"{a:.1f},{b:.1f}" for a, b, _, _ in run)
                parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" '
                             'stroke-width="2"/>')
            for a, b, p, v in run:
                parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}">'
                             f'<title>{escape(g)} {escape(p)}: {_fmt(v)}{escape(unit)}'
                             '</title></circle>')
        lx = left + (n % 4) * (pw / 4)
        ly = height - bottom + 34 + 16 * (n // 4)
        parts.append(f'<rect x="{lx:.0f}" y="{ly - 8:.0f}" width="10" height="10" '
                     f'fill="{color}"/><text x="{lx + 14:.0f}" y="{ly + 1:.0f}" '
                     f'class="legend">{escape(g[:24])}</text>')
    parts.append("</svg>")
    return "".join(parts)
