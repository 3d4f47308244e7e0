"""Plots: matplotlib SVG that inlines in HTML, with the lines and labels a reader needs."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pytest_gpucluster.report import plots

POINTS = [(0, 0.0), (8, 0.01), (1 << 20, 40.0), (1 << 26, 250.0), (1 << 30, 380.0)]


def test_busbw_svg_is_inline_svg_with_floor_and_ceiling():
    svg = plots.busbw_svg(POINTS, floor=300, ceiling=400)
    assert svg.startswith("<svg") and "<?xml" not in svg and "DOCTYPE" not in svg
    ET.fromstring(svg)  # well-formed
    assert "floor 300 GB/s" in svg and "ceiling 400 GB/s" in svg  # text kept as text (svg.fonttype none)
    assert "1G" in svg and "bus bandwidth (GB/s)" in svg


def test_busbw_svg_several_series_and_determinism():
    series = {"out-of-place": POINTS, "in-place": [(s, b * 0.98) for s, b in POINTS]}
    svg = plots.busbw_svg(series)
    assert "out-of-place" in svg and "in-place" in svg and "floor" not in svg
    assert svg == plots.busbw_svg(series)  # stable ids: reports diff cleanly night to night


def test_busbw_svg_rejects_no_points():
    with pytest.raises(ValueError, match="no \\(size > 0, busbw\\) points"):
        plots.busbw_svg([(0, 0.0)])


def test_timeline_svg_has_each_phase_and_the_limit():
    phases = [("pod pending", 0, 2), ("nodeclaim launched", 2, 48.5), ("node registered", 48.5, 95), ("pod running", 95, 130)]
    svg = plots.timeline_svg(phases, limit=300)
    ET.fromstring(svg)
    for name, start, end in phases:
        assert name in svg
        assert f"{end - start:.1f}s" in svg
    assert "limit 300s" in svg


def test_timeline_svg_rejects_backwards_phase():
    with pytest.raises(ValueError, match="end before they start: \\['launched'\\]"):
        plots.timeline_svg([("launched", 10, 5)])
