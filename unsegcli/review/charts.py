"""Small self-contained SVG charts (no plotting library): grouped bars and a scatter, for `unseg bench`'s plots.

Pure functions from numbers to SVG text; every mark carries a ``<title>`` (its exact value, shown on hover) and a
``data-value`` attribute, so a chart can be read back and checked.
"""

from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 40, 72  # margins: axis labels left, group labels below
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")


def _svg(body: list[str], title: str) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">'
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
    """Grouped bars: one group per ``groups`` entry, one bar per series (None: no bar, e.g. no published
    number). Values must be >= 0."""
    values = [v for vs in series.values() for v in vs if v is not None]
    top = _nice_max(max(values, default=1.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    body = []
    for i in range(5):  # the value axis: 0, 1/4, ... of the top
        y = TOP + plot_h * (1 - i / 4)
        body.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{top * i / 4:g}{escape(unit)}</text>')
    slot = plot_w / max(len(groups), 1)
    width = slot * 0.8 / max(len(series), 1)
    for g, group in enumerate(groups):
        x0 = LEFT + g * slot + slot * 0.1
        for s, (name, vs) in enumerate(series.items()):
            v = vs[g]
            if v is None:
                continue
            h = plot_h * v / top
            body.append(
                f'<rect x="{x0 + s * width:.1f}" y="{TOP + plot_h - h:.1f}" width="{width * 0.9:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[s % len(COLOURS)]}" data-series="{escape(name)}" '
                f'data-group="{escape(group)}" data-value="{v!r}"><title>{escape(name)} on {escape(group)}: '
                f"{v:.4g}{escape(unit)}</title></rect>"
            )
        label_x = LEFT + g * slot + slot / 2
        body.append(
            f'<text x="{label_x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="end" '
            f'transform="rotate(-30 {label_x:.1f} {HEIGHT - BOTTOM + 14})">{escape(group)}</text>'
        )
    for s, name in enumerate(series):  # legend, top right
        y = TOP + 4 + 14 * s
        body.append(f'<rect x="{WIDTH - RIGHT - 130}" y="{y - 9}" width="10" height="10" fill="{COLOURS[s % 8]}"/>')
        body.append(f'<text x="{WIDTH - RIGHT - 116}" y="{y}">{escape(name)}</text>')
    return _svg(body, title)


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
