"""Judges for NCCL all-reduce runs: which nodes to run on, then correctness, network path and bus bandwidth
against the profile's floors and the physical ceiling (pure: a parsed run and the profile in, a Verdict out)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from pytest_gpucluster.checks.verdict import Criterion, Verdict
from pytest_gpucluster.parsers import NcclCollective, NcclResult, ParseError, parse_nccl
from pytest_gpucluster.parsers.nccl_log import TEST_FAILURE

if TYPE_CHECKING:
    from pytest_gpucluster.kube.discovery import NodeInfo
    from pytest_gpucluster.profile import InstanceProfile

EFA_RESOURCE = "vpc.amazonaws.com/efa"
DEFAULT_MAX_BYTES = 2 << 30                   # -e 2G unless the profile judges a larger size

# aws-ofi-nccl giving up at start-up (no EFA device in the pod, no usable provider): NCCL then goes on without the
# plugin. Inside one node that is harmless (NVLink / shared memory carry the traffic); across nodes it is why NCCL
# fell back to Socket. Lines as aws-ofi-nccl 1.x prints them (nccl_net_ofi_create_plugin / nccl_net_ofi_init).
PLUGIN_STARTUP_WARNS = (
    re.compile(r"NET/OFI Unable to find a protocol that worked"),
    re.compile(r"NET/OFI aws-ofi-nccl initialization failed"),
    re.compile(r"NET/OFI Initializing plugin failed"),
)


def size_arg(nbytes: int) -> str:
    """1073741824 -> 1G, as nccl-tests arguments and the profile write sizes."""
    for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if nbytes % factor == 0:
            return f"{nbytes // factor}{unit}"
    return str(nbytes)


# -- which nodes ---------------------------------------------------------------------------------------------
def gpus_of(node: NodeInfo) -> int:
    return node.gpus_allocatable or node.expected_gpus


def single_node_targets(nodes: Iterable[NodeInfo], every: bool) -> list[NodeInfo]:
    """Every GPU node, or the first (by name) of each instance type."""
    ordered = sorted(nodes, key=lambda n: n.name)
    if every:
        return ordered
    first: dict[str, NodeInfo] = {}
    for node in ordered:
        first.setdefault(node.instance_type, node)
    return [first[t] for t in sorted(first)]


ZONE_LABEL = "topology.kubernetes.io/zone"
# EC2 instance topology (DescribeInstanceTopology, labelled by the EKS node-labeller / Karpenter): nodes under the
# same network nodes are fewer hops apart. Layer 1 is the top of the tree, layer 3 the switch nearest the node.
NETWORK_LAYER_LABELS = tuple(f"topology.k8s.aws/network-node-layer-{i}" for i in (1, 2, 3))


@dataclass(frozen=True)
class NodeGroup:
    """The nodes of one multi-node job: `count` EFA GPU nodes of one instance type, one availability zone."""

    instance_type: str
    nodes: tuple[NodeInfo, ...]

    @property
    def id(self) -> str:
        return f"{'+'.join(n.name for n in self.nodes)}/{self.instance_type}"

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n.name for n in self.nodes)


@dataclass
class Coverage:
    """Which EFA GPU nodes take part in a multi-node run, and why the others do not (evidence for the report)."""

    shown: dict[str, list[str]] = field(default_factory=dict)          # instance type -> node names
    not_shown: dict[str, dict[str, str]] = field(default_factory=dict)  # instance type -> node name -> why
    mode: dict[str, str] = field(default_factory=dict)                 # instance type -> all | sample

    def text(self, instance_type: str) -> str:
        shown = self.shown.get(instance_type, [])
        missing = [f"{n} ({why})" for n, why in sorted(self.not_shown.get(instance_type, {}).items())]
        out = (f"{instance_type}: {len(shown)} node(s) in a multi-node run (coverage "
               f"{self.mode.get(instance_type, 'all')}): {', '.join(shown) or '-'}")
        return out + (f"; not shown: {'; '.join(missing)}" if missing else "")


def _partition_key(node: NodeInfo) -> tuple[str, ...]:
    return (node.zone or node.labels.get(ZONE_LABEL) or "",)


def _chunks(nodes: list[NodeInfo], count: int) -> list[tuple[NodeInfo, ...]]:
    """Disjoint groups of `count` in order; a remainder joins the nodes before it (one group overlaps), so every
    node takes part in at least one run."""
    groups = [tuple(nodes[i:i + count]) for i in range(0, len(nodes) - len(nodes) % count, count)]
    rest = nodes[len(nodes) - len(nodes) % count:] if len(nodes) % count else []
    if rest and groups:
        groups.append(tuple(nodes[len(nodes) - count:]))
    return groups


def multi_node_groups(efa_nodes: Iterable[NodeInfo], count: int, coverage: dict[str, str] | None = None
                      ) -> tuple[list[NodeGroup], str, Coverage]:
    """The node groups of the multi-node runs, per instance type (ready, schedulable EFA GPU nodes).

    EFA traffic does not cross availability zones, so a group never does: nodes are partitioned by
    topology.kubernetes.io/zone, and inside a zone ordered by their topology.k8s.aws/network-node-layer-*
    labels (nodes under the same network nodes become neighbours), then by name. Coverage `all` (default): every
    node of a zone with >= count nodes is in a group (disjoint groups, plus one overlapping group for a
    remainder); `sample`: the first group of each type only. Returns (groups, why none, coverage)."""
    modes = coverage or {}
    by_type: dict[str, list[NodeInfo]] = {}
    for node in efa_nodes:
        if node.is_gpu and node.ready and not node.unschedulable:
            by_type.setdefault(node.instance_type, []).append(node)
    groups: list[NodeGroup] = []
    cov = Coverage()
    for itype, nodes in sorted(by_type.items()):
        mode = cov.mode[itype] = modes.get(itype, "all")
        zones: dict[tuple[str, ...], list[NodeInfo]] = {}
        for node in nodes:
            zones.setdefault(_partition_key(node), []).append(node)
        typed: list[NodeGroup] = []
        for zone, members in sorted(zones.items()):
            members.sort(key=lambda n: (tuple(n.labels.get(k, "~") for k in NETWORK_LAYER_LABELS), n.name))
            if len(members) < count:
                for n in members:
                    cov.not_shown.setdefault(itype, {})[n.name] = (f"only {len(members)} {itype} node(s) in zone "
                                                         f"{zone[0] or 'unknown'}; EFA does not cross zones")
                continue
            typed += [NodeGroup(itype, g) for g in _chunks(members, count)]
        if mode == "sample":
            for g in typed[1:]:
                for n in g.nodes:
                    if all(n not in kept.nodes for kept in typed[:1]):
                        cov.not_shown.setdefault(itype, {})[n.name] = "nccl.multi_node_coverage: sample (first group only)"
            typed = typed[:1]
        cov.shown[itype] = sorted({n.name for g in typed for n in g.nodes})
        groups += typed
    seen = ", ".join(f"{t} x{len(ns)}" for t, ns in sorted(by_type.items())) or "none"
    why = (f"multi-node NCCL needs {count} ready EFA GPU nodes of one instance type in one availability zone; "
           f"found {seen}")
    return groups, why, cov


def waves(groups: Sequence[NodeGroup]) -> list[list[NodeGroup]]:
    """Groups in rounds whose node sets are disjoint: each round's MPIJobs run at once."""
    out: list[list[NodeGroup]] = []
    for group in groups:
        for wave in out:
            if all(not (group.names & g.names) for g in wave):
                wave.append(group)
                break
        else:
            out.append([group])
    return out


