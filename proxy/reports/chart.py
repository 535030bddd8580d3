"""Spend per period stacked by team, drawn on the server as an SVG (no script, no third-party assets).

Heights are pixels; the amounts in labels and tooltips are exact (integers of picodollars formatted as USD).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from proxy.money import PICO_PER_USD, format_usd

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
WIDTH, HEIGHT = 960, 320
LEFT, RIGHT, TOP, BOTTOM = 90, 16, 16, 56
TICKS = 4


def team_color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nice_step(top_pico: int, ticks: int = TICKS) -> int:
    """The smallest 1-2-5 x 10^n picodollar step such that `ticks` steps reach `top_pico` (at least 1 pUSD)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor * ticks >= top_pico:
                return step * factor
        step *= 10


def _axis_label(pico: int) -> str:
    text = format_usd(pico)
    return f"${text[:-3] if text.endswith('.00') and pico >= PICO_PER_USD else text}"


def spend_chart(buckets: Sequence[str], teams: Sequence[str], spend: Mapping[tuple[str, str], int], *,
                caption: str) -> str:
    """An SVG bar per bucket, one stacked segment per team; `spend[(bucket, team)]` is in picodollars."""
    totals = [sum(spend.get((b, t), 0) for t in teams) for b in buckets]
    step = nice_step(max(totals, default=0) or 1)
    top = step * TICKS
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(buckets), 1)
    bar = max(slot * 0.8, 1.0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="spend-chart" role="img" width="{WIDTH}" '
             f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
             f"<title>{escape(caption)}</title>"]
    for i in range(TICKS + 1):
        y = TOP + plot_h - plot_h * i / TICKS
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(_axis_label(step * i))}</text>')
    label_every = max(1, len(buckets) // 12)
    for b, bucket in enumerate(buckets):
        x = LEFT + b * slot + (slot - bar) / 2
        base = 0
        for t, team in enumerate(teams):
            amount = spend.get((bucket, team), 0)
            if amount <= 0:
                continue
            y0 = TOP + plot_h - plot_h * base / top
            base += amount
            y1 = TOP + plot_h - plot_h * base / top
            parts.append(f'<rect class="bar" data-bucket="{escape(bucket)}" data-team="{escape(team)}" '
                         f'x="{x:.2f}" y="{y1:.2f}" width="{bar:.2f}" height="{max(y0 - y1, 0.5):.2f}" '
                         f'fill="{team_color(t)}"><title>{escape(team)}, {escape(bucket)}: '
                         f'${format_usd(amount)}</title></rect>')
        if b % label_every == 0:
            lx = LEFT + b * slot + slot / 2
            parts.append(f'<text x="{lx:.1f}" y="{TOP + plot_h + 14}" text-anchor="end" '
                         f'transform="rotate(-40 {lx:.1f} {TOP + plot_h + 14})">{escape(bucket)}</text>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#333"/>')
    parts.append("</svg>")
    return "".join(parts)


def legend(teams: Sequence[str]) -> str:
    """The team colours, as HTML."""
    items = "".join(f'<li><span class="swatch" style="background:{team_color(i)}"></span>{escape(team)}</li>'
                    for i, team in enumerate(teams))
    return f'<ul class="legend">{items}</ul>'
