"""EFA end to end (marker efa): EFA allocatable per node, and fi_info, /dev/infiniband and memlock seen from a pod
(what the probe pod runs: pytest_gpucluster/gather/efa.py)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import pytest

from pytest_gpucluster.checks import efa as judge
from pytest_gpucluster.gather.efa import PROBE_NAME, EfaProbe, efa_spec, expected_efa
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory
from pytest_gpucluster.kube.objects import EFA_RESOURCE, HUGEPAGES_2MI, NodeInfo
from pytest_gpucluster.kube.probes import ProbeResult, ProbeSpec
from pytest_gpucluster.kube.quantity import count
from pytest_gpucluster.profile import Profile
from pytest_gpucluster.session import Session
from pytest_gpucluster.suite import enforce

pytestmark = pytest.mark.efa


@pytest.fixture(scope="module")
def efa_probes(inventory: Inventory, run_fleet: Callable[[str, Mapping[str, ProbeSpec]], dict[str, ProbeResult]],
               gpucluster_session: Session) -> dict[str, EfaProbe]:
    """One probe pod per EFA node (one fleet, one watch), shared by the per-node checks below."""
    image = gpucluster_session.options.efa_image or gpucluster_session.options.nccl_image
    specs = {node.name: efa_spec(node, image) for node in inventory.efa_nodes}
    results = run_fleet(PROBE_NAME, specs)
    return {name: EfaProbe.read(inventory.by_name[name], specs[name], res) for name, res in results.items()}


def _probe(efa_probes: dict[str, EfaProbe], node: NodeInfo, evidence: Any) -> EfaProbe:
    probe = efa_probes[node.name]
    evidence.fact("probe pod", probe.result.describe())
    evidence.fact(f"{EFA_RESOURCE} requested by the probe", probe.requested)
    evidence.fact(f"{HUGEPAGES_2MI} requested by the probe", probe.hugepages or
                  f"none: the node advertises {HUGEPAGES_2MI}={node.allocatable.get(HUGEPAGES_2MI, '0')} "
                  "(libfabric falls back to regular pages for its bounce buffers)")
    if probe.result.logs:
        evidence.attach(f"EFA probe on {node.name} (fi_info -p efa; ls /dev/infiniband; ulimit -l)",
                        probe.result.logs, kind="fi_info")
    evidence.events(probe.result.events)
    if not probe.sections:
        enforce(judge.not_run(node.id, probe.requested, probe.result.describe(), probe.result.namespace,
                              probe.result.pod), evidence)
    return probe


def _hint(node: NodeInfo, cluster: Cluster) -> str:
    """Why a pod may see fewer EFA devices, from what the node advertises now."""
    current = cluster.get("nodes", node.name)
    return judge.why_no_efa(str(((current.get("status") or {}).get("allocatable") or {}).get(EFA_RESOURCE, "0")))


# -- checks --------------------------------------------------------------------------------------------
def test_efa_allocatable_matches_profile(efa_node: NodeInfo, gpu_profile: Profile, cluster: Cluster,
                                         evidence: Any) -> None:
    """vpc.amazonaws.com/efa allocatable equals the profile's EFA interface count for the instance type."""
    inst = gpu_profile.for_instance(efa_node.instance_type)
    expected = inst.efa if inst is not None else None
    status = (cluster.get("nodes", efa_node.name) if expected else {}).get("status") or {}
    got = count((status.get("allocatable") or {}).get(EFA_RESOURCE))
    capacity = str((status.get("capacity") or {}).get(EFA_RESOURCE, "0"))
    hint = _hint(efa_node, cluster) if expected and got != expected else ""
    enforce(judge.allocatable(efa_node.id, efa_node.instance_type, expected, got, capacity, hint, gpu_profile.path),
            evidence)


def test_fi_info_lists_every_efa_device(efa_node: NodeInfo, efa_probes: dict[str, EfaProbe], cluster: Cluster,
                                        evidence: Any) -> None:
    """`fi_info -p efa` in a pod holding the node's EFA devices: provider efa, one domain per device, RDM."""
    probe = _probe(efa_probes, efa_node, evidence)
    output, rc = probe.section("fi_info")
    enforce(judge.fi_info(efa_node.id, output, rc, expected_efa(efa_node), probe.requested, efa_node.instance_type,
                          _hint(efa_node, cluster)), evidence)


def test_infiniband_devices_mounted_in_pod(efa_node: NodeInfo, efa_probes: dict[str, EfaProbe],
                                           evidence: Any) -> None:
    """/dev/infiniband in the pod holds one uverbs device per EFA device the pod was given."""
    probe = _probe(efa_probes, efa_node, evidence)
    output, rc = probe.section("dev-infiniband")
    enforce(judge.infiniband(efa_node.id, output, rc, expected_efa(efa_node), probe.requested,
                             efa_node.instance_type), evidence)


def test_locked_memory_unlimited_in_pod(efa_node: NodeInfo, efa_probes: dict[str, EfaProbe], evidence: Any) -> None:
    """`ulimit -l` in an EFA pod is unlimited (libfabric pins its buffers; EKS AMIs run containerd with
    LimitMEMLOCK=infinity, the EFA installer sets `memlock unlimited`)."""
    probe = _probe(efa_probes, efa_node, evidence)
    output, rc = probe.section("memlock")
    enforce(judge.memlock(efa_node.id, output, rc), evidence)
