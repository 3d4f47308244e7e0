"""One NCCL all_reduce_perf run as the judges see it (NcclRun), its NCCL WARN lines, and whether its log is the
job that was launched: ranks and hosts against the nodes and GPUs of the run (pure)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from pytest_gpucluster.checks.verdict import Verdict
from pytest_gpucluster.parsers import NcclCollective, NcclResult, ParseError, parse_nccl

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


@dataclass
class NcclRun:
    """One all_reduce_perf run (a probe pod or an MPIJob launcher) and what its log says.

    `node_names` are the nodes the run was meant to cover and `hosts` maps the host names the ranks print
    (`# Rank N ... on <host>`: the pod's hostname) to the node each pod ran on; the judges compare the two."""

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
    node_names: tuple[str, ...] = ()
    hosts: dict[str, str] = field(default_factory=dict)

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


def warn_facts(run: NcclRun) -> dict[str, Any]:
    benign, telling = classify_warnings(run)
    return {"nccl_warn_benign": len(benign), "nccl_warn_telling": len(telling)} if run.warnings else {}


def first_of(lines: Sequence[str]) -> str:
    return f"{lines[0]!r}" + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "")


# CUDA's cudaErrorNoKernelImageForDevice text: NCCL WARNs it ("Cuda failure '...'") when the image holds no code
# for the GPU, and nccl-tests' NCCLCHECK repeats it (docs/nccl.md "Images and GPU architectures").
NO_KERNEL = "no kernel image is available for execution on the device"
COMPUTE_CAP = "gpu compute capability"       # facts key: from the nodes' nvidia.com/gpu.compute.* labels


def no_kernel(run: NcclRun) -> Verdict | None:
    """NOT SHOWN when the run's image has no kernels for the GPU: NCCL cannot run there with this image, which says
    nothing about the cluster (AWS's nccl-tests image holds code for compute capability 8.0-10.0: no T4, no RTX
    PRO 6000 Blackwell). Else None."""
    if run.table is not None or NO_KERNEL not in run.log:
        return None
    cc = str(run.facts.get(COMPUTE_CAP) or "")
    product = run.facts.get("gpu product")
    target = (f"sm_{cc.replace('.', '')} ({product or 'the GPU'}, compute capability {cc})" if cc
              else "this GPU (compute capability unknown: the node has no nvidia.com/gpu.compute.* labels)")
    family = run.instance_type.split(".")[0]
    return Verdict.not_shown(
        f"all_reduce_perf on {run.where}",
        f"this image has no kernels for {target}: NCCL reported '{NO_KERNEL}' at its first collective",
        f"set families.{family}.nccl.image (or instances.{run.instance_type}.nccl.image) in your profile to an "
        f"nccl-tests image whose NCCL and nccl-tests are built for it (NVCC_GENCODE "
        f"-gencode=arch=compute_{cc.replace('.', '') or 'XY'},code=sm_{cc.replace('.', '') or 'XY'}) - see docs/nccl.md",
        facts=warn_facts(run))


def no_result(run: NcclRun) -> Verdict | None:
    """FAIL when there is nothing to judge (pod/job failure without a table, unparseable log), else None; NOT SHOWN
    when the image cannot run on the GPU (no_kernel)."""
    if run.table is not None:
        return None
    if (unfit := no_kernel(run)) is not None:
        return unfit
    why = run.outcome or run.parse_error or "the log holds no all_reduce_perf result table"
    tail = "\n".join(run.log.strip().splitlines()[-5:])
    _, telling = classify_warnings(run)
    warn = f"; NCCL WARN lines: {first_of(telling)}" if telling else ""
    return Verdict.failed(f"all_reduce_perf on {run.where} produced no result", "a result table",
                          f"{why}{warn}" + (f"\nlast log lines:\n{tail}" if tail else ""), facts=warn_facts(run))


# -- is the log the job? ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Launch:
    """What the log says about who ran: `problems` contradict the job (ranks or hosts), `unknown` says why the log
    cannot be compared with it ("" when it can)."""

    problems: tuple[str, ...]
    unknown: str
    observed: str


def launch_of(run: NcclRun) -> Launch:
    """Compare the ranks nccl-tests printed (`# Rank N ... on <host>` lines, else NCCL's `nranks`) with the job:
    ranks == nodes x GPUs per node, and the hosts of the ranks == the run's nodes. A job whose ranks all landed on
    one node (a hostfile or -N that is not what was rendered) produces a valid-looking table of the wrong thing."""
    coll, result = run.table, run.result
    assert coll is not None and result is not None
    printed = coll.ranks or result.log.nranks
    names = sorted(set(coll.rank_hosts.values()))
    problems: list[str] = []
    if printed is not None and printed != run.ranks:
        problems.append(f"the log shows {printed} ranks; the job is {run.nodes} node(s) x {run.gpus_per_node} GPUs "
                        f"= {run.ranks}")
    if names and run.hosts:
        strangers = [h for h in names if h not in run.hosts]
        if strangers:
            problems.append(f"ranks on host(s) that are not the job's pods: {', '.join(strangers)}")
        covered = {run.hosts[h] for h in names if h in run.hosts}
        wanted = set(run.node_names) or set(run.hosts.values())
        if covered != wanted:
            missing, extra = sorted(wanted - covered), sorted(covered - wanted)
            problems.append("; ".join([*([f"no rank on node(s) {', '.join(missing)}"] if missing else []),
                                       *([f"ranks on node(s) outside the run: {', '.join(extra)}"] if extra else [])]))
    elif names and len(names) != run.nodes:
        problems.append(f"ranks on {len(names)} host(s) ({', '.join(names)}); the job has {run.nodes} node(s)")
    unknown = ("" if printed is not None and names else
               "the log names no ranks ('# Rank N ... on <host>' lines) to compare with the job" if printed is None
               else "the log names no rank's host ('# Rank N ... on <host>' lines) to compare with the job's nodes")
    shown = f"{printed if printed is not None else '?'} ranks on {', '.join(names) or 'unnamed hosts'}"
    return Launch(tuple(problems), unknown, shown)


def not_the_job(run: NcclRun) -> Verdict | None:
    """FAIL when the log contradicts the job that was launched (its results describe something else), else None."""
    launch = launch_of(run)
    if not launch.problems:
        return None
    return Verdict.failed(
        run.where, f"{run.ranks} ranks ({run.nodes} node(s) x {run.gpus_per_node} GPUs) on "
        f"{', '.join(run.node_names) or f'{run.nodes} host(s)'}", "; ".join(launch.problems) + f" ({launch.observed})",
        "The job was not launched as rendered: check the MPIJob's hostfile (slotsPerWorker, worker replicas) and "
        "mpirun's -np/-N in the launcher command; results of another shape say nothing about these nodes.",
        summary="all_reduce_perf did not run the job", facts=warn_facts(run))


def launch_not_shown(run: NcclRun, subject: str, **kw: Any) -> Verdict | None:
    """NOT SHOWN when the log cannot be compared with the job (no rank lines), else None."""
    launch = launch_of(run)
    if not launch.unknown:
        return None
    return Verdict.not_shown(subject, launch.unknown, "run all_reduce_perf unfiltered: nccl-tests prints one "
                             "'# Rank N Group G Pid P on <host> device D' line per rank before its table", **kw)
