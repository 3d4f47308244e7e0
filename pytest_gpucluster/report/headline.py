"""The summary's headline plots, drawn over every node: NCCL bus bandwidth per instance type, the Karpenter
phase timeline, the node-health strip."""
from __future__ import annotations

from html import escape
from typing import Any, Iterable, Sequence

from pytest_gpucluster.report import plots
from pytest_gpucluster.report.areas import HEALTH_MODULE, split_nodeid
from pytest_gpucluster.report.summary import CheckResult

MAX_TIMELINES = 4


def extract(nodeid: str, evidence: dict[str, Any]) -> dict[str, Any]:
    """What the headline plots need from one check's evidence (kept in memory; the rest goes to the evidence file).

    Read from the structured parts only: the numbers the check put in its `headline` channel (gather/
    nccl_evidence.py: the bus-bandwidth curve, node count, ceiling) and its plots of kind "timeline" (the Karpenter
    suite), never from facts' wording or raw outputs, which are for people and may change."""
    out: dict[str, Any] = {}
    nccl = (evidence.get("headline") or {}).get("nccl") or {}
    points = [(float(size), float(busbw)) for size, busbw in nccl.get("busbw") or []]
    if points:
        ceiling = nccl.get("ceiling_gbs")
        out["nccl"] = {"where": str(nccl.get("where") or nodeid), "instance_type": nccl.get("instance_type"),
                       "nodes": int(nccl.get("nodes") or 1), "points": points,
                       "ceiling": float(ceiling) if ceiling else None}
    timelines = [p for p in evidence.get("plots") or [] if p.get("kind") == "timeline"]
    if timelines:
        out["timelines"] = timelines
    return out


def headline_block(checks: Sequence[CheckResult], profile_values: dict[str, Any]) -> str:
    """The plots section (empty when no check gave anything to draw)."""
    figures = [*_nccl_figures(checks, profile_values), *_timeline_figures(checks), *_health_figures(checks)]
    if not figures:
        return ""
    body = "".join(f'<figure class="gc-plot"><figcaption>{escape(title)}</figcaption>{svg}</figure>'
                   for title, svg in figures)
    return f'<div class="gc-section" id="gc-plots"><h3>Headline plots</h3><div class="gc-plots">{body}</div></div>'


def _nccl_figures(checks: Sequence[CheckResult], profile_values: dict[str, Any]) -> Iterable[tuple[str, str]]:
    runs: dict[tuple[str, int], dict[str, list[tuple[float, float]]]] = {}
    failing: dict[tuple[str, int], set[str]] = {}
    ceilings: dict[tuple[str, int], float] = {}
    for c in checks:
        nccl = c.headline.get("nccl")
        if not nccl:
            continue
        key = (nccl.get("instance_type") or c.instance_type or "unknown", int(nccl["nodes"]))
        runs.setdefault(key, {})[nccl["where"]] = nccl["points"]
        if c.outcome in ("failed", "error"):
            failing.setdefault(key, set()).add(nccl["where"])
        if nccl.get("ceiling"):
            ceilings[key] = float(nccl["ceiling"])
    for (itype, nodes), curves in sorted(runs.items()):
        floors = _floors(profile_values.get(itype) or {}, nodes)
        kind = "one node" if nodes == 1 else f"{nodes} nodes"
        title = f"NCCL all_reduce bus bandwidth, {itype}, {kind}: {len(curves)} run(s)"
        try:
            yield title, plots.busbw_curves_svg(curves, failing=failing.get((itype, nodes), ()), floors=floors,
                                                ceiling=ceilings.get((itype, nodes)), title=title)
        except ValueError:
            continue


def _floors(values: dict[str, Any], nodes: int) -> dict[float, float]:
    table = (values.get("nccl_floors") or {})
    per = table.get(nodes) or table.get(str(nodes)) or {}
    out = {}
    for size, floor in per.items():
        try:
            out[float(size)] = float(floor)
        except (TypeError, ValueError):
            continue
    return out


def _timeline_figures(checks: Sequence[CheckResult]) -> Iterable[tuple[str, str]]:
    n = 0
    for c in checks:
        for p in c.headline.get("timelines", []):
            if n >= MAX_TIMELINES:
                return
            n += 1
            yield str(p["title"]), str(p["svg"])


def _health_figures(checks: Sequence[CheckResult]) -> Iterable[tuple[str, str]]:
    """One strip for every check of the node-health module (any test in it, whatever it is named)."""
    health = [c for c in checks if split_nodeid(c.nodeid)[0] == HEALTH_MODULE and c.node]
    if not health:
        return
    names = list(dict.fromkeys(split_nodeid(c.nodeid)[1] for c in health))
    state: dict[str, dict[str, str]] = {}
    for c in health:
        word = {"passed": "pass", "skipped": "not shown", "xfailed": "known failure", "warned": "warn"}.get(
            c.outcome, "fail")
        for node in c.nodes or str(c.node).split("+"):
            cells = state.setdefault(node, {})
            name = split_nodeid(c.nodeid)[1]
            if cells.get(name) != "fail":
                cells[name] = word if cells.get(name) in (None, "pass", "warn") else cells[name]
    rank = {"fail": 0, "known failure": 1, "not shown": 2, "warn": 3, "pass": 4}
    nodes = sorted(state, key=lambda n: (min(rank.get(s, 4) for s in state[n].values()), n))
    grid = [[state[n].get(name, "") for n in nodes] for name in names]
    bad = sum(1 for n in nodes if "fail" in state[n].values())
    title = f"Node health: {len(nodes)} nodes x {len(names)} checks, {bad} node(s) failing"
    yield title, plots.health_strip_svg(nodes, [nm.removeprefix("test_") for nm in names], grid, title=title)