def efa_missing(group: NodeGroup) -> str | None:
    """Why the group cannot run over EFA right now (a node advertises no EFA device), else None."""
    bare = [n for n in group.nodes if n.efa_allocatable <= 0]
    if not bare:
        return None
    names = ", ".join(f"{n.name} (0 {EFA_RESOURCE} allocatable, profile expects {n.expected_efa})" for n in bare)
    return (f"not run: {names}; an MPIJob requesting EFA would never schedule there. Check the EFA device plugin on "
            f"the node (it must tolerate the GPU taint) - see test_efa")


def cannot_run(group: NodeGroup, gpus_now: Mapping[str, int]) -> str | None:
    """Why the group's MPIJob could never schedule right now (a node advertises no EFA device, or fewer GPUs than
    a worker asks for: its device plugin is down or unhealthy), else None: such a job is not submitted, so the
    check fails at once instead of waiting out the MPIJob's deadline."""
    if (why := efa_missing(group)) is not None:
        return why
    wanted = min(gpus_of(n) for n in group.nodes)
    short = [n for n in group.nodes if gpus_now.get(n.name, wanted) < wanted]
    if not short:
        return None
    names = ", ".join(f"{n.name} ({gpus_now.get(n.name, 0)} nvidia.com/gpu from a healthy device plugin, a worker "
                      f"asks for {wanted})" for n in short)
    return (f"not run: {names}; an MPIJob worker would never schedule there. Check the NVIDIA device plugin on the "
            f"node - see test_nvidia_device_plugin_runs_on")


