"""Charts drawn by the server as inline SVG: no chart library, no script, nothing fetched by the browser.

A chart is a series of (label, value) points drawn as bars: a time series (:class:`Chart`, columns with the
largest value and the first and last labels written on it) or categories (:class:`CategoryChart`, one
labelled row per category with its value after the bar, for labels too long to write under a column). A
text equivalent (a table, for screen readers and for copying numbers) is rendered next to it by the
template. Colours come from presentation attributes, not ``style``, so the console's
Content-Security-Policy (``style-src 'self'``) allows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 8, 16, 36
_FONT = 20  # in the 640-wide view box: about 10 px when the chart is 320 px wide (a phone)


@dataclass(frozen=True)
class Point:
    label: str
    value: float | None  # None: no value for this point (not zero); drawn as a gap


@dataclass(frozen=True)
class Chart:
    """One chart: a title, a unit for its values, its points."""

    title: str
    unit: str
    points: list[Point]

    @property
    def empty(self) -> bool:
        return all(p.value is None for p in self.points)

    def svg(self) -> Markup:
        return bar_chart_svg(self)


@dataclass(frozen=True)
class CategoryChart(Chart):
    """Values by category (abnormal events by cause): a row per point, the label above its bar."""

    def svg(self) -> Markup:
        return row_chart_svg(self)


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2f}"


def bar_chart_svg(chart: Chart) -> Markup:
    """The chart as an ``<svg>`` element (``role="img"`` with the title as its name)."""
    values = [p.value for p in chart.points if p.value is not None]
    top = max(values) if values else 0.0
    scale_top = top if top > 0 else 1.0
    n = max(1, len(chart.points))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    step = plot_w / n
    bar_w = max(1.0, step * 0.8)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(chart.title)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{WIDTH - _RIGHT}" y2="{_TOP + plot_h}" stroke="#888"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}" stroke="#888"/>',
        f'<text x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end" font-size="{_FONT}" fill="currentColor">0</text>',
    ]
    if top > 0:
        parts.append(
            f'<text x="{_LEFT - 6}" y="{_TOP + _FONT * 0.7:.0f}" text-anchor="end" font-size="{_FONT}" '
            f'fill="currentColor">{escape(_number(top))}</text>'
        )
    for i, p in enumerate(chart.points):
        if p.value is None or p.value <= 0:
            continue  # nothing to draw (the numbers table lists every point)
        h = plot_h * p.value / scale_top
        x = _LEFT + i * step + (step - bar_w) / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{_TOP + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="#d9480f">'
            f"<title>{escape(p.label)}: {escape(_number(p.value))} {escape(chart.unit)}</title></rect>"
        )
    if chart.points:
        y = HEIGHT - 8
        parts.append(
            f'<text x="{_LEFT}" y="{y}" font-size="{_FONT}" fill="currentColor">{escape(chart.points[0].label)}</text>'
        )
        parts.append(
            f'<text x="{WIDTH - _RIGHT}" y="{y}" text-anchor="end" font-size="{_FONT}" fill="currentColor">'
            f"{escape(chart.points[-1].label)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


_ROW_LABEL, _ROW_BAR, _ROW_GAP = 24, 22, 10  # heights in the 640-wide view box


def row_chart_svg(chart: Chart) -> Markup:
    """Categories as horizontal bars, one row each: the label on its own line (a cause's words are long),
    the bar below it, the value after the bar. The view box grows with the number of rows."""
    values = [p.value for p in chart.points if p.value is not None]
    top = max(values) if values else 0.0
    scale_top = top if top > 0 else 1.0
    row = _ROW_LABEL + _ROW_BAR + _ROW_GAP
    height = max(1, len(chart.points)) * row
    bar_room = WIDTH - _RIGHT - 96  # room left for the value written after the longest bar
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(chart.title)}" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, p in enumerate(chart.points):
        y = i * row
        parts.append(
            f'<text x="0" y="{y + _ROW_LABEL - 6}" font-size="{_FONT}" fill="currentColor">{escape(p.label)}</text>'
        )
        value = p.value or 0.0
        w = bar_room * value / scale_top if value > 0 else 0.0
        if w > 0:
            parts.append(
                f'<rect x="0" y="{y + _ROW_LABEL}" width="{w:.1f}" height="{_ROW_BAR}" fill="#d9480f">'
                f"<title>{escape(p.label)}: {escape(_number(value))} {escape(chart.unit)}</title></rect>"
            )
        text = "-" if p.value is None else _number(value)
        parts.append(
            f'<text x="{w + 6:.1f}" y="{y + _ROW_LABEL + _ROW_BAR - 4}" font-size="{_FONT}" fill="currentColor">'
            f"{escape(text)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
