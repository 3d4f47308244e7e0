"""NCCL all-reduce (marker nccl): single-node probe pods and multi-node MPIJobs, judged on correctness, network path,
bandwidth (judges: pytest_gpucluster/checks/nccl.py; the MPIJob: fixtures/mpijob-nccl.yaml, kube/mpijob.py)."""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Mapping, Sequence

import pytest
import yaml

from pytest_gpucluster import nccl
from pytest_gpucluster.checks.nccl import NcclRun, judge_bandwidth, judge_correctness, judge_network, max_bytes, size_arg
from pytest_gpucluster.checks.nccl_run import COMPUTE_CAP
from pytest_gpucluster.checks.nccl_nodes import (
    Coverage, NodeGroup, cannot_run, gpus_of, multi_node_groups, single_node_targets, waves,
)
from pytest_gpucluster.evidence import Evidence
from pytest_gpucluster.kube import mpijob
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory, NodeInfo
from pytest_gpucluster.kube.placement import tolerations_for
from pytest_gpucluster.kube.plugins import Plugins, gpus_to_request
from pytest_gpucluster.kube.probes import ProbeResult, ProbeSpec
from pytest_gpucluster.profile import Profile
from pytest_gpucluster.run import RUN_KEY, Run
from pytest_gpucluster.suite import enforce

pytestmark = pytest.mark.nccl

PERF = "/opt/nccl-tests/build/all_reduce_perf"
GFD_MAJOR, GFD_MINOR, GFD_PRODUCT = "nvidia.com/gpu.compute.major", "nvidia.com/gpu.compute.minor", "nvidia.com/gpu.product"
SINGLE_NODE_MEMORY = "16Gi"                   # host memory of the single-node pod (8 GPU contexts + buffers)


def _gpu_facts(nodes: Sequence[NodeInfo]) -> dict[str, str]:
    """The GPUs' compute capability and product from GPU Feature Discovery's node labels (what an image must carry
    kernels for); empty where GFD does not label the nodes."""
    caps = sorted({f"{n.labels[GFD_MAJOR]}.{n.labels.get(GFD_MINOR, '0')}" for n in nodes if GFD_MAJOR in n.labels})
    products = sorted({n.labels[GFD_PRODUCT] for n in nodes if GFD_PRODUCT in n.labels})
    return {**({COMPUTE_CAP: ", ".join(caps)} if caps else {}), **({"gpu product": ", ".join(products)} if products else {})}


def _image(profile: Profile, instance_type: str, default: str) -> str:
    """The nccl-tests image for a type: its profile's nccl.image (an image built for its GPUs), else the run's."""
    inst = profile.for_instance(instance_type)
    return (inst.nccl_image if inst is not None and inst.nccl_image else None) or default


