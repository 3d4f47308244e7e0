"""NCCL all-reduce (marker nccl): single-node probe pods and multi-node MPIJobs, judged on correctness, network path, bandwidth."""
from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest
import yaml

from pytest_gpucluster.evidence import Evidence
from pytest_gpucluster.kube import errors
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory, NodeInfo
from pytest_gpucluster.kube.probes import (
    EFA_RESOURCE, GPU_RESOURCE, HOSTNAME_LABEL, MANAGED_BY, RUN_LABEL, ProbeResult, ProbeSpec, label_value,
    manifests_dir,
)
from pytest_gpucluster.kube.watching import DeadlineExceeded, eventually
from pytest_gpucluster.parsers import NcclResult, ParseError, parse_nccl
from pytest_gpucluster.profile import InstanceProfile, Profile, parse_size
from pytest_gpucluster.run import RUN_KEY, Run

pytestmark = pytest.mark.nccl

MPIJOB = "mpijobs.kubeflow.org"
MPIJOB_MANIFEST = "mpijob-nccl.yaml"
PERF = "/opt/nccl-tests/build/all_reduce_perf"
DEFAULT_MAX_BYTES = 2 << 30                   # -e 2G unless the profile judges a larger size
SINGLE_NODE_MEMORY = "16Gi"                   # host memory of the single-node pod (8 GPU contexts + buffers)
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
JOB_ROLE_LABEL = "training.kubeflow.org/job-role"
MPI_INSTALL_HINT = ("install the Kubeflow MPI operator (v2beta1): kubectl apply --server-side -f "
                    "https://raw.githubusercontent.com/kubeflow/mpi-operator/v0.6.0/deploy/v2beta1/mpi-operator.yaml")
# Options (--gpucluster-nccl-nodes, --gpucluster-nccl-every-node, or their ini keys), else the environment.
NODES_OPTION = ("gpucluster_nccl_nodes", "GPUCLUSTER_NCCL_NODES", "2")
EVERY_NODE_OPTION = ("gpucluster_nccl_every_node", "GPUCLUSTER_NCCL_EVERY_NODE", "")


def _option(config: pytest.Config, spec: tuple[str, str, str]) -> str:
    dest, env, default = spec
    value = config.getoption(dest, default=None)
    if value in (None, ""):
        value = config.getini(dest)
    return str(value) if value not in (None, "") else os.environ.get(env, default)


def node_count(config: pytest.Config) -> int:
    raw = _option(config, NODES_OPTION)
    if not raw.isdigit() or int(raw) < 2:
        raise pytest.UsageError(f"{NODES_OPTION[1]} (multi-node NCCL node count) must be an integer >= 2, given: {raw!r}")
    return int(raw)


# -- which nodes -----------------------------------------------------------------------------------------
def single_node_targets(nodes: list[NodeInfo], every: bool) -> list[NodeInfo]:
    """Every GPU node, or the first (by name) of each instance type."""
    if every:
        return sorted(nodes, key=lambda n: n.name)
    first: dict[str, NodeInfo] = {}
    for node in sorted(nodes, key=lambda n: n.name):
        first.setdefault(node.instance_type, node)
    return [first[t] for t in sorted(first)]


@dataclass(frozen=True)
class NodeGroup:
    """The nodes of one multi-node job: `count` EFA GPU nodes of one instance type."""

    instance_type: str
    nodes: tuple[NodeInfo, ...]

    @property
    def id(self) -> str:
        return f"{'+'.join(n.name for n in self.nodes)}/{self.instance_type}"


