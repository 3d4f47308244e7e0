"""What every NCCL check shows in the report: the command, the raw log and table, versions, WARN lines, the plot.
(The judging is in checks/nccl.py.)"""
from __future__ import annotations

from typing import Any

from pytest_gpucluster.checks.nccl import NcclRun, floors_of, physical_ceiling, warnings_text
from pytest_gpucluster.checks.nccl_run import launch_of
from pytest_gpucluster.evidence import Evidence
from pytest_gpucluster.profile import InstanceProfile


def record(run: NcclRun, evidence: Evidence) -> None:
    """The command, the raw log, the parsed table, the versions and NCCL WARN lines (classified) of a run."""
    evidence.fact("where", run.where)
    evidence.fact("ranks", f"{run.nodes} node(s) x {run.gpus_per_node} GPUs")
    evidence.fact("command", run.command)
    for key, value in run.facts.items():
        evidence.fact(key, value)
    if run.manifest:
        evidence.attach(f"MPIJob {run.facts.get('mpijob', '')}", run.manifest, kind="manifest")
    if run.table is not None:
        evidence.attach(f"all_reduce_perf table ({run.where})", table_text(run.table), kind="nccl")
        # log-scale sizes: the 0-byte row nccl-tests prints for -b 0 has no place on the headline's axis
        curve = [(r.size, r.out_of_place.busbw) for r in run.table.rows if r.out_of_place and r.size > 0]
        if curve:
            evidence.headline("nccl", where=run.where, instance_type=run.instance_type, nodes=run.nodes,
                              gpus_per_node=run.gpus_per_node, busbw=curve)
    if run.log:
        evidence.attach(f"all_reduce_perf log ({run.where})", run.log, kind="nccl")
    if run.warnings:
        evidence.attach(f"NCCL WARN lines ({run.where})", warnings_text(run), kind="nccl")
    if run.result is not None:
        log = run.result.log
        for component, version in (("nccl", log.nccl_version), ("aws-ofi-nccl", log.ofi_plugin_version),
                                   ("libfabric", log.libfabric_version), ("nccl-tests", log.nccl_tests_version)):
            if version:
                evidence.version(component, version)
        evidence.fact("transport", run.result.transport)
        evidence.fact("gdrdma", run.result.gdrdma)
        if run.table is not None:
            evidence.fact("ranks in the log", launch_of(run).observed + (
                f" (pod -> node: {', '.join(f'{h} -> {n}' for h, n in sorted(run.hosts.items()))})" if run.hosts
                else ""))


def table_text(coll: Any) -> str:
    """The parsed table without launcher prefixes or log lines: size, then out-of-place and in-place halves."""
    lines = [f"{'size':>12} {'count':>12} {'type':>6}  {'time(us)':>9} {'algbw':>7} {'busbw':>7} {'#wrong':>6}"
             f"  {'time(us)':>9} {'algbw':>7} {'busbw':>7} {'#wrong':>6}"]
    for row in coll.rows:
        halves = "".join(f"  {h.time_us:>9g} {h.algbw:>7.2f} {h.busbw:>7.2f} {str(h.wrong):>6}" if h else f"  {'-':>32}"
                         for h in (row.out_of_place, row.in_place))
        lines.append(f"{row.size:>12} {row.count:>12} {row.type:>6}{halves}")
    lines.append(f"# Out of bounds values : {coll.out_of_bounds}   # Avg bus bandwidth : {coll.avg_busbw}")
    return "\n".join(lines)


def plot(run: NcclRun, inst: InstanceProfile | None, evidence: Evidence) -> None:
    """Bus bandwidth over message size (both halves) with the highest floor and the physical ceiling."""
    coll = run.table
    if coll is None:
        return
    points = {"out-of-place": [(r.size, r.out_of_place.busbw) for r in coll.rows if r.out_of_place],
              "in-place": [(r.size, r.in_place.busbw) for r in coll.rows if r.in_place]}
    if not any(s > 0 for s, _ in points["out-of-place"]):
        return
    from pytest_gpucluster.report.plots import busbw_svg
    floors = floors_of(inst, run.nodes)
    ceiling = physical_ceiling(inst, run.nodes, run.gpus_per_node)[0]
    evidence.plot(f"all_reduce bus bandwidth, {run.where}", busbw_svg(
        points, floor=max(floors.values()) if floors else None, ceiling=ceiling,
        title=f"all_reduce_perf {run.nodes} node(s) x {run.gpus_per_node} GPUs, {run.instance_type}"))
    evidence.headline("nccl", ceiling_gbs=ceiling)