def _groups(run: Run) -> tuple[list[NodeGroup], str, Coverage]:
    """The multi-node groups (zone-aware, every EFA node by default: profile nccl.multi_node_coverage)."""
    inventory = run.discover_inventory()
    modes = {n.instance_type: inst.multi_node_coverage for n in inventory.efa_nodes
             if (inst := run.profile.for_instance(n.instance_type)) is not None}
    return multi_node_groups(inventory.efa_nodes, run.options.nccl_nodes, modes)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`nccl_node`: one GPU node per instance type (every node with --gpucluster-nccl-every-node);
    `nccl_group`: the node groups of the multi-node job. Ids name the nodes and instance type."""
    if not {"nccl_node", "nccl_group"} & set(metafunc.fixturenames):
        return
    run: Run = metafunc.config.stash[RUN_KEY]
    inventory = run.discover_inventory()
    if "nccl_node" in metafunc.fixturenames:
        nodes = single_node_targets(inventory.gpu_nodes, run.options.nccl_every_node)
        if nodes:
            metafunc.parametrize("nccl_node", nodes, ids=[n.id for n in nodes])
        else:
            metafunc.parametrize("nccl_node", [pytest.param(None, marks=pytest.mark.skip(
                reason=f"no GPU nodes in the cluster ({len(inventory.all_nodes)} nodes discovered)"))],
                ids=["no-gpu-nodes"])
    if "nccl_group" in metafunc.fixturenames:
        groups, why, _ = _groups(run)
        if groups:
            metafunc.parametrize("nccl_group", groups, ids=[g.id for g in groups])
        else:
            metafunc.parametrize("nccl_group", [pytest.param(None, marks=pytest.mark.skip(reason=why))],
                                 ids=["no-efa-node-group"])


@pytest.fixture(scope="module")
def single_node_runs(gpucluster_run: Run, inventory: Inventory, gpu_profile: Profile,
                     run_fleet: Callable[[str, Mapping[str, ProbeSpec]], dict[str, ProbeResult]]
                     ) -> Callable[[NodeInfo], NcclRun]:
    """Factory: the single-node run of a node. The first call runs every target node at once (one fleet)."""
    targets = [n for n in single_node_targets(inventory.gpu_nodes, gpucluster_run.options.nccl_every_node)
               if gpus_of(n) >= 2]
    specs: dict[str, ProbeSpec] = {}
    for node in targets:
        max_size = size_arg(max_bytes(gpu_profile.for_instance(node.instance_type), 1))
        specs[node.name] = ProbeSpec(
            name="nccl-single-node", node=node.name, gpus=gpus_of(node),
            image=_image(gpu_profile, node.instance_type, gpucluster_run.options.nccl_image),
            command=[PERF, "-b", "8", "-e", max_size, "-f", "2", "-g", str(gpus_of(node)), "-c", "1"],
            memory=SINGLE_NODE_MEMORY, ipc_lock=True, env={"NCCL_DEBUG": "INFO"},
            tolerations=tolerations_for([node], extra=gpu_profile.gpu_tolerations()))
    # the fleet is cached per key for the session: the key names exactly these specs
    key = f"nccl-single-node-{hashlib.sha256(repr(sorted(specs.items())).encode()).hexdigest()[:12]}"

    def get(node: NodeInfo) -> NcclRun:
        probe = run_fleet(key, specs)[node.name]
        run = NcclRun(node.id, node.instance_type, 1, gpus_of(node), " ".join(specs[node.name].command),
                      log=probe.logs, facts={"pod": f"{probe.namespace}/{probe.pod}", "phase": probe.phase,
                                             "exit_code": probe.exit_code, "image": specs[node.name].image,
                                             **_gpu_facts([node])},
                      node_names=(node.name,), hosts={probe.pod: probe.node} if probe.node else {})
        if not probe.ok:
            run.outcome = (f"{probe.describe()} - see `kubectl -n {probe.namespace} logs {probe.pod}` and "
                           f"`kubectl -n {probe.namespace} describe pod {probe.pod}`")
        return run.parse()

    return get


@pytest.fixture(scope="module")
def multi_node_runs(cluster: Cluster, gpucluster_run: Run, gpu_profile: Profile,
                    device_plugins: Plugins) -> Callable[[NodeGroup], NcclRun]:
    """Factory: the MPIJob run of a node group, run once per module and shared by its tests. Skips (with the
    install hint) when the cluster does not serve kubeflow.org/v2beta1 MPIJobs."""
    if not mpijob.served(cluster, gpucluster_run.namespace):
        pytest.skip(f"multi-node NCCL skipped: the MPI operator is not installed (no {mpijob.MPIJOB}/v2beta1 API); "
                    f"{mpijob.INSTALL_HINT}")
    cache: dict[str, NcclRun] = {}
    options, run_id = gpucluster_run.options, gpucluster_run.run_id
    groups, _, coverage = _groups(gpucluster_run)

    def job_for(group: NodeGroup) -> dict[str, Any]:
        return mpijob.render(
            group.nodes, name=mpijob.job_name(group.instance_type, [n.name for n in group.nodes], run_id),
            namespace=gpucluster_run.namespace, run_id=run_id,
            image=_image(gpu_profile, group.instance_type, options.nccl_image),
            gpus=min(gpus_of(n) for n in group.nodes), efa=min(n.efa_allocatable for n in group.nodes),
            max_size=size_arg(max_bytes(gpu_profile.for_instance(group.instance_type), len(group.nodes))),
            deadline_s=int(options.timeout_s),
            tolerations=tolerations_for(group.nodes, extra=gpu_profile.gpu_tolerations()))

    def run_wave(wave: list[NodeGroup]) -> None:
        """Every group of the wave at once (disjoint nodes); a group that could never schedule is not submitted."""
        gpus_now = gpus_to_request(cluster, device_plugins, sorted({n.name for g in wave for n in g.nodes}))
        blocked = {g.id: cannot_run(g, gpus_now) for g in wave}
        jobs = {g.id: job_for(g) for g in wave if blocked[g.id] is None}
        done = mpijob.run_all(cluster, list(jobs.values()), timeout_s=options.timeout_s + 30,
                              progress=gpucluster_run.progress, what=f"NCCL multi-node wave ({len(jobs)} MPIJobs)")
        for group in wave:
            gpus = min(gpus_of(n) for n in group.nodes)
            shown = {"nodes": ", ".join(n.name for n in group.nodes),
                     "multi_node_coverage": coverage.text(group.instance_type),
                     "image": _image(gpu_profile, group.instance_type, options.nccl_image), **_gpu_facts(group.nodes)}
            job = jobs.get(group.id)
            if job is None:
                cache[group.id] = NcclRun(group.id, group.instance_type, len(group.nodes), gpus, "(not submitted)",
                                          outcome=blocked[group.id] or "", facts=shown)
                continue
            result = done[job["metadata"]["name"]]
            cache[group.id] = NcclRun(
                group.id, group.instance_type, len(group.nodes), gpus, mpijob.launcher_command(job),
                log=result.log, outcome=result.outcome, manifest=yaml.safe_dump(job, sort_keys=False),
                facts={**result.facts, **shown, "efa_per_worker": min(n.efa_allocatable for n in group.nodes)},
                node_names=tuple(n.name for n in group.nodes), hosts=result.workers).parse()

    def get(group: NodeGroup) -> NcclRun:
        if group.id not in cache:
            run_wave(next((w for w in waves(groups) if any(g.id == group.id for g in w)), [group]))
        return cache[group.id]

    return get


def _single(nccl_node: NodeInfo, single_node_runs: Callable[[NodeInfo], NcclRun], evidence: Evidence) -> NcclRun:
    if gpus_of(nccl_node) < 2:
        pytest.skip(f"{nccl_node.id} has {gpus_of(nccl_node)} GPU: single-node all-reduce bus bandwidth is zero "
                    "by definition (no peer to reduce with)")
    run = single_node_runs(nccl_node)
    nccl.record(run, evidence)
    return run


def _multi(nccl_group: NodeGroup, multi_node_runs: Callable[[NodeGroup], NcclRun], evidence: Evidence) -> NcclRun:
    run = multi_node_runs(nccl_group)
    nccl.record(run, evidence)
    return run


def _bandwidth(run: NcclRun, profile: Profile, evidence: Evidence) -> None:
    inst = profile.for_instance(run.instance_type)
    nccl.plot(run, inst, evidence)
    enforce(judge_bandwidth(run, inst), evidence)


def test_all_reduce_is_correct_on_one_node(nccl_node: NodeInfo, single_node_runs: Callable[[NodeInfo], NcclRun],
                                           evidence: Evidence) -> None:
    """all_reduce_perf over every GPU of the node finishes with no wrong elements."""
    enforce(judge_correctness(_single(nccl_node, single_node_runs, evidence)), evidence)


def test_bus_bandwidth_on_one_node_meets_floor(nccl_node: NodeInfo, single_node_runs: Callable[[NodeInfo], NcclRun],
                                               gpu_profile: Profile, evidence: Evidence) -> None:
    """Out-of-place bus bandwidth inside the node at the profile's sizes, against its 1-node floor."""
    _bandwidth(_single(nccl_node, single_node_runs, evidence), gpu_profile, evidence)