def multi_node_groups(inventory: Inventory, count: int) -> tuple[list[NodeGroup], str]:
    """One group per instance type with >= count EFA GPU nodes; else ([], why not)."""
    by_type: dict[str, list[NodeInfo]] = {}
    for node in inventory.efa_nodes:
        if node.is_gpu and node.ready and not node.unschedulable:
            by_type.setdefault(node.instance_type, []).append(node)
    groups = [NodeGroup(t, tuple(sorted(ns, key=lambda n: n.name)[:count]))
              for t, ns in sorted(by_type.items()) if len(ns) >= count]
    seen = ", ".join(f"{t} x{len(ns)}" for t, ns in sorted(by_type.items())) or "none"
    return groups, f"multi-node NCCL needs {count} ready EFA GPU nodes of one instance type; found {seen}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`nccl_node`: one GPU node per instance type (every node with GPUCLUSTER_NCCL_EVERY_NODE=1);
    `nccl_group`: the node groups of the multi-node job. Ids name the nodes and instance type."""
    if not {"nccl_node", "nccl_group"} & set(metafunc.fixturenames):
        return
    run: Run = metafunc.config.stash[RUN_KEY]
    inventory = run.discover_inventory()
    if "nccl_node" in metafunc.fixturenames:
        every = _option(metafunc.config, EVERY_NODE_OPTION).lower() in ("1", "true", "yes")
        nodes = single_node_targets(inventory.gpu_nodes, every)
        if nodes:
            metafunc.parametrize("nccl_node", nodes, ids=[n.id for n in nodes])
        else:
            metafunc.parametrize("nccl_node", [pytest.param(None, marks=pytest.mark.skip(
                reason=f"no GPU nodes in the cluster ({len(inventory.all_nodes)} nodes discovered)"))],
                ids=["no-gpu-nodes"])
    if "nccl_group" in metafunc.fixturenames:
        groups, why = multi_node_groups(inventory, node_count(metafunc.config))
        if groups:
            metafunc.parametrize("nccl_group", groups, ids=[g.id for g in groups])
        else:
            metafunc.parametrize("nccl_group", [pytest.param(None, marks=pytest.mark.skip(reason=why))],
                                 ids=["no-efa-node-group"])


# -- what a run produced ---------------------------------------------------------------------------------
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


def tolerations_for(nodes: list[NodeInfo] | tuple[NodeInfo, ...], profile: Profile) -> list[dict[str, str]]:
    """The profile's GPU tolerations plus one per NoSchedule/NoExecute taint of the nodes under test."""
    out = list(profile.gpu_tolerations())
    for node in nodes:
        for taint in node.taints:
            if taint.get("effect") not in ("NoSchedule", "NoExecute"):
                continue
            tol = {"key": taint["key"], "operator": "Exists", "effect": taint["effect"]}
            if tol not in out and {"key": taint["key"], "operator": "Exists"} not in out:
                out.append(tol)
    return out


def max_bytes(inst: InstanceProfile | None, nodes: int) -> int:
    sizes = list((inst.nccl_floors.get(nodes) or {}) if inst else {})
    return max([DEFAULT_MAX_BYTES, *sizes])


def size_arg(nbytes: int) -> str:
    for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if nbytes % factor == 0:
            return f"{nbytes // factor}{unit}"
    return str(nbytes)


def gpus_of(node: NodeInfo) -> int:
    return node.gpus_allocatable or node.expected_gpus


# -- single node: probe pods through run_fleet ------------------------------------------------------------
@pytest.fixture(scope="module")
def single_node_runs(gpucluster_run: Run, inventory: Inventory, gpu_profile: Profile,
                     run_fleet: Callable[[str, Mapping[str, ProbeSpec]], dict[str, ProbeResult]],
                     pytestconfig: pytest.Config) -> Callable[[NodeInfo], NcclRun]:
    """Factory: the single-node run of a node. The first call runs every target node at once (one fleet)."""
    every = _option(pytestconfig, EVERY_NODE_OPTION).lower() in ("1", "true", "yes")
    targets = [n for n in single_node_targets(inventory.gpu_nodes, every) if gpus_of(n) >= 2]
    commands: dict[str, str] = {}
    specs: dict[str, ProbeSpec] = {}
    for node in targets:
        gpus = gpus_of(node)
        argv = [PERF, "-b", "8", "-e", size_arg(max_bytes(gpu_profile.for_instance(node.instance_type), 1)),
                "-f", "2", "-g", str(gpus), "-c", "1"]
        commands[node.name] = " ".join(argv)
        specs[node.name] = ProbeSpec(
            name="nccl-single-node", command=argv, node=node.name, image=gpucluster_run.options.nccl_image,
            gpus=gpus, memory=SINGLE_NODE_MEMORY, ipc_lock=True, env={"NCCL_DEBUG": "INFO"},
            tolerations=tolerations_for([node], gpu_profile))

    def get(node: NodeInfo) -> NcclRun:
        results = run_fleet("nccl-single-node", specs)
        probe = results[node.name]
        run = NcclRun(node.id, node.instance_type, 1, gpus_of(node), commands[node.name], log=probe.logs,
                      facts={"pod": f"{probe.namespace}/{probe.pod}", "phase": probe.phase,
                             "exit_code": probe.exit_code})
        if not probe.ok:
            run.outcome = (f"{probe.describe()} - see `kubectl -n {probe.namespace} logs {probe.pod}` and "
                           f"`kubectl -n {probe.namespace} describe pod {probe.pod}`")
        return run.parse()

    return get


