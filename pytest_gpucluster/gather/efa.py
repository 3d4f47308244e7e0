"""What the EFA suite runs on each EFA node: one probe pod holding the node's EFA devices (and huge pages where the
node has them), IPC_LOCK, the node's workload taints tolerated, running `fi_info -p efa`, `ls /dev/infiniband` and
`ulimit -l` as three sections. It runs in the NCCL image (the EFA installer's libfabric: fi_info under
/opt/amazon/efa/bin) or --gpucluster-efa-image."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..checks.probe_output import section, split_sections
from ..kube.objects import HUGEPAGES_2MI, NodeInfo
from ..kube.placement import tolerations_for
from ..kube.probes import ProbeResult, ProbeSpec
from ..kube.quantity import mebibytes

PROBE_NAME = "efa-fi-info"
HUGEPAGES_REQUEST = "128Mi"   # a probe-sized share of the node's 2 MiB huge pages (libfabric bounce buffers)
# One script, three sections, each closed by its exit code; `fi_info` errors go to stderr (the same log).
SCRIPT = "; ".join(['export PATH="/opt/amazon/efa/bin:$PATH"',
                    section("fi_info", "fi_info -p efa 2>&1"),
                    section("dev-infiniband", "ls -1 /dev/infiniband 2>&1"),
                    section("memlock", "ulimit -l 2>&1")])


@dataclass
class EfaProbe:
    """What one node's EFA probe pod saw, split into its sections."""

    node: NodeInfo
    requested: int
    hugepages: str | None
    result: ProbeResult
    sections: dict[str, tuple[str, int]] = field(default_factory=dict)   # name -> (output, exit code)

    @classmethod
    def read(cls, node: NodeInfo, spec: ProbeSpec, result: ProbeResult) -> EfaProbe:
        return cls(node, spec.efa, spec.hugepages_2mi, result, split_sections(result.logs))

    def section(self, name: str) -> tuple[str, int]:
        return self.sections.get(name) or ("", -1)


def expected_efa(node: NodeInfo) -> int:
    """The profile's EFA count for the node's type (nodes of unknown types: what they advertise)."""
    return node.expected_efa or node.efa_allocatable


def efa_spec(node: NodeInfo, image: str) -> ProbeSpec:
    """The probe for one node: as many EFA devices as the profile expects and the node can give; the node's own
    workload taints tolerated (the EFA probe judges EFA; whether the taints are right is the taints suite's)."""
    requested = min(expected_efa(node), node.efa_allocatable) if node.efa_allocatable > 0 else 0
    hugepages = HUGEPAGES_REQUEST if mebibytes(node.allocatable.get(HUGEPAGES_2MI)) >= 128 else None
    return ProbeSpec(name=PROBE_NAME, command=["sh", "-c", SCRIPT], node=node.name, efa=requested, image=image,
                     hugepages_2mi=hugepages, memory="512Mi" if hugepages else None, ipc_lock=True,
                     tolerations=tolerations_for([node]))
