"""NCCL results for the suite: one all_reduce_perf run and how it is judged (correctness, network path,
bus bandwidth against the profile's floors and the physical ceiling), with its evidence."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_gpucluster.evidence import Evidence
from pytest_gpucluster.kube.probes import EFA_RESOURCE
from pytest_gpucluster.parsers import NcclResult, ParseError, parse_nccl
from pytest_gpucluster.profile import InstanceProfile


def size_arg(nbytes: int) -> str:
    """1073741824 -> 1G, as nccl-tests arguments and the profile write sizes."""
    for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if nbytes % factor == 0:
            return f"{nbytes // factor}{unit}"
    return str(nbytes)


@dataclass
class NcclRun:
    """One all_reduce_perf run (a probe pod or an MPIJob launcher) and what its log says."""

    where: str                      # "node/itype" or "a+b/itype"
    instance_type: str
    nodes: int
    gpus_per_node: int
    command: str
    log: str = ""
    outcome: str = ""               # "" = finished with exit code 0, else what went wrong and where to look
    result: NcclResult | None = None
    parse_error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    manifest: str | None = None     # the MPIJob as created (multi-node)

    def parse(self) -> "NcclRun":
        try:
            self.result = parse_nccl(self.log) if self.log.strip() else None
        except ParseError as exc:
            self.parse_error = str(exc)
        return self

    @property
    def ranks(self) -> int:
        return self.nodes * self.gpus_per_node


def record(run: NcclRun, evidence: Evidence) -> None:
    """What every NCCL check shows: the command, the raw log, the versions found in it."""
    evidence.fact("where", run.where)
    evidence.fact("ranks", f"{run.nodes} node(s) x {run.gpus_per_node} GPUs")
    evidence.fact("command", run.command)
    for key, value in run.facts.items():
        evidence.fact(key, value)
    if run.manifest:
        evidence.attach(f"MPIJob {run.facts.get('mpijob', '')}", run.manifest, kind="manifest")
    coll = run.result.collective("all_reduce") if run.result is not None else None
    if coll is not None:
        evidence.attach(f"all_reduce_perf table ({run.where})", table_text(coll), kind="nccl")
    if run.log:
        evidence.attach(f"all_reduce_perf log ({run.where})", run.log, kind="nccl")
    if run.result is not None:
        log = run.result.log
        for component, version in (("nccl", log.nccl_version), ("aws-ofi-nccl", log.ofi_plugin_version),
                                   ("libfabric", log.libfabric_version), ("nccl-tests", log.nccl_tests_version)):
            if version:
                evidence.version(component, version)
        evidence.fact("transport", run.result.transport)
        evidence.fact("gdrdma", run.result.gdrdma)


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


def no_result(run: NcclRun) -> str | None:
    """Why there is nothing to judge (pod/job failure without a table, unparseable log), else None."""
    coll = run.result.collective("all_reduce") if run.result is not None else None
    if coll is not None:
        return None
    why = run.outcome or run.parse_error or "the log holds no all_reduce_perf result table"
    tail = "\n".join(run.log.strip().splitlines()[-5:])
    return (f"all_reduce_perf on {run.where} produced no result: expected a result table, observed: {why}"
            + (f"\nlast log lines:\n{tail}" if tail else ""))


def judge_correctness(run: NcclRun) -> str | None:
    """None when the run finished cleanly with no wrong elements; else the failure message."""
    missing = no_result(run)
    if missing or run.result is None:
        return missing
    coll = run.result.collective("all_reduce")
    assert coll is not None
    problems = []
    wrong = coll.wrong_rows
    if wrong:
        first = wrong[0]
        counts = [h.wrong for h in (first.out_of_place, first.in_place) if h is not None]
        problems.append(f"{len(wrong)} message sizes with #wrong > 0 (first at {size_arg(first.size)}: {counts})")
    if coll.out_of_bounds:
        problems.append(f"Out of bounds values: {coll.out_of_bounds}")
    failures = [e for e in run.result.errors if "failure" in e.lower() or "WARN" in e]
    if failures:
        problems.append(f"{len(failures)} error lines (first: {failures[0]!r})")
    if not problems and run.outcome:
        problems.append(run.outcome)
    if not problems:
        return None
    return (f"all_reduce results are wrong on {run.where} ({run.ranks} ranks): expected #wrong 0, "
            f"'Out of bounds values : 0 OK' and no 'Test failure' lines; observed {'; '.join(problems)}. "
            f"Wrong sums point at a GPU or NVLink/EFA data-path fault: check `nvidia-smi -q -d ECC` and "
            f"`dmesg | grep -i xid` on the nodes, then rerun on each node alone to isolate it.")


def judge_network(run: NcclRun, inst: InstanceProfile | None) -> str | None:
    """Across nodes on EFA instance types: OFI/Libfabric with provider efa, and GPUDirect RDMA where the
    profile says the type has it. A Socket fallback fails whatever the bandwidth."""
    missing = no_result(run)
    if missing or run.result is None:
        return missing
    log = run.result.log
    observed = (f"transport {run.result.transport or 'unknown'}, networks {log.networks or log.channel_nets or '-'}, "
                f"OFI provider {log.ofi_provider or '-'}, GPUDirect RDMA channels {log.gdrdma_channels}/{log.net_channels}")
    if run.result.transport != "efa" or (log.ofi_provider or "efa") != "efa":
        return (f"NCCL on {run.where} did not use EFA: expected 'Using network Libfabric' / 'Selected provider is "
                f"efa' in the NCCL_DEBUG=INFO log; observed {observed}. A fallback to Socket runs over the "
                f"instance's TCP network: check that the workers request {EFA_RESOURCE} (EFA device plugin "
                f"running and tolerating the GPU taint), FI_PROVIDER=efa, and that the image ships aws-ofi-nccl "
                f"(look for 'NET/Plugin' and 'NET/OFI' lines in the launcher log).")
    if inst is not None and inst.gdrdma and not run.result.gdrdma:
        return (f"NCCL on {run.where} runs EFA without GPUDirect RDMA: expected channels 'via NET/Libfabric/N/GDRDMA' "
                f"({run.instance_type} supports it, profile gdrdma: true); observed {observed}. Check "
                f"FI_EFA_USE_DEVICE_RDMA, the EFA driver (efa_nv_peermem / dmabuf) and the aws-ofi-nccl version.")
    return None


def physical_ceiling(inst: InstanceProfile | None, nodes: int) -> tuple[float | None, str]:
    """(GB/s, what it is): per-GPU NVLink inside a node; per-node network bandwidth across nodes."""
    if inst is None:
        return None, "unknown instance type"
    if nodes == 1:
        return inst.nvlink_gbs, "per-GPU NVLink bandwidth (profile nvlink_gbs)"
    if inst.network_gbps:
        return inst.network_gbps / 8, f"per-node network bandwidth {inst.network_gbps:g} Gbps (profile network_gbps)"
    return None, "no network_gbps in the profile"


def judge_bandwidth(run: NcclRun, inst: InstanceProfile | None, evidence: Evidence) -> tuple[str | None, str | None]:
    """(failure message, skip reason). Records every measurement, the table and the plot first."""
    missing = no_result(run)
    if missing or run.result is None:
        return missing, None
    coll = run.result.collective("all_reduce")
    assert coll is not None
    wrong = judge_correctness(run)
    source = f"profile instances.{run.instance_type}.nccl"
    floors = dict(inst.nccl_floors.get(run.nodes) or {}) if inst else {}
    ceiling, ceiling_what = physical_ceiling(inst, run.nodes)
    peak = coll.peak_busbw or 0.0
    judged: list[tuple[int, float, float]] = []
    for size, floor in sorted(floors.items()):
        measured = coll.busbw_at(size)
        evidence.measure(f"out-of-place busbw at {size_arg(size)}", measured or 0.0, "GB/s", threshold=floor,
                         source=f"{source}.all_reduce_busbw_floor_gbs.{run.nodes}.{size_arg(size)}")
        judged.append((size, floor, measured or 0.0))
    evidence.measure("peak out-of-place busbw", peak, "GB/s", threshold=max(floors.values()) if floors else None,
                     source=f"{source}.all_reduce_busbw_floor_gbs.{run.nodes} (highest floor)" if floors else None)
    implausible = inst.busbw_ceiling_gbs if inst else None
    if implausible is not None:
        evidence.measure("peak busbw plausible", peak, "GB/s", threshold=float(implausible), op="<=",
                         source=f"{source}.busbw_ceiling_gbs")
    if ceiling:
        evidence.measure("peak busbw / physical ceiling", round(100 * peak / ceiling, 1), "%")
        evidence.fact("physical_ceiling", f"{ceiling:g} GB/s: {ceiling_what}")
    points = {"out-of-place": [(r.size, r.out_of_place.busbw) for r in coll.rows if r.out_of_place],
              "in-place": [(r.size, r.in_place.busbw) for r in coll.rows if r.in_place]}
    if any(s > 0 for s, _ in points["out-of-place"]):
        from pytest_gpucluster.report.plots import busbw_svg
        evidence.plot(f"all_reduce bus bandwidth, {run.where}", busbw_svg(
            points, floor=max(floors.values()) if floors else None, ceiling=ceiling,
            title=f"all_reduce_perf {run.nodes} node(s) x {run.gpus_per_node} GPUs, {run.instance_type}"))
    if wrong:
        return f"bus bandwidth of {run.where} not judged: the run's results are wrong (see the correctness check)", None
    if implausible is not None and peak > float(implausible):
        return (f"implausible bus bandwidth on {run.where}: expected <= {implausible:g} GB/s ({source}.busbw_ceiling_gbs), "
                f"observed peak {peak:g} GB/s - the table is misread or the tool misreports; see the attached log"), None
    low = [(s, f, m) for s, f, m in judged if m < f]
    if low:
        transport = run.result.transport or "unknown"
        frac = f" = {100 * peak / ceiling:.0f}% of the {ceiling:g} GB/s {ceiling_what}" if ceiling else ""
        detail = "; ".join(f"at {size_arg(s)} expected >= {f:g} GB/s, observed {m:g} GB/s ({100 * m / f:.0f}% of the floor)"
                           for s, f, m in low)
        if run.nodes == 1:
            hint = "check the NVLink/NVSwitch state (`nvidia-smi nvlink -s`, `nvidia-smi topo -m`) and GPU clocks"
        elif transport == "socket":
            hint = "NCCL ran over Socket (TCP), not EFA: fix the network path first (see the EFA check)"
        else:
            hint = (f"the network path is {transport}: check that all EFA interfaces are requested, that the nodes "
                    f"share a placement group / spine, and the NCCL_* and FI_* settings in the MPIJob")
        return (f"NCCL all_reduce bus bandwidth below the profile floor on {run.where} ({run.nodes} node(s) x "
                f"{run.gpus_per_node} GPUs): {detail}; peak {peak:g} GB/s{frac} ({source}). Then {hint}."), None
    if not floors:
        return None, (f"bandwidth recorded, not judged: the profile has no floor for {run.nodes} node(s) of "
                      f"{run.instance_type} (set {source}.all_reduce_busbw_floor_gbs.{run.nodes}); "
                      f"peak {peak:g} GB/s")
    return None, None