def max_bytes(inst: InstanceProfile | None, nodes: int) -> int:
    """The largest message size to run: 2G, or the largest size the profile has a floor for."""
    sizes = list((inst.nccl_floors.get(nodes) or {}) if inst else {})
    return max([DEFAULT_MAX_BYTES, *sizes])


# -- what a run produced ---------------------------------------------------------------------------------------
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

    @property
    def table(self) -> NcclCollective | None:
        return self.result.collective("all_reduce") if self.result is not None else None

    @property
    def warnings(self) -> list[str]:
        return list(self.result.log.warnings) if self.result is not None else []


def is_plugin_startup_warn(line: str) -> bool:
    return any(p.search(line) for p in PLUGIN_STARTUP_WARNS)


def classify_warnings(run: NcclRun) -> tuple[list[str], list[str]]:
    """(benign, telling) NCCL WARN lines. aws-ofi-nccl start-up failures are benign on one node; across nodes
    they, like every other WARN line, may tell why a run failed or fell back to Socket."""
    benign = [w for w in run.warnings if run.nodes == 1 and is_plugin_startup_warn(w)]
    return benign, [w for w in run.warnings if w not in benign]


def warnings_text(run: NcclRun) -> str:
    """The WARN lines with their classification, for the report."""
    benign, telling = classify_warnings(run)
    return "\n".join([*(f"[benign start-up: aws-ofi-nccl gave up, NCCL went on over NVLink/shm] {w}" for w in benign),
                      *(f"[may explain a failure] {w}" for w in telling)])


def _warn_facts(run: NcclRun) -> dict[str, Any]:
    benign, telling = classify_warnings(run)
    return {"nccl_warn_benign": len(benign), "nccl_warn_telling": len(telling)} if run.warnings else {}


def _first(lines: Sequence[str]) -> str:
    return f"{lines[0]!r}" + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "")


def no_result(run: NcclRun) -> Verdict | None:
    """FAIL when there is nothing to judge (pod/job failure without a table, unparseable log), else None."""
    if run.table is not None:
        return None
    why = run.outcome or run.parse_error or "the log holds no all_reduce_perf result table"
    tail = "\n".join(run.log.strip().splitlines()[-5:])
    _, telling = classify_warnings(run)
    warn = f"; NCCL WARN lines: {_first(telling)}" if telling else ""
    return Verdict.failed(f"all_reduce_perf on {run.where} produced no result", "a result table",
                          f"{why}{warn}" + (f"\nlast log lines:\n{tail}" if tail else ""), facts=_warn_facts(run))


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


