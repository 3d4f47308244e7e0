"""EFA end to end (marker efa): EFA allocatable per node, and fi_info, /dev/infiniband and memlock seen from a pod."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pytest

from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory, NodeInfo
from pytest_gpucluster.kube.probes import ProbeResult, ProbeSpec
from pytest_gpucluster.parsers import ParseError, parse_fi_info
from pytest_gpucluster.profile import Profile

pytestmark = pytest.mark.efa

EFA = "vpc.amazonaws.com/efa"
HUGEPAGES = "hugepages-2Mi"
HUGEPAGES_REQUEST = "128Mi"   # a probe-sized share of the node's 2 MiB huge pages (libfabric bounce buffers)
# Taints we never tolerate for a probe: they mean the node is not usable yet (or is going away).
SYSTEM_TAINT_PREFIXES = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/", "karpenter.sh/")
SECTIONS = ("fi_info", "dev-infiniband", "memlock")
# One script, three sections, each closed by its exit code; `fi_info` errors go to stderr (same log).
SCRIPT = ("echo '### fi_info'; fi_info -p efa 2>&1; echo \"### rc=$?\"; "
          "echo '### dev-infiniband'; ls -1 /dev/infiniband 2>&1; echo \"### rc=$?\"; "
          "echo '### memlock'; ulimit -l 2>&1; echo \"### rc=$?\"")
_SECTION = re.compile(r"^### (?P<name>[\w-]+)\n(?P<body>.*?)^### rc=(?P<rc>\d+)$", re.M | re.S)
SG_HINT = ("the security group of EFA nodes must allow ALL traffic to and from itself (a self-referencing "
           "inbound and outbound rule; see test_efa_security_group_allows_itself in the aws suite)")


@dataclass
class EfaProbe:
    """What one node's EFA probe pod saw, split into its sections."""

    node: NodeInfo
    requested: int
    hugepages: str | None
    result: ProbeResult
    sections: dict[str, tuple[str, int]] = field(default_factory=dict)   # name -> (output, exit code)

    def section(self, name: str) -> tuple[str, int] | None:
        return self.sections.get(name)

    def ran(self) -> bool:
        return bool(self.sections)


def split_sections(logs: str) -> dict[str, tuple[str, int]]:
    return {m["name"]: (m["body"].rstrip("\n"), int(m["rc"])) for m in _SECTION.finditer(logs)}


def expected_efa(node: NodeInfo) -> int:
    """The profile's EFA count for the node's type (nodes of unknown types: what they advertise)."""
    return node.expected_efa or node.efa_allocatable


def probe_tolerations(node: NodeInfo) -> list[dict[str, Any]]:
    """Tolerate the node's own workload taints (GPU, EFA, Auto Mode ...), never the system not-ready ones:
    the EFA probe judges EFA; whether the taints are right is the taints suite's question."""
    out = []
    for taint in node.taints:
        if str(taint.get("key", "")).startswith(SYSTEM_TAINT_PREFIXES):
            continue
        out.append({"key": taint.get("key"), "operator": "Exists", **({"effect": taint["effect"]}
                                                                     if taint.get("effect") else {})})
    return out


def efa_spec(node: NodeInfo) -> tuple[ProbeSpec, int]:
    """The probe for one node: as many EFA devices as the profile expects and the node can give."""
    requested = min(expected_efa(node), node.efa_allocatable) if node.efa_allocatable > 0 else 0
    hugepages = HUGEPAGES_REQUEST if _quantity_mi(node.allocatable.get(HUGEPAGES, "0")) >= 128 else None
    spec = ProbeSpec(name="efa-fi-info", command=["sh", "-c", SCRIPT], node=node.name, efa=requested,
                     hugepages_2mi=hugepages, memory="512Mi" if hugepages else None, ipc_lock=True,
                     tolerations=probe_tolerations(node))
    return spec, requested


