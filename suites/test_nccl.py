"""NCCL all-reduce (marker nccl): single-node probe pods and multi-node MPIJobs, judged on correctness, network path, bandwidth."""
from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass
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
    EFA_RESOURCE,
    GPU_RESOURCE,
    HOSTNAME_LABEL,
    MANAGED_BY,
    RUN_LABEL,
    ProbeResult,
    ProbeSpec,
    label_value,
    manifests_dir,
)
from pytest_gpucluster.kube.watching import DeadlineExceeded, eventually
from pytest_gpucluster.nccl import (
    NcclRun,
    judge_bandwidth,
    judge_correctness,
    judge_network,
    record,
    size_arg,
)
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