# -- multi node: an MPIJob ---------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def _mpijob_template(path: str) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("kind") != "MPIJob":
        raise ValueError(f"{path}: expected a kubeflow.org/v2beta1 MPIJob manifest")
    return data


def _set_flag(argv: list[str], flag: str, value: str) -> None:
    """Set the value after `flag` (the last occurrence: the perf binary's flags follow mpirun's)."""
    idx = max(i for i, a in enumerate(argv) if a == flag)
    argv[idx + 1] = value


def hugepages_for(nodes: tuple[NodeInfo, ...], wanted: str) -> str | None:
    """The manifest's hugepages-2Mi request, lowered to what every node offers; None when one offers none."""
    offered = min(parse_size(n.allocatable.get("hugepages-2Mi", "0").replace("Mi", "M").replace("Gi", "G"))
                  for n in nodes)
    want = parse_size(wanted.replace("Mi", "M").replace("Gi", "G"))
    if offered <= 0:
        return None
    return wanted if offered >= want else f"{offered >> 20}Mi"


def render_mpijob(group: NodeGroup, *, name: str, namespace: str, run_id: str, image: str, gpus: int, efa: int,
                  max_size: int, deadline_s: int, tolerations: list[dict[str, str]]) -> dict[str, Any]:
    """Fill fixtures/mpijob-nccl.yaml for one node group (values set as data, never spliced into text)."""
    job = copy.deepcopy(_mpijob_template(str(manifests_dir() / MPIJOB_MANIFEST)))
    meta = job["metadata"]
    meta["name"], meta["namespace"] = name, namespace
    run_labels = {MANAGED_BY[0]: MANAGED_BY[1], RUN_LABEL: run_id}
    meta["labels"].update(run_labels)
    spec = job["spec"]
    spec["slotsPerWorker"] = gpus
    spec["runPolicy"]["activeDeadlineSeconds"] = deadline_s
    launcher = spec["mpiReplicaSpecs"]["Launcher"]["template"]
    worker = spec["mpiReplicaSpecs"]["Worker"]
    worker["replicas"] = len(group.nodes)
    for template in (launcher, worker["template"]):
        template["metadata"]["labels"].update(run_labels)
        template["spec"]["tolerations"] = list(tolerations)
        for container in template["spec"]["containers"]:
            container["image"] = image
    argv = launcher["spec"]["containers"][0]["command"]
    _set_flag(argv, "-np", str(len(group.nodes) * gpus))
    _set_flag(argv, "-N", str(gpus))
    _set_flag(argv, "-e", size_arg(max_size))
    wspec = worker["template"]["spec"]
    wspec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [n.name for n in group.nodes]}]}]}}}
    resources = wspec["containers"][0]["resources"]
    hugepages = hugepages_for(group.nodes, str(resources["requests"].get("hugepages-2Mi", "0")))
    for part in (resources["requests"], resources["limits"]):
        part[GPU_RESOURCE], part[EFA_RESOURCE] = str(gpus), str(efa)
        if hugepages is None:
            part.pop("hugepages-2Mi", None)
        else:
            part["hugepages-2Mi"] = hugepages
    return job


