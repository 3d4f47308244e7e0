"""Judges for NCCL all-reduce runs: correctness, network path and bus bandwidth against the profile's floors and the
physical ceiling (pure: a parsed run and the profile in, a Verdict out). Which nodes run: checks/nccl_nodes.py; the
run record and its comparison with the job: checks/nccl_run.py."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_gpucluster.checks.nccl_run import (
    NcclRun, classify_warnings, first_of, is_plugin_startup_warn, launch_not_shown, launch_of, no_result, not_the_job,
    size_arg, warn_facts, warnings_text,
)
from pytest_gpucluster.checks.verdict import Criterion, Verdict
from pytest_gpucluster.kube.objects import EFA_RESOURCE
from pytest_gpucluster.parsers import NcclCollective
from pytest_gpucluster.parsers.nccl_log import TEST_FAILURE, NcclLogFacts, process_transports

if TYPE_CHECKING:
    from pytest_gpucluster.profile import InstanceProfile

__all__ = ["NcclRun", "classify_warnings", "warnings_text", "size_arg", "max_bytes", "correctness",
           "network", "bandwidth", "physical_ceiling", "floors_of", "correctness_problems"]

DEFAULT_MAX_BYTES = 2 << 30                   # -e 2G unless the profile judges a larger size


def max_bytes(inst: InstanceProfile | None, nodes: int) -> int:
    """The largest message size to run: 2G, or the largest size the profile has a floor for."""
    sizes = list((inst.nccl_floors.get(nodes) or {}) if inst else {})
    return max([DEFAULT_MAX_BYTES, *sizes])


def _preconditions(run: NcclRun) -> Verdict | None:
    """A FAIL every judge starts with: no result table, or a log that is not the job that was launched."""
    return no_result(run) or not_the_job(run)


# -- correctness -------------------------------------------------------------------------------------------------
def correctness_problems(run: NcclRun) -> list[str]:
    """What says the sums are wrong: #wrong columns, Out of bounds values, nccl-tests' Test failure lines and
    the exit code. NCCL WARN lines are not among them (see classify_warnings)."""
    coll = run.table
    assert coll is not None and run.result is not None
    problems = []
    if coll.wrong_rows:
        first = coll.wrong_rows[0]
        counts = [h.wrong for h in (first.out_of_place, first.in_place) if h is not None]
        problems.append(f"{len(coll.wrong_rows)} message sizes with #wrong > 0 "
                        f"(first at {size_arg(first.size)}: {counts})")
    if coll.out_of_bounds:
        problems.append(f"Out of bounds values: {coll.out_of_bounds}")
    failures = [e for e in run.result.errors if TEST_FAILURE.search(e)]
    if failures:
        problems.append(f"{len(failures)} error lines (first: {failures[0]!r})")
    if not problems and run.outcome:
        problems.append(run.outcome)
    return problems


def validation_missing(coll: NcclCollective) -> str | None:
    """Why the table holds no count of wrong results, else None. nccl-tests validates only with -c/--check >= 1
    (`validation: 1`; with -c 0 every #wrong is N/A) and prints `# Out of bounds values : N OK|FAILED` once the test
    has finished: without that line the test was cut short or the log is cut, and sizes after the cut were never
    checked (NVIDIA/nccl-tests src/common.cu). The `error` column of nccl-tests before its NCCL 2.13 resync
    (commit 51af557, Aug 2022) holds a maximum deviation, not a count; there the Out of bounds count is the
    validation (sizes whose deviation exceeded DeltaMaxValue(type) x (nranks - 1)), so it must be printed too."""
    halves = [h for r in coll.rows for h in (r.out_of_place, r.in_place) if h is not None]
    unvalidated = [h for h in halves if h.wrong is None]
    if coll.validation is False or (halves and len(unvalidated) == len(halves)):
        return "the run did not validate its results (validation: 0 / -c 0: every #wrong is N/A)"
    if unvalidated:
        return f"{len(unvalidated)} of {len(halves)} results have no #wrong count (N/A)"
    if coll.out_of_bounds is None:
        return ("no '# Out of bounds values' line: the test did not finish or the log is cut, so not every size "
                "was checked")
    return None


def correctness(run: NcclRun) -> Verdict:
    """PASS when the run finished cleanly, validated every result and found none wrong; NOT SHOWN when it did not
    validate (or cannot be told apart from the job)."""
    if (failed := _preconditions(run)) is not None:
        return failed
    coll = run.table
    assert coll is not None
    problems = correctness_problems(run)
    _, telling = classify_warnings(run)
    if problems and telling:
        problems.append(f"NCCL WARN lines: {first_of(telling)}")
    subject = f"{run.where} ({run.ranks} ranks)"
    facts = warn_facts(run)
    whys = [why for why in (validation_missing(coll), launch_of(run).unknown) if why]
    if not problems and whys:
        return Verdict.not_shown(subject, f"no correctness evidence: {'; '.join(whys)}", "run all_reduce_perf with "
                                 "-c 1 (the suite's default) to the end, its '# Rank' lines unfiltered; a result "
                                 "without a count of wrong elements proves nothing about the sums", facts=facts)
    old = coll.error_column != "#wrong"
    return Verdict.from_problems(
        subject, "#wrong 0, 'Out of bounds values : 0 OK' and no 'Test failure' lines",
        problems, "Wrong sums point at a GPU or NVLink/EFA data-path fault: check `nvidia-smi -q -d ECC` and "
        "`dmesg | grep -i xid` on the nodes, then rerun on each node alone to isolate it.",
        observed_ok=("Out of bounds values 0 (nccl-tests before 2.13's #wrong: no size deviated beyond its tolerance)"
                     if old else "#wrong 0 at every size, no out-of-bounds values, exit code 0"),
        summary="all_reduce results are wrong" if problems else "", facts=facts)


# -- network path ------------------------------------------------------------------------------------------------
def _processes_text(log: NcclLogFacts) -> str:
    """How many printing processes used which transport, naming the ones that are not on EFA."""
    per = process_transports(log)
    if not per:
        return "no process printed its network"
    counts: dict[str, list[str]] = {}
    for proc, kind in per.items():
        counts.setdefault(kind, []).append(proc)
    parts = []
    for kind, procs in sorted(counts.items(), key=lambda kv: -len(kv[1])):
        names = "" if kind == "efa" else f" ({', '.join(procs[:4])}{', ...' if len(procs) > 4 else ''})"
        parts.append(f"{kind} on {len(procs)} process(es){names}")
    return ", ".join(parts)


def _no_gdr_text(log: NcclLogFacts) -> str:
    lacking = {h or "?": c for h, c in log.host_channels.items() if c[1] < c[0]}
    if not lacking:
        return ""
    return "; without GPUDirect RDMA: " + ", ".join(f"{h} ({c[0] - c[1]} of {c[0]} channels)"
                                                    for h, c in sorted(lacking.items()))


def network(run: NcclRun, inst: InstanceProfile | None) -> Verdict:
    """Across nodes on EFA instance types: every process on OFI/Libfabric with provider efa, and every network
    channel of every rank with GPUDirect RDMA where the profile says the type has it. A Socket fallback fails
    whatever the bandwidth; a process whose provider is not shown leaves the transport unknown, which fails too."""
    if (failed := _preconditions(run)) is not None:
        return failed
    assert run.result is not None
    log = run.result.log
    observed = (f"transport {run.result.transport or 'unknown'} ({_processes_text(log)}), networks "
                f"{log.networks or log.channel_nets or '-'}, OFI provider {log.ofi_provider or '-'}, GPUDirect RDMA "
                f"channels {log.gdrdma_channels}/{log.net_channels}")
    facts = {**warn_facts(run), "transport": run.result.transport, "gdrdma": run.result.gdrdma}
    if run.result.transport != "efa":
        startup = [w for w in run.warnings if is_plugin_startup_warn(w)]
        why = f"; aws-ofi-nccl did not start: {first_of(startup)}" if startup else ""
        return Verdict.failed(
            run.where, "'Using network Libfabric' / 'Selected provider is efa' in the NCCL_DEBUG=INFO log of every "
            "rank", observed + why,
            f"A fallback to Socket runs over the instance's TCP network: check that the workers request "
            f"{EFA_RESOURCE} (EFA device plugin running and tolerating the GPU taint), FI_PROVIDER=efa, and that "
            f"the image ships aws-ofi-nccl (look for 'NET/Plugin' and 'NET/OFI' lines in the launcher log).",
            summary="NCCL did not use EFA", facts=facts)
    if inst is not None and inst.gdrdma and not run.result.gdrdma:
        return Verdict.failed(
            run.where, f"every network channel of every rank 'via NET/Libfabric/N/GDRDMA' ({run.instance_type} "
            "supports it, profile gdrdma: true)", observed + _no_gdr_text(log),
            "Check FI_EFA_USE_DEVICE_RDMA, the EFA driver (efa_nv_peermem / dmabuf) and the aws-ofi-nccl "
            "version on the nodes named.", summary="NCCL runs EFA without GPUDirect RDMA", facts=facts)
    if (unknown := launch_not_shown(run, run.where, facts=facts)) is not None:
        return unknown
    return Verdict.passed(run.where, "OFI/Libfabric with provider efa" + (" and GPUDirect RDMA" if inst and inst.gdrdma
                                                                          else ""), observed, facts=facts)


# -- bus bandwidth -----------------------------------------------------------------------------------------------
def physical_ceiling(inst: InstanceProfile | None, nodes: int, gpus_per_node: int | None = None
                     ) -> tuple[float | None, str]:
    """(GB/s, how it was derived): the bus bandwidth no all-reduce algorithm can exceed on these links, or
    (None, why) when the profile lacks the link figures. Derivation and sources: docs/nccl.md.

    nccl-tests reports busbw = algbw * 2(n-1)/n for n ranks (NVIDIA nccl-tests doc/PERFORMANCE.md), the factor
    being the data each rank must send in a bandwidth-optimal all-reduce (Patarasuk & Yuan 2009): for an
    optimal ring, busbw equals the slowest link's speed. The bounds, per direction (B_gpu = nvlink_gbs / 2,
    B_net = network_gbps / 8, G GPUs per node, N nodes, n = N * G):
    - inside a node without in-switch reduction (A100 NVSwitch): each rank must send 2(n-1)/n * S
      -> busbw <= B_gpu;
    - with NVLink SHARP (NVLS, H100 and later: profile nvlink_sharp) each GPU must still send and receive
      every element at least once -> algbw <= B_gpu, busbw <= 2(n-1)/n * B_gpu;
    - across nodes (EFA reduces nothing in the network), the same lower bound at node granularity: each node
      must send 2(N-1)/N * S over its network -> busbw <= B_net * N/(N-1) * (n-1)/n. For two nodes that is
      ~2 x B_net: why NCCL's tree makes 2-node busbw exceed the NIC line rate (nccl-tests issue 22,
      NCCL issue 209); for many nodes it tends to B_net (the ring's inter-node hop);
    - a GPU also reaches its NICs over PCIe (GPUDirect RDMA), so across nodes the per-GPU bound adds its
      share of the network, B_net / G.
    The ceiling is the smallest bound that can be derived; every published run (tests/data/nccl-tests) is
    below it."""
    if inst is None:
        return None, "unknown instance type"
    g = gpus_per_node or inst.gpus or 1
    n = nodes * g
    b_gpu = inst.nvlink_gbs / 2 if inst.nvlink_gbs else None
    b_net = inst.network_gbps / 8 if inst.network_gbps else None
    gpu_factor = 2 * (n - 1) / n if inst.nvlink_sharp else 1.0
    gpu_rule = ("2(n-1)/n x per-GPU NVLink per direction (NVLink SHARP)" if inst.nvlink_sharp
                else "per-GPU NVLink per direction")
    if nodes == 1:
        if b_gpu is None or g < 2:
            return None, "no NVLink figure in the profile (nvlink_gbs): no ceiling derived"
        return gpu_factor * b_gpu, f"{gpu_rule}, nvlink_gbs {inst.nvlink_gbs:g}/2, n={n}"
    bounds: list[tuple[float, str]] = []
    if b_net is not None:
        bounds.append((b_net * nodes / (nodes - 1) * (n - 1) / n,
                       f"network per node {inst.network_gbps:g} Gbps x N/(N-1) x (n-1)/n, N={nodes}, n={n}"))
    if b_gpu is not None:
        bounds.append((gpu_factor * (b_gpu + (b_net or 0.0) / g), f"{gpu_rule} plus the GPU's network share"))
    if not bounds:
        return None, "no network_gbps or nvlink_gbs in the profile: no ceiling derived"
    return min(bounds)


def floors_of(inst: InstanceProfile | None, nodes: int) -> dict[int, float]:
    return dict(inst.nccl_floors.get(nodes) or {}) if inst else {}


def bandwidth_criteria(run: NcclRun, coll: NcclCollective, inst: InstanceProfile | None) -> list[Criterion]:
    """Every measurement the bandwidth check records: busbw at each floor's size, the peak against the highest
    floor and the implausibility ceiling, and the peak as a share of the physical ceiling (at most 100%)."""
    source = f"profile instances.{run.instance_type}.nccl"
    floors = floors_of(inst, run.nodes)
    peak = coll.peak_busbw or 0.0
    out = [Criterion(f"out-of-place busbw at {size_arg(size)}", coll.busbw_at(size) or 0.0, "GB/s", floor,
                     source=f"{source}.all_reduce_busbw_floor_gbs.{run.nodes}.{size_arg(size)}")
           for size, floor in sorted(floors.items())]
    out.append(Criterion("peak out-of-place busbw", peak, "GB/s", max(floors.values()) if floors else None,
                         source=f"{source}.all_reduce_busbw_floor_gbs.{run.nodes} (highest floor)" if floors else None))
    if inst is not None and inst.busbw_ceiling_gbs is not None:
        out.append(Criterion("peak busbw plausible", peak, "GB/s", float(inst.busbw_ceiling_gbs), op="<=",
                             source=f"{source}.busbw_ceiling_gbs"))
    ceiling, how = physical_ceiling(inst, run.nodes, run.gpus_per_node)
    if ceiling:
        out.append(Criterion("peak busbw / physical ceiling", round(100 * peak / ceiling, 1), "%", 100.0, op="<=",
                             source=f"algorithmic ceiling {ceiling:.1f} GB/s: {how} (docs/nccl.md)"))
    return out


def bandwidth(run: NcclRun, inst: InstanceProfile | None) -> Verdict:
    """Out-of-place bus bandwidth at the profile's sizes against its floors for that node count, and below the
    physical ceiling for that node count; NOT_SHOWN when the profile has no floor (recorded, not judged)."""
    if (failed := _preconditions(run)) is not None:
        return failed
    coll = run.table
    assert coll is not None
    source = f"profile instances.{run.instance_type}.nccl"
    floors = floors_of(inst, run.nodes)
    ceiling, ceiling_what = physical_ceiling(inst, run.nodes, run.gpus_per_node)
    peak = coll.peak_busbw or 0.0
    criteria = tuple(bandwidth_criteria(run, coll, inst))
    facts: dict[str, Any] = {"physical_ceiling": f"{ceiling:.1f} GB/s: {ceiling_what}" if ceiling
                             else f"none: {ceiling_what}"}
    subject = f"{run.where} ({run.nodes} node(s) x {run.gpus_per_node} GPUs)"
    expected = (f"out-of-place busbw >= the floor at each size ({source}.all_reduce_busbw_floor_gbs.{run.nodes})"
                if floors else "a floor to judge against")
    kw: dict[str, Any] = {"criteria": criteria, "facts": facts}
    if correctness_problems(run):
        return Verdict.failed(f"bus bandwidth of {run.where}", "bandwidth judged on a run with correct results",
                              "not judged: the run's results are wrong (see the correctness check)", **kw)
    implausible = inst.busbw_ceiling_gbs if inst else None
    if implausible is not None and peak > float(implausible):
        return Verdict.failed(run.where, f"<= {implausible:g} GB/s ({source}.busbw_ceiling_gbs)",
                              f"peak {peak:g} GB/s", "The table is misread or the tool misreports; see the attached log.",
                              summary="implausible bus bandwidth", **kw)
    if ceiling is not None and peak > ceiling:
        return Verdict.failed(
            subject, f"<= {ceiling:.1f} GB/s, the physical ceiling for {run.nodes} node(s) x {run.gpus_per_node} GPUs "
            f"of {run.instance_type} ({ceiling_what}; docs/nccl.md)",
            f"peak {peak:g} GB/s = {100 * peak / ceiling:.0f}% of what these links can carry",
            "No all-reduce reaches that on these links: the table is misread, the ranks ran on fewer nodes than the "
            "job claims, or the profile's link figures (nvlink_gbs, network_gbps) are wrong for this type.",
            summary="bus bandwidth beyond the physical ceiling", **kw)
    low = [(s, f, coll.busbw_at(s) or 0.0) for s, f in sorted(floors.items()) if (coll.busbw_at(s) or 0.0) < f]
    if low:
        transport = run.result.transport if run.result is not None else None
        frac = f" = {100 * peak / ceiling:.0f}% of the {ceiling:.1f} GB/s ceiling ({ceiling_what})" if ceiling else ""
        detail = "; ".join(f"at {size_arg(s)} expected >= {f:g} GB/s, observed {m:g} GB/s ({100 * m / f:.0f}% of the "
                           f"floor)" for s, f, m in low)
        if run.nodes == 1:
            hint = "Check the NVLink/NVSwitch state (`nvidia-smi nvlink -s`, `nvidia-smi topo -m`) and GPU clocks."
        elif transport == "socket":
            hint = "NCCL ran over Socket (TCP), not EFA: fix the network path first (see the EFA check)."
        else:
            hint = (f"The network path is {transport or 'unknown'}: check that all EFA interfaces are requested, that "
                    f"the nodes share a placement group / spine, and the NCCL_* and FI_* settings in the MPIJob.")
        return Verdict.failed(subject, expected, f"{detail}; peak {peak:g} GB/s{frac} ({source})", hint,
                              summary="NCCL all_reduce bus bandwidth below the profile floor", **kw)
    if (unknown := launch_not_shown(run, subject, **kw)) is not None:
        return unknown
    if not floors:
        return Verdict.not_shown(
            subject, f"bandwidth recorded, not judged: the profile has no floor for {run.nodes} node(s) of "
            f"{run.instance_type}; peak {peak:g} GB/s", f"set {source}.all_reduce_busbw_floor_gbs.{run.nodes}", **kw)
    return Verdict.passed(subject, expected, f"peak {peak:g} GB/s", **kw)
