"""Report plots rendered by matplotlib as inline SVG: NCCL bus bandwidth curve, Karpenter phase timeline."""
from __future__ import annotations

import io
import re
from typing import Iterable, Mapping, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # no display on CI machines or in the in-cluster job

from matplotlib.axes import Axes  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

_PROLOG = re.compile(r"^.*?(?=<svg)", re.DOTALL)

Point = tuple[float, float]


def _finish_busbw(fig: Figure, ax: Axes, title: str, ceiling: float | None, *, title_size: str | None = None,
                  legend_size: str = "small") -> str:
    """The axes every bus-bandwidth plot shares: ceiling line, log2 message sizes, labels, grid, legend; as SVG."""
    if ceiling is not None:
        ax.axhline(ceiling, color="tab:green", linestyle=":", linewidth=1.2, label=f"ceiling {ceiling:g} GB/s")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_size_label))
    ax.set_xlabel("message size")
    ax.set_ylabel("bus bandwidth (GB/s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(title, fontsize=title_size)
    ax.legend(loc="upper left", fontsize=legend_size)
    return _to_svg(fig)


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
    return _finish_busbw(fig, ax, title, ceiling)


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


def _thin(points: Sequence[Point], keep: int) -> list[Point]:
    """At most `keep` points, evenly spread over the curve (the ends kept): small SVGs for many curves."""
    pts = sorted((float(s), float(b)) for s, b in points if float(s) > 0)
    if len(pts) <= keep:
        return pts
    step = (len(pts) - 1) / (keep - 1)
    return [pts[round(i * step)] for i in range(keep)]


def busbw_curves_svg(curves: Mapping[str, Sequence[Point]], *, failing: Iterable[str] = (),
                     floors: Mapping[float, float] | None = None, ceiling: float | None = None,
                     title: str = "NCCL bus bandwidth vs message size", max_curves: int = 40,
                     points_per_curve: int = 14) -> str:
    """Many runs of one kind in one plot: every curve faint, failing curves red, the profile's floors as red marks
    at their sizes, the physical ceiling as a dotted line. Past `max_curves` the passing curves are drawn as their
    min-max band and median (the page stays small at 1,000 nodes); failing curves are always drawn."""
    bad = set(failing)
    thin = {k: _thin(v, points_per_curve) for k, v in curves.items()}
    thin = {k: v for k, v in thin.items() if v}
    if not thin:
        raise ValueError("busbw_curves_svg: no (size > 0, busbw) points to plot")
    fig = Figure(figsize=(6.4, 3.2))
    ax = fig.add_subplot()
    good = {k: v for k, v in thin.items() if k not in bad}
    if len(good) <= max_curves:
        for i, pts in enumerate(good.values()):
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="tab:blue", alpha=0.3, linewidth=0.8,
                    label=f"{len(good)} passing run(s)" if i == 0 else None)
    elif good:
        by_size: dict[float, list[float]] = {}
        for pts in good.values():
            for s, b in pts:
                by_size.setdefault(s, []).append(b)
        sizes = sorted(by_size)
        lo = [min(by_size[s]) for s in sizes]
        hi = [max(by_size[s]) for s in sizes]
        mid = [sorted(by_size[s])[len(by_size[s]) // 2] for s in sizes]
        ax.fill_between(sizes, lo, hi, color="tab:blue", alpha=0.2, linewidth=0,
                        label=f"{len(good)} passing runs: min-max")
        ax.plot(sizes, mid, color="tab:blue", linewidth=1, label="median")
    for i, (name, pts) in enumerate((k, v) for k, v in thin.items() if k in bad):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color="tab:red", linewidth=1.2, alpha=0.9,
                label=name if i < 3 else None)
    if floors:
        fs = sorted((float(s), float(f)) for s, f in floors.items())
        ax.plot([s for s, _ in fs], [f for _, f in fs], linestyle="none", marker="_", markersize=14,
                markeredgewidth=2, color="tab:red", label="floor (profile)")
    return _finish_busbw(fig, ax, title, ceiling, title_size="medium", legend_size="x-small")


HEALTH_COLOURS = {"pass": (0.12, 0.48, 0.20), "fail": (0.70, 0.15, 0.12), "not shown": (0.93, 0.66, 0.10),
                  "known failure": (0.48, 0.37, 0.65), "warn": (0.98, 0.90, 0.45), "": (0.90, 0.90, 0.90)}


def health_strip_svg(nodes: Sequence[str], checks: Sequence[str], states: Sequence[Sequence[str]], *,
                     title: str = "Node health") -> str:
    """One column per node, one row per check, a coloured square per result (pass / fail / not shown / none).
    `states[i][j]` is check i on node j. Drawn as one small raster inside the SVG, so 1,000 nodes cost bytes,
    not thousands of SVG elements."""
    if not nodes or not checks:
        raise ValueError("health_strip_svg: no nodes or no checks")
    import numpy as np

    grid = np.array([[HEALTH_COLOURS.get(s, HEALTH_COLOURS[""]) for s in row] for row in states], dtype=float)
    fig = Figure(figsize=(7.5, 0.6 + 0.28 * len(checks)))
    ax = fig.add_subplot()
    ax.imshow(grid, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(checks)), list(checks), fontsize="small")
    if len(nodes) <= 30:
        ax.set_xticks(range(len(nodes)), list(nodes), rotation=90, fontsize="x-small")
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(nodes)} nodes (failing first)")
    ax.set_title(title, fontsize="medium")
    present = [s for s in HEALTH_COLOURS if s and any(s in row for row in states)]
    ax.legend(handles=[Patch(color=HEALTH_COLOURS[s], label=s) for s in present], loc="upper left",
              bbox_to_anchor=(1.0, 1.0), fontsize="x-small", frameon=False)
    return _to_svg(fig)
