"""NCCL all-reduce (marker nccl): single-node probe pods on every GPU node and multi-node MPIJobs per group of EFA
nodes, judged on correctness, network path, bandwidth; a failed group's nodes re-tested with good partners so the bad
node is named (judges: pytest_gpucluster/checks/nccl*.py; the MPIJobs: pytest_gpucluster/gather/nccl.py,
fixtures/mpijob-nccl.yaml)."""
from __future__ import annotations

import hashlib
from typing import Callable, Mapping

import pytest

from pytest_gpucluster.checks.nccl import NcclRun, bandwidth, correctness, network, max_bytes, size_arg
from pytest_gpucluster.checks.nccl_localise import Localisation, localised_node
from pytest_gpucluster.checks.nccl_nodes import Coverage, NodeGroup, full_groups, gpus_of, multi_node_groups, single_node_targets
from pytest_gpucluster.evidence import Evidence
from pytest_gpucluster.gather import nccl_evidence as nccl
from pytest_gpucluster.gather.nccl import MultiNodeRunner, gpu_facts, image_for, localise
from pytest_gpucluster.kube import mpijob
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory, NodeInfo
from pytest_gpucluster.kube.placement import tolerations_for
from pytest_gpucluster.kube.plugins import Plugins
from pytest_gpucluster.kube.probes import ProbeResult, ProbeSpec
from pytest_gpucluster.profile import Profile
from pytest_gpucluster.session import SESSION_KEY, Session
from pytest_gpucluster.suite import enforce

pytestmark = pytest.mark.nccl

PERF = "/opt/nccl-tests/build/all_reduce_perf"
SINGLE_NODE_MEMORY = "16Gi"                   # host memory of the single-node pod (8 GPU contexts + buffers)


def _groups(run: Session) -> tuple[list[NodeGroup], str, Coverage]:
    """The multi-node groups (zone-aware, every EFA node by default: profile nccl.multi_node_coverage)."""
    inventory = run.discover_inventory()
    modes = {n.instance_type: inst.multi_node_coverage for n in inventory.efa_nodes
             if (inst := run.profile.for_instance(n.instance_type)) is not None}
    return multi_node_groups(inventory.efa_nodes, run.options.nccl_nodes, modes)


def _param(metafunc: pytest.Metafunc, name: str, values: list[object], ids: list[str], none: str, why: str) -> None:
    if values:
        metafunc.parametrize(name, values, ids=ids)
    else:
        metafunc.parametrize(name, [pytest.param(None, marks=pytest.mark.skip(reason=why))], ids=[none])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`nccl_node`: every GPU node (one per type with --gpucluster-nccl-sample-nodes); `nccl_group`: the groups of
    the multi-node runs; `nccl_efa_node`: every EFA node in a group (its own multi-node result); `nccl_full_group`:
    every EFA node of a type in a zone (--gpucluster-nccl-full). Ids name the nodes and instance type."""
    if not {"nccl_node", "nccl_group", "nccl_efa_node", "nccl_full_group"} & set(metafunc.fixturenames):
        return
    run: Session = metafunc.config.stash[SESSION_KEY]
    inventory = run.discover_inventory()
    if "nccl_node" in metafunc.fixturenames:
        nodes = single_node_targets(inventory.gpu_nodes, not run.options.nccl_sample_nodes)
        _param(metafunc, "nccl_node", list(nodes), [n.id for n in nodes], "no-gpu-nodes",
               f"no GPU nodes in the cluster ({len(inventory.all_nodes)} nodes discovered)")
    groups, why, _ = _groups(run)
    if "nccl_group" in metafunc.fixturenames:
        _param(metafunc, "nccl_group", list(groups), [g.id for g in groups], "no-efa-node-group", why)
    if "nccl_efa_node" in metafunc.fixturenames:
        in_groups = sorted({n.name: n for g in groups for n in g.nodes}.values(), key=lambda n: n.name)
        _param(metafunc, "nccl_efa_node", list(in_groups), [n.id for n in in_groups], "no-efa-node-group", why)
    if "nccl_full_group" in metafunc.fixturenames:
        full = full_groups(inventory.efa_nodes)
        _param(metafunc, "nccl_full_group", list(full), [g.id for g in full], "no-efa-node-group", why)


@pytest.fixture(scope="module")
def single_node_runs(gpucluster_session: Session, inventory: Inventory, gpu_profile: Profile,
                     run_fleet: Callable[[str, Mapping[str, ProbeSpec]], dict[str, ProbeResult]]
                     ) -> Callable[[NodeInfo], NcclRun]:
    """Factory: the single-node run of a node. The first call runs every target node at once (one fleet)."""
    options = gpucluster_session.options
    targets = [n for n in single_node_targets(inventory.gpu_nodes, not options.nccl_sample_nodes) if gpus_of(n) >= 2]
    specs: dict[str, ProbeSpec] = {}
    for node in targets:
        max_size = size_arg(max_bytes(gpu_profile.for_instance(node.instance_type), 1))
        specs[node.name] = ProbeSpec(
            name="nccl-single-node", node=node.name, gpus=gpus_of(node),
            image=image_for(gpu_profile, node.instance_type, options.nccl_image),
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
                                             **gpu_facts([node])},
                      node_names=(node.name,), hosts={probe.pod: probe.node} if probe.node else {})
        if not probe.ok:
            run.outcome = (f"{probe.describe()} - see `kubectl -n {probe.namespace} logs {probe.pod}` and "
                           f"`kubectl -n {probe.namespace} describe pod {probe.pod}`")
        return run.parse()

    return get


@pytest.fixture(scope="module")
def multi_node(cluster: Cluster, gpucluster_session: Session, gpu_profile: Profile, device_plugins: Plugins
               ) -> MultiNodeRunner:
    """The module's MPIJob runner (each group run once, shared by its tests). Skips (with the install hint) when the
    cluster does not serve kubeflow.org/v2beta1 MPIJobs."""
    if not mpijob.served(cluster, gpucluster_session.namespace):
        pytest.skip(f"multi-node NCCL skipped: the MPI operator is not installed (no {mpijob.MPIJOB}/v2beta1 API); "
                    f"{mpijob.INSTALL_HINT}")
    options = gpucluster_session.options
    return MultiNodeRunner(cluster, gpu_profile, device_plugins, gpucluster_session.namespace, gpucluster_session.run_id,
                           options.nccl_image, options.timeout_s, coverage=_groups(gpucluster_session)[2])


@pytest.fixture(scope="module")
def localisation(multi_node: MultiNodeRunner, gpucluster_session: Session) -> tuple[Localisation, dict[str, list[str]]]:
    """Every group run, then the extra rounds that name the bad node (checks/nccl_localise.py), once per module."""
    return localise(multi_node, _groups(gpucluster_session)[0])


def _single(nccl_node: NodeInfo, single_node_runs: Callable[[NodeInfo], NcclRun], evidence: Evidence) -> NcclRun:
    if gpus_of(nccl_node) < 2:
        pytest.skip(f"{nccl_node.id} has {gpus_of(nccl_node)} GPU: single-node all-reduce bus bandwidth is zero "
                    "by definition (no peer to reduce with)")
    run = single_node_runs(nccl_node)
    nccl.record(run, evidence)
    return run


def _multi(nccl_group: NodeGroup, multi_node: MultiNodeRunner, gpucluster_session: Session, evidence: Evidence) -> NcclRun:
    run = multi_node.get(nccl_group, _groups(gpucluster_session)[0])
    nccl.record(run, evidence)
    return run


def _bandwidth(run: NcclRun, profile: Profile, evidence: Evidence) -> None:
    inst = profile.for_instance(run.instance_type)
    nccl.plot(run, inst, evidence)
    enforce(bandwidth(run, inst), evidence)


def test_all_reduce_is_correct_on_one_node(nccl_node: NodeInfo, single_node_runs: Callable[[NodeInfo], NcclRun],
                                           evidence: Evidence) -> None:
    """all_reduce_perf over every GPU of the node finishes with no wrong elements."""
    enforce(correctness(_single(nccl_node, single_node_runs, evidence)), evidence)


def test_bus_bandwidth_on_one_node_meets_floor(nccl_node: NodeInfo, single_node_runs: Callable[[NodeInfo], NcclRun],
                                               gpu_profile: Profile, evidence: Evidence) -> None:
    """Out-of-place bus bandwidth inside the node at the profile's sizes, against its 1-node floor."""
    _bandwidth(_single(nccl_node, single_node_runs, evidence), gpu_profile, evidence)


