"""Report plots rendered by matplotlib as inline SVG: NCCL bus bandwidth curve, Karpenter phase timeline."""
from __future__ import annotations

import io
import re
from typing import Iterable, Mapping, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # no display on CI machines or in the in-cluster job

from matplotlib.figure import Figure  # noqa: E402  (after the backend is chosen)

_PROLOG = re.compile(r"^.*?(?=<svg)", re.DOTALL)

Point = tuple[float, float]


def _to_svg(fig: Figure) -> str:
    """SVG markup ready to inline in HTML (no XML prolog/doctype; text kept as text)."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pytest-gpucluster"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return _PROLOG.sub("", buf.getvalue(), count=1)


def _size_label(nbytes: float, _pos: object = None) -> str:
    for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if nbytes >= factor:
            return f"{nbytes / factor:g}{unit}"
    return f"{nbytes:g}B"


def busbw_svg(series: Mapping[str, Sequence[Point]] | Sequence[Point], *,
              floor: float | None = None, ceiling: float | None = None,
              title: str = "NCCL bus bandwidth vs message size") -> str:
    """Bus bandwidth (GB/s) against message size (bytes, log2 axis) with floor/ceiling lines.

    `series` is either a list of (size_bytes, busbw_gbps) points or a mapping of label -> points
    (e.g. {"out-of-place": [...], "in-place": [...]}). Sizes of 0 are dropped (no place on a log axis).
    `floor` is the profile's minimum busbw, `ceiling` the theoretical peak of the fabric.
    """
    if not isinstance(series, Mapping):
        series = {"busbw": series}
    fig = Figure(figsize=(7.5, 3.8))
    ax = fig.add_subplot()
    plotted = 0
    for label, points in series.items():
        pts = sorted((float(s), float(b)) for s, b in points if float(s) > 0)
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=label)
        plotted += 1
    if not plotted:
        raise ValueError("busbw_svg: no (size > 0, busbw) points to plot")
    if floor is not None:
        ax.axhline(floor, color="tab:red", linestyle="--", linewidth=1.2, label=f"floor {floor:g} GB/s")
    if ceiling is not None:
        ax.axhline(ceiling, color="tab:green", linestyle=":", linewidth=1.2, label=f"ceiling {ceiling:g} GB/s")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_size_label))
    ax.set_xlabel("message size")
    ax.set_ylabel("bus bandwidth (GB/s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    return _to_svg(fig)


def timeline_svg(phases: Iterable[tuple[str, float, float]], *,
                 title: str = "Karpenter provisioning timeline", limit: float | None = None) -> str:
    """Horizontal bars of (phase, start_s, end_s) relative to t=0 (e.g. pod created).

    Typical phases: pending -> nodeclaim created -> launched -> registered -> initialized ->
    pod scheduled -> running. `limit` draws the profile's deadline as a vertical line.
    """
    rows = [(str(n), float(a), float(b)) for n, a, b in phases]
    if not rows:
        raise ValueError("timeline_svg: no phases to plot")
    bad = [n for n, a, b in rows if b < a]
    if bad:
        raise ValueError(f"timeline_svg: phases end before they start: {bad}")
    fig = Figure(figsize=(7.5, 0.5 + 0.45 * len(rows)))
    ax = fig.add_subplot()
    for i, (name, start, end) in enumerate(rows):
        ax.broken_barh([(start, max(end - start, 0.01))], (i - 0.35, 0.7), color=f"C{i % 10}")
        ax.text(end, i, f" {end - start:.1f}s", va="center", fontsize="small")
    if limit is not None:
        ax.axvline(limit, color="tab:red", linestyle="--", linewidth=1.2, label=f"limit {limit:g}s")
        ax.legend(loc="lower right", fontsize="small")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since start")
    ax.set_xlim(left=0)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title)
    return _to_svg(fig)