def judge_correctness(run: NcclRun) -> Verdict:
    """PASS when the run finished cleanly with no wrong elements."""
    missing = no_result(run)
    if missing is not None:
        return missing
    problems = correctness_problems(run)
    _, telling = classify_warnings(run)
    if problems and telling:
        problems.append(f"NCCL WARN lines: {_first(telling)}")
    return Verdict.from_problems(
        f"{run.where} ({run.ranks} ranks)", "#wrong 0, 'Out of bounds values : 0 OK' and no 'Test failure' lines",
        problems, "Wrong sums point at a GPU or NVLink/EFA data-path fault: check `nvidia-smi -q -d ECC` and "
        "`dmesg | grep -i xid` on the nodes, then rerun on each node alone to isolate it.",
        observed_ok="#wrong 0 at every size, no out-of-bounds values, exit code 0",
        summary="all_reduce results are wrong" if problems else "", facts=_warn_facts(run))


# -- network path ------------------------------------------------------------------------------------------------
def judge_network(run: NcclRun, inst: InstanceProfile | None) -> Verdict:
    """Across nodes on EFA instance types: OFI/Libfabric with provider efa, and GPUDirect RDMA where the
    profile says the type has it. A Socket fallback fails whatever the bandwidth."""
    if (missing := no_result(run)) is not None:
        return missing
    assert run.result is not None
    log = run.result.log
    observed = (f"transport {run.result.transport or 'unknown'}, networks {log.networks or log.channel_nets or '-'}, "
                f"OFI provider {log.ofi_provider or '-'}, GPUDirect RDMA channels {log.gdrdma_channels}/{log.net_channels}")
    facts = {**_warn_facts(run), "transport": run.result.transport, "gdrdma": run.result.gdrdma}
    if run.result.transport != "efa" or (log.ofi_provider or "efa") != "efa":
        startup = [w for w in run.warnings if is_plugin_startup_warn(w)]
        why = f"; aws-ofi-nccl did not start: {_first(startup)}" if startup else ""
        return Verdict.failed(
            run.where, "'Using network Libfabric' / 'Selected provider is efa' in the NCCL_DEBUG=INFO log",
            observed + why,
            f"A fallback to Socket runs over the instance's TCP network: check that the workers request "
            f"{EFA_RESOURCE} (EFA device plugin running and tolerating the GPU taint), FI_PROVIDER=efa, and that "
            f"the image ships aws-ofi-nccl (look for 'NET/Plugin' and 'NET/OFI' lines in the launcher log).",
            summary="NCCL did not use EFA", facts=facts)
    if inst is not None and inst.gdrdma and not run.result.gdrdma:
        return Verdict.failed(
            run.where, f"channels 'via NET/Libfabric/N/GDRDMA' ({run.instance_type} supports it, profile gdrdma: true)",
            observed, "Check FI_EFA_USE_DEVICE_RDMA, the EFA driver (efa_nv_peermem / dmabuf) and the aws-ofi-nccl "
            "version.", summary="NCCL runs EFA without GPUDirect RDMA", facts=facts)
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
    floor and the implausibility ceiling, and the peak as a share of the physical ceiling."""
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
        out.append(Criterion("peak busbw / physical ceiling", round(100 * peak / ceiling, 1), "%",
                             source=f"algorithmic ceiling {ceiling:.1f} GB/s: {how} (docs/nccl.md)"))
    return out


def judge_bandwidth(run: NcclRun, inst: InstanceProfile | None) -> Verdict:
    """Out-of-place bus bandwidth at the profile's sizes against its floors for that node count; NOT_SHOWN when
    the profile has no floor (recorded, not judged)."""
    if (missing := no_result(run)) is not None:
        return missing
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
    if not floors:
        return Verdict.not_shown(
            subject, f"bandwidth recorded, not judged: the profile has no floor for {run.nodes} node(s) of "
            f"{run.instance_type}; peak {peak:g} GB/s", f"set {source}.all_reduce_busbw_floor_gbs.{run.nodes}", **kw)
    return Verdict.passed(subject, expected, f"peak {peak:g} GB/s", **kw)