def test_all_reduce_is_correct_across_nodes(nccl_group: NodeGroup, multi_node: MultiNodeRunner,
                                            gpucluster_session: Session, evidence: Evidence) -> None:
    """The MPIJob's all_reduce_perf (one rank per GPU, every node of the group) has no wrong elements."""
    enforce(correctness(_multi(nccl_group, multi_node, gpucluster_session, evidence)), evidence)


def test_nccl_uses_efa_across_nodes(nccl_group: NodeGroup, multi_node: MultiNodeRunner, gpucluster_session: Session,
                                    gpu_profile: Profile, evidence: Evidence) -> None:
    """NCCL's own log shows OFI/Libfabric with provider efa, with GPUDirect RDMA where the type supports it."""
    run = _multi(nccl_group, multi_node, gpucluster_session, evidence)
    enforce(network(run, gpu_profile.for_instance(run.instance_type)), evidence)


def test_bus_bandwidth_across_nodes_meets_floor(nccl_group: NodeGroup, multi_node: MultiNodeRunner,
                                                gpucluster_session: Session, gpu_profile: Profile,
                                                evidence: Evidence) -> None:
    """Out-of-place bus bandwidth across the nodes at the profile's sizes, against its floor for that node count."""
    _bandwidth(_multi(nccl_group, multi_node, gpucluster_session, evidence), gpu_profile, evidence)


def test_node_passes_nccl_across_nodes(nccl_efa_node: NodeInfo, localisation: tuple[Localisation, dict[str, list[str]]],
                                       evidence: Evidence) -> None:
    """This node's own multi-node result: it passed with a partner (first round, or re-tested with a good partner
    after its group failed: cleared); fails only when it fails with every partner; not shown when the failure of
    its zone is not attributable to one node."""
    loc, good = localisation
    enforce(localised_node(nccl_efa_node, loc, good), evidence)


def test_bus_bandwidth_over_every_efa_node_of_a_type(nccl_full_group: NodeGroup, multi_node: MultiNodeRunner,
                                                      gpucluster_session: Session, gpu_profile: Profile,
                                                      evidence: Evidence) -> None:
    """--gpucluster-nccl-full: one all-reduce over every EFA node of the type in the zone (the training shape),
    against the profile's floor for that node count where it has one and the derived ceiling always."""
    if not gpucluster_session.options.nccl_full:
        pytest.skip("the whole-type all-reduce runs with --gpucluster-nccl-full (it holds every node of the type)")
    multi_node.run_groups([nccl_full_group])
    run = multi_node.cache[nccl_full_group.id]
    nccl.record(run, evidence)
    _bandwidth(run, gpu_profile, evidence)