def test_all_reduce_is_correct_across_nodes(nccl_group: NodeGroup, multi_node_runs: Callable[[NodeGroup], NcclRun],
                                            evidence: Evidence) -> None:
    """The MPIJob's all_reduce_perf (one rank per GPU, every node of the group) has no wrong elements."""
    enforce(judge_correctness(_multi(nccl_group, multi_node_runs, evidence)), evidence)


def test_nccl_uses_efa_across_nodes(nccl_group: NodeGroup, multi_node_runs: Callable[[NodeGroup], NcclRun],
                                    gpu_profile: Profile, evidence: Evidence) -> None:
    """NCCL's own log shows OFI/Libfabric with provider efa, with GPUDirect RDMA where the type supports it."""
    run = _multi(nccl_group, multi_node_runs, evidence)
    enforce(judge_network(run, gpu_profile.for_instance(run.instance_type)), evidence)


def test_bus_bandwidth_across_nodes_meets_floor(nccl_group: NodeGroup, multi_node_runs: Callable[[NodeGroup], NcclRun],
                                                gpu_profile: Profile, evidence: Evidence) -> None:
    """Out-of-place bus bandwidth across the nodes at the profile's sizes, against its floor for that node count."""
    _bandwidth(_multi(nccl_group, multi_node_runs, evidence), gpu_profile, evidence)
