"""Small hand-written SVG charts for the scorecards (no plotting library is installed; SVG needs none).

Text is escaped, Chinese labels use a CJK font stack, and the charts are plain SVG 1.1 that any browser
shows and any page can embed.
"""

from __future__ import annotations

from html import escape

FONT = "'Noto Sans CJK SC','Source Han Sans SC','Microsoft YaHei','PingFang SC',sans-serif"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    """A complete SVG document."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'font-family="{FONT}" font-size="12">\n<title>{escape(title)}</title>\n'
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>\n'
            f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>\n'
            + "\n".join(body) + "\n</svg>\n")


def bar_chart(items: list[tuple[str, float]], title: str, maximum: float = 100.0, unit: str = "分") -> str:
    """Horizontal bars, one per (label, value), value labels at the bar ends."""
    row, left, right, top = 24, 220, 70, 40
    width = 760
    height = top + row * max(len(items), 1) + 30
    span = width - left - right
    body = [f'<line x1="{left}" y1="{top - 4}" x2="{left}" y2="{height - 26}" stroke="#999"/>']
    for tick in range(0, 101, 20):
        x = left + span * tick / 100
        body.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 26}" stroke="#eee"/>')
        body.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle" fill="#666">{maximum * tick / 100:g}</text>')
    for index, (label, value) in enumerate(items):
        y = top + index * row
        length = span * max(min(value / maximum, 1.0), 0.0) if maximum else 0
        colour = "#2ca02c" if value >= 0.99 * maximum else "#ff7f0e" if value >= 0.95 * maximum else "#d62728"
        body.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        body.append(f'<rect x="{left}" y="{y + 4}" width="{length:.1f}" height="{row - 8}" fill="{colour}"/>')
        body.append(f'<text x="{left + length + 6:.1f}" y="{y + 15}">{value:.2f}{escape(unit)}</text>')
    return _svg(width, height, body, title)


def line_chart(series: dict[str, list[tuple[str, float]]], title: str, low: float | None = None, high: float = 100.0) -> str:
    """One line per series over shared x labels (dates), with a legend."""
    width, height, left, right, top, bottom = 760, 380, 60, 170, 40, 50
    labels = sorted({x for points in series.values() for x, _ in points})
    values = [v for points in series.values() for _, v in points]
    if low is None:
        low = min([high - 5.0, *values]) if values else 0.0
        low = max(0.0, float(int(low) - 1))
    span_x, span_y = width - left - right, height - top - bottom
    position = {x: left + (span_x * i / max(len(labels) - 1, 1)) for i, x in enumerate(labels)}

    def y_of(value: float) -> float:
        """Screen y of a value."""
        return top + span_y * (1 - (value - low) / (high - low or 1))

    body = []
    for step in range(6):
        value = low + (high - low) * step / 5
        y = y_of(value)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eee"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#666">{value:.1f}</text>')
    for x in labels:
        body.append(f'<text x="{position[x]:.1f}" y="{height - bottom + 18}" text-anchor="middle" fill="#666">{escape(x)}</text>')
    for index, (name, points) in enumerate(sorted(series.items())):
        colour = PALETTE[index % len(PALETTE)]
        path = " ".join(f"{position[x]:.1f},{y_of(v):.1f}" for x, v in sorted(points))
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, v in points:
            body.append(f'<circle cx="{position[x]:.1f}" cy="{y_of(v):.1f}" r="3" fill="{colour}"><title>{escape(name)} {escape(x)}: {v:.2f}</title></circle>')
        legend_y = top + 16 * index
        body.append(f'<rect x="{width - right + 12}" y="{legend_y}" width="12" height="3" fill="{colour}"/>')
        body.append(f'<text x="{width - right + 30}" y="{legend_y + 5}">{escape(name)}</text>')
    return _svg(width, height, body, title)
