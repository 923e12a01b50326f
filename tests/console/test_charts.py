"""Server-drawn SVG charts: one bar per positive value, gaps for missing values, text escaped."""

from __future__ import annotations

import re

from emberrtc.console.charts import HEIGHT, CategoryChart, Chart, Point


def test_bars_are_in_proportion_and_missing_values_are_gaps() -> None:
    chart = Chart("Users <online>", "", [Point("09:00", 2), Point("09:01", None), Point("09:02", 0), Point("09:03", 4)])
    svg = str(chart.svg())
    assert svg.startswith("<svg") and 'role="img"' in svg and 'aria-label="Users &lt;online&gt;"' in svg
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)"', svg)]
    assert len(heights) == 2 and abs(heights[1] - 2 * heights[0]) < 0.2  # 4 is twice 2; None and 0: no bar
    assert heights[1] < HEIGHT
    assert "<title>09:03: 4 </title>" in svg and ">09:00<" in svg and ">09:03<" in svg
    assert not chart.empty and Chart("t", "", [Point("a", None)]).empty


def test_labels_cannot_inject_markup() -> None:
    svg = str(Chart("t", "%", [Point("<script>x</script>", 1.5)]).svg())
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "1.50 %" in svg


def test_category_rows_are_in_proportion_with_their_labels_and_values() -> None:
    chart = CategoryChart("By cause", "users", [Point("Video freeze: <loss>", 3), Point("Slow join: x", 1)])
    svg = str(chart.svg())
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([0-9.]+)"', svg)]
    assert len(widths) == 2 and abs(widths[0] - 3 * widths[1]) < 0.2
    assert ">Video freeze: &lt;loss&gt;<" in svg and ">3<" in svg and ">1<" in svg
    heights = [int(h) for h in re.findall(r'viewBox="0 0 \d+ (\d+)"', svg)]
    one = str(CategoryChart("t", "", [Point("a", 1)]).svg())
    assert heights[0] == 2 * int(re.findall(r'viewBox="0 0 \d+ (\d+)"', one)[0])  # grows by rows