def job_name(group: NodeGroup, run_id: str) -> str:
    digest = hashlib.sha256(f"{run_id}/{group.id}".encode()).hexdigest()[:8]
    return f"gc-nccl-{label_value(group.instance_type.replace('.', '-')).lower()}-{digest}"[:52]


def _finished(job: dict[str, Any]) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Succeeded", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def _condition_text(job: dict[str, Any]) -> str:
    conds = (job.get("status") or {}).get("conditions") or []
    return "; ".join(f"{c.get('type')}={c.get('status')} ({c.get('reason', '')}: {c.get('message', '')})"
                     for c in conds) or "no status conditions (the MPI operator never reconciled the job)"


def _pending_workers(cluster: Cluster, namespace: str, name: str) -> str:
    """Why workers are not running: phases and the latest FailedScheduling message of each."""
    pods = cluster.items("pods", namespace, label_selector=f"{JOB_NAME_LABEL}={name}")
    out = []
    for pod in pods:
        pname = pod["metadata"]["name"]
        phase = (pod.get("status") or {}).get("phase", "Pending")
        events = [e for e in cluster.events_for(namespace, pname) if e.get("reason") == "FailedScheduling"]
        why = f": {events[-1].get('message')}" if events and phase == "Pending" else ""
        out.append(f"{pname} {phase}{why}")
    return "; ".join(out) or "no pods were created"


