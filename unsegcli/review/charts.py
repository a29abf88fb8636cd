"""Small self-contained SVG charts (no plotting library): grouped bars and a scatter, for `unseg bench`'s plots.

Pure functions from numbers to SVG text; every mark carries a ``<title>`` (its exact value, shown on hover) and a
``data-value`` attribute, so a chart can be read back and checked.
"""

from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 40, 72  # margins: axis labels left, axis title below
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")


def _svg(body: list[str], title: str, height: float = HEIGHT) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="sans-serif" font-size="11">'
    )
    caption = f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>'
    return "\n".join([head, '<rect width="100%" height="100%" fill="white"/>', caption, *body, "</svg>\n"])


def _nice_max(v: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``v`` (the axis top)."""
    if v <= 0:
        return 1.0
    p = 10 ** math.floor(math.log10(v))
    return next(m * p for m in (1, 2, 5, 10) if m * p >= v)


def bars(title: str, groups: list[str], series: dict[str, list[float | None]], unit: str = "") -> str:
    """Grouped horizontal bars: one row per ``groups`` entry (its label on the left, however long), one bar per
    series (None: no bar, e.g. no published number). Values must be >= 0."""
    values = [v for vs in series.values() for v in vs if v is not None]
    top = _nice_max(max(values, default=1.0))
    left = max(LEFT, 12 + 6.5 * max((len(g) for g in groups), default=0))  # ~6.5 px per character at 11 px
    bar = 14
    row = bar * len(series) + 10
    plot_h = row * max(len(groups), 1)
    plot_w = WIDTH - left - RIGHT - 110  # the legend on the right
    height = TOP + plot_h + 36
    body = []
    for i in range(5):  # the value axis: 0, 1/4, ... of the top
        x = left + plot_w * i / 4
        body.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" stroke="#ddd"/>')
        body.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 14}" text-anchor="middle">{top * i / 4:g}</text>')
    body.append(f'<text x="{left + plot_w / 2:.1f}" y="{TOP + plot_h + 30}" text-anchor="middle">{escape(unit)}</text>')
    for g, group in enumerate(groups):
        y0 = TOP + g * row + 5
        body.append(f'<text x="{left - 6:.1f}" y="{y0 + row / 2:.1f}" text-anchor="end">{escape(group)}</text>')
        for s, (name, vs) in enumerate(series.items()):
            v = vs[g]
            if v is None:
                continue
            w = plot_w * v / top
            body.append(
                f'<rect x="{left:.1f}" y="{y0 + s * bar:.1f}" width="{w:.1f}" height="{bar - 2}" '
                f'fill="{COLOURS[s % len(COLOURS)]}" data-series="{escape(name)}" data-group="{escape(group)}" '
                f'data-value="{v!r}"><title>{escape(name)} on {escape(group)}: {v:.4g} {escape(unit)}</title></rect>'
            )
    for s, name in enumerate(series):  # legend, top right
        y = TOP + 10 + 14 * s
        x = WIDTH - RIGHT - 100
        body.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{COLOURS[s % len(COLOURS)]}"/>')
        body.append(f'<text x="{x + 14}" y="{y}">{escape(name)}</text>')
    return _svg(body, title, height)


def scatter(title: str, points: list[tuple[str, float, float]], x_label: str, y_label: str) -> str:
    """Labelled points (label, x, y), x on a log scale (seconds per image span orders of magnitude)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    xs = [math.log10(x) for _, x, _ in points if x > 0]
    lo = math.floor(min(xs, default=0.0))
    hi = max(math.ceil(max(xs, default=1.0)), lo + 1)  # whole decades, at least one
    top = _nice_max(max((y for _, _, y in points), default=1.0))
    body = [
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#999"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#999"/>',
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 24}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">{escape(y_label)}</text>',
    ]
    for e in range(lo, hi + 1):  # decades
        x = LEFT + plot_w * (e - lo) / (hi - lo)
        body.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 14}" text-anchor="middle">{10.0**e:g}</text>')
    for i in range(5):
        y = TOP + plot_h * (1 - i / 4)
        body.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{top * i / 4:g}</text>')
    for n, (label, xv, yv) in enumerate(points):
        if xv <= 0:
            continue
        x = LEFT + plot_w * (math.log10(xv) - lo) / (hi - lo)
        y = TOP + plot_h * (1 - yv / top)
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{COLOURS[n % len(COLOURS)]}" data-label="{escape(label)}" '
            f'data-x="{xv!r}" data-y="{yv!r}"><title>{escape(label)}: {xv:.3g} s, {yv:.4g}</title></circle>'
        )
        body.append(f'<text x="{x + 6:.1f}" y="{y - 6:.1f}">{escape(label)}</text>')
    return _svg(body, title)
