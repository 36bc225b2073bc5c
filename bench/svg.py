"""Two small hand-written SVG charts (no plotting library: the venv stays as it is)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 50
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def font(size: int = 12) -> str:
    return f'font-family="sans-serif" font-size="{size}"'


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[float, float]]  # (x, y)


@dataclass(frozen=True)
class Guide:
    """A horizontal reference line, e.g. a target."""

    label: str
    y: float


def _frame(title: str, body: list[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
            f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" {font(15)}>{escape(title)}</text>',
            *body,
            "</svg>\n",
        ]
    )


def _legend(names: list[str]) -> list[str]:
    out = []
    for i, name in enumerate(names):
        x = LEFT + 10 + i * 150
        out.append(f'<rect x="{x}" y="{TOP + 4}" width="12" height="12" fill="{COLORS[i]}"/>')
        out.append(f'<text x="{x + 18}" y="{TOP + 14}" {font()}>{escape(name)}</text>')
    return out


def _axes(x_label: str, y_label: str) -> list[str]:
    bottom = HEIGHT - BOTTOM
    return [
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="black"/>',
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 12}" text-anchor="middle" '
        f"{font()}>{escape(x_label)}</text>",
        f'<text transform="translate(16 {(TOP + bottom) / 2}) rotate(-90)" '
        f'text-anchor="middle" {font()}>{escape(y_label)}</text>',
    ]


def _fmt(value: float) -> str:
    return f"{value:g}" if value >= 1 else f"{value:.2g}"


def line_chart(
    title: str, x_label: str, y_label: str, series: list[Series], guides: list[Guide]
) -> str:
    """Lines over a linear x axis and a logarithmic y axis (latencies span decades)."""
    xs = [x for s in series for x, _ in s.points] or [1.0]
    ys = [y for s in series for _, y in s.points if y > 0] + [g.y for g in guides] or [1.0]
    x_max = max(xs) * 1.05
    lo = 10 ** math.floor(math.log10(min(ys)))
    hi = 10 ** math.ceil(math.log10(max(ys)))
    if hi <= lo:
        hi = lo * 10
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + x / x_max * plot_w

    def py(y: float) -> float:
        y = max(y, lo)
        return TOP + plot_h - (math.log10(y) - math.log10(lo)) / math.log10(hi / lo) * plot_h

    body = _axes(x_label, y_label)
    decade = lo
    while decade <= hi:
        y = py(decade)
        body.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        body.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {font()}>{_fmt(decade)}</text>'
        )
        decade *= 10
    for x in sorted(set(xs)):
        body.append(
            f'<text x="{px(x):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
            f"{font()}>{x:g}</text>"
        )
    for guide in guides:
        y = py(guide.y)
        body.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            'stroke="#d62728" stroke-dasharray="6 4"/>'
        )
        body.append(
            f'<text x="{WIDTH - RIGHT - 4}" y="{y - 5:.1f}" text-anchor="end" {font()} '
            f'fill="#d62728">{escape(guide.label)}</text>'
        )
    for i, s in enumerate(series):
        points = sorted(s.points)
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        body.append(
            f'<polyline points="{path}" fill="none" stroke="{COLORS[i]}" stroke-width="2"/>'
        )
        for x, y in points:
            body.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{COLORS[i]}"/>')
    body += _legend([s.name for s in series])
    return _frame(title, body)


def nice_step(span: float, ticks: int = 5) -> float:
    """A 1, 2 or 5 times a power of ten step that cuts `span` into about `ticks` parts."""
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def bar_chart(
    title: str, y_label: str, groups: list[str], series: list[Series], guides_per_group: list[float]
) -> str:
    """Grouped bars (series[i].points[g] = (g, value)); a dashed tick per group marks a limit."""
    values = [y for s in series for _, y in s.points] + guides_per_group or [1.0]
    step = nice_step(max(values) * 1.15 or 1.0)
    top = step * math.ceil(max(values) * 1.15 / step) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM - 20
    base = HEIGHT - BOTTOM
    group_w = plot_w / max(1, len(groups))
    bar_w = group_w * 0.7 / max(1, len(series))

    def py(y: float) -> float:
        return base - y / top * plot_h

    body = _axes("concurrent streams", y_label)
    for tick in range(round(top / step) + 1):
        value = tick * step
        y = py(value)
        body.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#eee"/>'
        )
        body.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {font()}>{value:.0f}</text>'
        )
    for g, label in enumerate(groups):
        x0 = LEFT + g * group_w + group_w * 0.15
        body.append(
            f'<text x="{LEFT + (g + 0.5) * group_w:.1f}" y="{base + 16}" text-anchor="middle" '
            f"{font()}>{escape(label)}</text>"
        )
        for i, s in enumerate(series):
            value = s.points[g][1]
            x = x0 + i * bar_w
            body.append(
                f'<rect x="{x:.1f}" y="{py(value):.1f}" width="{bar_w - 2:.1f}" '
                f'height="{base - py(value):.1f}" fill="{COLORS[i]}"/>'
            )
            body.append(
                f'<text x="{x + bar_w / 2 - 1:.1f}" y="{py(value) - 4:.1f}" text-anchor="middle" '
                f"{font(11)}>{value:.0f}</text>"
            )
        if g < len(guides_per_group):
            y = py(guides_per_group[g])
            body.append(
                f'<line x1="{x0 - 4:.1f}" y1="{y:.1f}" x2="{x0 + bar_w * len(series) + 2:.1f}" '
                f'y2="{y:.1f}" stroke="#d62728" stroke-width="2" stroke-dasharray="5 3"/>'
            )
    body += _legend([s.name for s in series] + ["1.5 × floor (target)"])
    # The legend swatch of the guide is a dashed line, not a bar.
    body[-2] = body[-2].replace(f'fill="{COLORS[len(series)]}"', 'fill="#d62728"')
    return _frame(title, body)