def run_mpijob(cluster: Cluster, gpucluster_run: Run, group: NodeGroup, profile: Profile) -> NcclRun:
    """Create the MPIJob, wait for it to finish (one watch), read the launcher's log."""
    namespace, run_id = gpucluster_run.namespace, gpucluster_run.run_id
    first = group.nodes[0]
    gpus, efa = min(gpus_of(n) for n in group.nodes), min(n.efa_allocatable or n.expected_efa for n in group.nodes)
    inst = profile.for_instance(group.instance_type)
    timeout = gpucluster_run.options.timeout_s
    name = job_name(group, run_id)
    job = render_mpijob(group, name=name, namespace=namespace, run_id=run_id,
                        image=gpucluster_run.options.nccl_image, gpus=gpus, efa=efa,
                        max_size=max_bytes(inst, len(group.nodes)), deadline_s=int(timeout),
                        tolerations=tolerations_for(group.nodes, profile))
    launcher_cmd = " ".join(job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"])
    run = NcclRun(group.id, group.instance_type, len(group.nodes), gpus, launcher_cmd,
                  facts={"mpijob": f"{namespace}/{name}", "efa_per_worker": efa, "first_node": first.name},
                  manifest=yaml.safe_dump(job, sort_keys=False))
    cluster.create(MPIJOB, job, namespace)
    try:
        final = eventually(cluster, MPIJOB, namespace, lambda jobs: name in jobs and bool(_finished(jobs[name])),
                           timeout_s=timeout + 30, description=f"MPIJob {name} to succeed or fail",
                           label_selector=f"{RUN_LABEL}={run_id}")[name]
    except DeadlineExceeded:
        current = cluster.get_or_none(MPIJOB, name, namespace) or {}
        run.outcome = (f"MPIJob {namespace}/{name} did not finish within {timeout + 30:.0f}s: "
                       f"{_condition_text(current)}; workers: {_pending_workers(cluster, namespace, name)} - check "
                       f"`kubectl -n {namespace} describe mpijob {name}` and that the mpi-operator pods run")
        return run
    launchers = cluster.items("pods", namespace, label_selector=f"{JOB_NAME_LABEL}={name},{JOB_ROLE_LABEL}=launcher")
    launchers.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
    if launchers:
        pod = launchers[-1]["metadata"]["name"]
        run.facts["launcher_pod"] = f"{namespace}/{pod}"
        try:
            run.log = cluster.logs(pod, namespace)
        except errors.NotFound:
            run.log = ""
    if _finished(final) != "Succeeded":
        pod_ref = run.facts.get("launcher_pod", f"{namespace}/{name}-launcher")
        run.outcome = (f"MPIJob {namespace}/{name} failed: {_condition_text(final)} - see "
                       f"`kubectl -n {namespace} logs {str(pod_ref).split('/', 1)[1]}`")
    return run.parse()


@pytest.fixture(scope="module")
def mpi_operator(cluster: Cluster, gpucluster_run: Run) -> None:
    """Skip (with the install hint) when the cluster does not serve kubeflow.org/v2beta1 MPIJobs."""
    try:
        cluster.list(MPIJOB, gpucluster_run.namespace)
    except errors.NotFound:
        pytest.skip(f"multi-node NCCL skipped: the MPI operator is not installed (no {MPIJOB}/v2beta1 API); "
                    f"{MPI_INSTALL_HINT}")


@pytest.fixture(scope="module")
def multi_node_runs(cluster: Cluster, gpucluster_run: Run, gpu_profile: Profile,
                    mpi_operator: None) -> Callable[[NodeGroup], NcclRun]:
    """Factory: the MPIJob run of a node group, run once per module and shared by its tests."""
    cache: dict[str, NcclRun] = {}

    def get(group: NodeGroup) -> NcclRun:
        if group.id not in cache:
            cache[group.id] = run_mpijob(cluster, gpucluster_run, group, gpu_profile)
        return cache[group.id]

    return get


# -- judging -------------------------------------------------------------------------------------------------
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


def _verdict(failure: str | None, skip: str | None = None) -> None:
    if failure:
        pytest.fail(failure, pytrace=False)
    if skip:
        pytest.skip(skip)


# -- the checks ----------------------------------------------------------------------------------------------
def _single(nccl_node: NodeInfo, single_node_runs: Callable[[NodeInfo], NcclRun], evidence: Evidence) -> NcclRun:
    if gpus_of(nccl_node) < 2:
        pytest.skip(f"{nccl_node.id} has {gpus_of(nccl_node)} GPU: single-node all-reduce bus bandwidth is zero "
                    "by definition (no peer to reduce with)")
    run = single_node_runs(nccl_node)
    record(run, evidence)
    return run


def test_all_reduce_is_correct_on_one_node(nccl_node: NodeInfo, single_node_runs: Callable[[NodeInfo], NcclRun],
                                           evidence: Evidence) -> None:
    """all_reduce_perf over every GPU of the node finishes with no wrong elements."""
    _verdict(judge_correctness(_single(nccl_node, single_node_runs, evidence)))


def test_bus_bandwidth_on_one_node_meets_floor(nccl_node: NodeInfo, single_node_runs: Callable[[NodeInfo], NcclRun],
                                               gpu_profile: Profile, evidence: Evidence) -> None:
    """Out-of-place bus bandwidth inside the node at the profile's sizes, against its 1-node floor."""
    run = _single(nccl_node, single_node_runs, evidence)
    _verdict(*judge_bandwidth(run, gpu_profile.for_instance(run.instance_type), evidence))


def test_all_reduce_is_correct_across_nodes(nccl_group: NodeGroup, multi_node_runs: Callable[[NodeGroup], NcclRun],
                                            evidence: Evidence) -> None:
    """The MPIJob's all_reduce_perf (one rank per GPU, every node of the group) has no wrong elements."""
    run = multi_node_runs(nccl_group)
    record(run, evidence)
    _verdict(judge_correctness(run))


def test_nccl_uses_efa_across_nodes(nccl_group: NodeGroup, multi_node_runs: Callable[[NodeGroup], NcclRun],
                                    gpu_profile: Profile, evidence: Evidence) -> None:
    """NCCL's own log shows OFI/Libfabric with provider efa, with GPUDirect RDMA where the type supports it."""
    run = multi_node_runs(nccl_group)
    record(run, evidence)
    _verdict(judge_network(run, gpu_profile.for_instance(run.instance_type)))


def test_bus_bandwidth_across_nodes_meets_floor(nccl_group: NodeGroup, multi_node_runs: Callable[[NodeGroup], NcclRun],
                                                gpu_profile: Profile, evidence: Evidence) -> None:
    """Out-of-place bus bandwidth across the nodes at the profile's sizes, against its floor for that node count."""
    run = multi_node_runs(nccl_group)
    record(run, evidence)
    _verdict(*judge_bandwidth(run, gpu_profile.for_instance(run.instance_type), evidence))