def _quantity_mi(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi)?", str(value).strip())
    if not match:
        return 0.0
    scale = {None: 1 / (1 << 20), "Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}[match.group(2)]
    return float(match.group(1)) * scale


@pytest.fixture(scope="module")
def efa_probes(inventory: Inventory, run_fleet: Callable[[str, Mapping[str, ProbeSpec]], dict[str, ProbeResult]]
               ) -> dict[str, EfaProbe]:
    """One probe pod per EFA node (one fleet, one watch), shared by the per-node checks below."""
    specs, requested = {}, {}
    for node in inventory.efa_nodes:
        specs[node.name], requested[node.name] = efa_spec(node)
    results = run_fleet("efa-fi-info", specs)
    return {name: EfaProbe(inventory.by_name[name], requested[name], specs[name].hugepages_2mi, res,
                           split_sections(res.logs)) for name, res in results.items()}


def _probe(efa_probes: dict[str, EfaProbe], node: NodeInfo, evidence: Any) -> EfaProbe:
    probe = efa_probes[node.name]
    evidence.fact("probe pod", probe.result.describe())
    evidence.fact(f"{EFA} requested by the probe", probe.requested)
    evidence.fact(f"{HUGEPAGES} requested by the probe", probe.hugepages or
                  f"none: the node advertises {HUGEPAGES}={node.allocatable.get(HUGEPAGES, '0')} (libfabric falls "
                  "back to regular pages for its bounce buffers)")
    if probe.result.logs:
        evidence.attach(f"EFA probe on {node.name} (fi_info -p efa; ls /dev/infiniband; ulimit -l)",
                        probe.result.logs, kind="fi_info")
    evidence.events(probe.result.events)
    if not probe.ran():
        pytest.fail(f"EFA probe did not run on {node.id}: expected the probe pod (requesting {probe.requested} "
                    f"{EFA}, IPC_LOCK, the node's taints tolerated) to run `fi_info -p efa`; observed "
                    f"{probe.result.describe()}. Look at `kubectl -n {probe.result.namespace} describe pod "
                    f"{probe.result.pod}` (kept only with --gpucluster-keep) and the node's events.", pytrace=False)
    return probe


def _why_no_efa(node: NodeInfo, cluster: Cluster) -> str:
    """Hints for a node whose pod sees fewer EFA devices than expected."""
    current = cluster.get("nodes", node.name)
    alloc = str(((current.get("status") or {}).get("allocatable") or {}).get(EFA, "0"))
    if alloc in ("0", ""):
        return (f"The node advertises {EFA}={alloc}: the EFA device plugin is not running on it (does its "
                "DaemonSet tolerate the node's GPU taint? see test_efa_device_plugin_runs_on) or the instance "
                "has no EFA interfaces attached (instance type without EFA support, or a launch template / "
                "NodeClass without EFA network interfaces).")
    return (f"The node advertises {EFA}={alloc}: fewer interfaces attached than the instance type supports "
            "(check the launch template's network interfaces with InterfaceType=efa, one per network card), "
            f"or the EFA device plugin registered only some of them (see its logs on the node).")


# -- checks --------------------------------------------------------------------------------------------
def test_efa_allocatable_matches_profile(efa_node: NodeInfo, gpu_profile: Profile, cluster: Cluster,
                                         evidence: Any) -> None:
    """vpc.amazonaws.com/efa allocatable equals the profile's EFA interface count for the instance type."""
    inst = gpu_profile.for_instance(efa_node.instance_type)
    if inst is None or not inst.efa:
        pytest.skip(f"{efa_node.instance_type} has no EFA count in the acceptance profile ({gpu_profile.path}): "
                    f"add `instances: {{{efa_node.instance_type}: {{efa: N}}}}` to judge {efa_node.name}")
    node = cluster.get("nodes", efa_node.name)
    status = node.get("status") or {}
    got = int(str((status.get("allocatable") or {}).get(EFA, "0")) or 0)
    capacity = str((status.get("capacity") or {}).get(EFA, "0"))
    evidence.measure(f"{EFA} allocatable", got, "interfaces", threshold=inst.efa, op="==",
                     source=f"profile {inst.instance_type} efa")
    evidence.fact(f"{EFA} capacity", capacity)
    assert got == inst.efa, (
        f"EFA count mismatch on {efa_node.id}: expected {EFA} allocatable {inst.efa} (profile "
        f"{inst.instance_type} efa), observed allocatable {got}, capacity {capacity}. " + _why_no_efa(efa_node, cluster))


def test_fi_info_lists_every_efa_device(efa_node: NodeInfo, efa_probes: dict[str, EfaProbe], cluster: Cluster,
                                        evidence: Any) -> None:
    """`fi_info -p efa` in a pod holding the node's EFA devices: provider efa, one domain per device, RDM."""
    probe = _probe(efa_probes, efa_node, evidence)
    want = expected_efa(efa_node)
    output, rc = probe.section("fi_info") or ("", -1)
    try:
        parsed = parse_fi_info(output)
    except ParseError as exc:
        pytest.fail(f"fi_info output on {efa_node.id} not understood ({exc}); expected libfabric's `provider: efa` "
                    f"entries. Raw output is attached to the report.", pytrace=False)
    nics = parsed.nic_count("efa") if parsed.entries else 0
    rdm = "FI_EP_RDM" in parsed.endpoint_types("efa") if parsed.entries else False
    evidence.measure("EFA devices seen by fi_info (distinct domains)", nics, "devices", threshold=want, op="==",
                     source=f"profile {efa_node.instance_type} efa")
    evidence.fact("fi_info providers", parsed.provider_names())
    evidence.fact("fi_info EFA domains", parsed.domains("efa") if parsed.entries else [])
    evidence.fact("fi_info endpoint types", parsed.endpoint_types("efa") if parsed.entries else [])
    if parsed.error is not None or "efa" not in parsed.provider_names():
        error = f"fi_getinfo {parsed.error.code} ({parsed.error.message})" if parsed.error else f"exit code {rc}"
        pytest.fail(
            f"No EFA provider in a pod on {efa_node.id}: expected `fi_info -p efa` to list {want} EFA device(s) "
            f"(profile), observed {error} with {probe.requested} {EFA} requested. " + _why_no_efa(efa_node, cluster)
            + " If the node does advertise EFA, check the instance type supports EFA (aws suite: "
            "test_instance_type_supports_efa).", pytrace=False)
    problems = []
    if nics != want:
        problems.append(f"{nics} distinct EFA domain(s) ({', '.join(parsed.nics('efa'))}) where the profile "
                        f"expects {want}")
    if not rdm:
        problems.append(f"no FI_EP_RDM endpoint (endpoint types {parsed.endpoint_types('efa')}); NCCL's "
                        "aws-ofi-nccl plugin needs RDM endpoints")
    hint = _why_no_efa(efa_node, cluster) if nics < want else ""
    assert not problems, (f"EFA devices missing in a pod on {efa_node.id}: " + "; ".join(problems)
                          + f" ({probe.requested} requested). {hint} Once every device shows, " + SG_HINT + ".")


def test_infiniband_devices_mounted_in_pod(efa_node: NodeInfo, efa_probes: dict[str, EfaProbe],
                                           evidence: Any) -> None:
    """/dev/infiniband in the pod holds one uverbs device per EFA device the pod was given."""
    probe = _probe(efa_probes, efa_node, evidence)
    output, rc = probe.section("dev-infiniband") or ("", -1)
    entries = [line.strip() for line in output.splitlines() if line.strip()] if rc == 0 else []
    uverbs = [e for e in entries if e.startswith("uverbs")]
    want = expected_efa(efa_node)
    evidence.measure("/dev/infiniband uverbs devices", len(uverbs), "devices", threshold=want, op="==",
                     source=f"profile {efa_node.instance_type} efa")
    evidence.fact("/dev/infiniband", entries or output)
    assert len(uverbs) == want, (
        f"/dev/infiniband on {efa_node.id}: expected {want} uverbs device(s) in a pod given {probe.requested} "
        f"{EFA} (profile {want}), observed {len(uverbs)} ({shlex.join(entries) if entries else output or 'empty'}). "
        "The EFA device plugin mounts /dev/infiniband/uverbsN for each allocated device: check that it runs on "
        "the node and that the node advertises every EFA interface.")


def test_locked_memory_unlimited_in_pod(efa_node: NodeInfo, efa_probes: dict[str, EfaProbe], evidence: Any) -> None:
    """`ulimit -l` in an EFA pod is unlimited (libfabric pins its buffers; EKS AMIs run containerd with
    LimitMEMLOCK=infinity, the EFA installer sets `memlock unlimited`)."""
    probe = _probe(efa_probes, efa_node, evidence)
    output, rc = probe.section("memlock") or ("", -1)
    value = output.strip().splitlines()[-1].strip() if output.strip() else ""
    evidence.fact("ulimit -l in the pod", value or f"(no output, exit code {rc})")
    if value.isdigit():
        evidence.measure("locked-memory limit in the pod", int(value), "KiB")
    assert value == "unlimited", (
        f"Locked memory limited on {efa_node.id}: expected `ulimit -l` = unlimited in an EFA pod (libfabric and "
        f"NCCL register GPU and host buffers with the NIC), observed {value or 'nothing'} "
        f"{'KiB ' if value.isdigit() else ''}(exit code {rc}). Set LimitMEMLOCK=infinity for containerd on the "
        "node (the EKS AMIs do; custom AMIs / user data may not) or `default_ulimits` memlock -1 in the runtime "
        "config, and give the pod the IPC_LOCK capability.")
