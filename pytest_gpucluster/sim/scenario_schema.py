"""Scenario schema: the dataclasses each section of a scenario YAML file is built into (with their checks)."""
from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .faults import problems
from .hardware import UnknownInstanceType, instance_type

SAMPLES_DIR = Path(__file__).parent / "tools" / "samples"

KARPENTER_PHASES = ("launch", "register", "initialize", "ready")
# The tool keys of `tool_output`: the command as the fake tool is run (sim/tools/fake/*: `replay`). A recorded output
# is printed verbatim, with its exit code, and no fault or generated output applies to that command.
# nccl-tests binaries are keyed by their name (`all_reduce_perf`, ...: any `*_perf`).
TOOL_KEYS = frozenset({"nvidia-smi", "nvidia-smi q", "nvidia-smi list", "nvidia-smi query", "nvidia-smi apps",
                       "nvidia-smi nvlink", "nvidia-smi topo", "fi_info", "dcgmi diag", "dmesg", "mpirun",
                       "vectorAdd", "dcgmproftester12"})


@dataclass
class TaintSpec:
    key: str
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"
    value: str | None = None

    def to_k8s(self) -> dict[str, str]:
        out = {"key": self.key, "effect": self.effect}
        if self.value is not None:
            out["value"] = self.value
        return out


@dataclass
class ClusterSpec:
    name: str = "gpucluster-sim"
    region: str = "us-west-2"
    kubernetes_version: str = "1.32"
    auto_mode: bool = False
    extended_resource_toleration: bool = True
    zones: list[str] = field(default_factory=list)      # default: <region>a, b, c

    def __post_init__(self) -> None:
        if not self.zones:
            self.zones = [f"{self.region}{z}" for z in "abc"]


@dataclass
class MigSpec:
    profile: str                                         # e.g. "1g.10gb"
    strategy: Literal["single", "mixed"] = "single"


@dataclass
class NodeOutputs:
    """One named node's own recorded outputs, over its group's `tool_output` (a cluster replayed from a report)."""

    tool_output: dict[str, str] = field(default_factory=dict)   # tool key -> file printed verbatim
    exit_codes: dict[str, int] = field(default_factory=dict)    # tool key -> the exit status recorded with it

    def _check(self, ctx: Any) -> None:
        _resolve_outputs(self.tool_output, ctx)
        for tool in self.exit_codes:
            if tool not in self.tool_output:
                ctx.error("exit_codes", f"exit_codes for {tool!r}: no tool_output for it")


@dataclass
class NodeGroup:
    instance_type: str
    count: int = 1
    name_prefix: str | None = None
    zone: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[TaintSpec] = field(default_factory=list)
    nodepool: str | None = None
    capacity_type: Literal["on-demand", "spot", "reserved"] = "on-demand"
    gpus: int | None = None
    efa: int | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    mig: MigSpec | None = None
    # tool key -> a real output file the fake prints verbatim instead of rendering one (keys: TOOL_KEYS)
    tool_output: dict[str, str] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)    # tool key -> exit status printed with it (default 0)
    # explicit node names, in order (a cluster replayed from a report keeps its recorded names); len == count
    names: list[str] = field(default_factory=list)
    node_outputs: dict[str, NodeOutputs] = field(default_factory=dict)   # node name -> its own outputs
    ready_minutes_ago: float | None = None   # the node turned Ready this long before the cluster starts (None: then)
    os: Literal["al2023", "bottlerocket"] | None = None   # the AMI family (None: AL2023; Bottlerocket on Auto Mode)

    def _check(self, ctx: Any) -> None:
        try:
            instance_type(self.instance_type)
        except UnknownInstanceType as exc:
            ctx.error("instance_type", str(exc))
        if self.count < 0:
            ctx.error("count", f"count must be >= 0, given {self.count}")
        _resolve_outputs(self.tool_output, ctx)
        if self.names and len(self.names) != self.count:
            ctx.error("names", f"names lists {len(self.names)} node(s), count is {self.count}")
        for name in self.node_outputs:
            if self.names and name not in self.names:
                ctx.error("node_outputs", f"node_outputs for {name!r}: not one of this group's names {self.names}")

    def outputs_of(self, node: str) -> tuple[dict[str, str], dict[str, int]]:
        """The tool outputs and exit codes of the named node: its own over the group's."""
        own = self.node_outputs.get(node) or NodeOutputs()
        return {**self.tool_output, **own.tool_output}, {**self.exit_codes, **own.exit_codes}


def _resolve_outputs(outputs: dict[str, str], ctx: Any) -> None:
    for tool, ref in outputs.items():
        if tool not in TOOL_KEYS and not tool.startswith("nvidia-smi q -d ") and not tool.endswith("_perf"):
            ctx.error("tool_output", f"tool_output key {tool!r} is no tool the fakes replay (known: "
                                     f"{', '.join(sorted(TOOL_KEYS))}, nvidia-smi q -d <SECTION>, <nccl-test>_perf)")
        path = resolve_sample(ref, ctx.base_dir)
        if not path.is_file():
            ctx.error("tool_output", f"tool_output for {tool!r}: file not found: {ref} (looked at {path})")
        outputs[tool] = str(path)


@dataclass
class RequirementSpec:
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = "In"
    values: list[str] = field(default_factory=list)


@dataclass
class DisruptionSpec:
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = "WhenEmpty"
    consolidate_after: str = "30s"
    budgets: list[dict[str, str]] = field(default_factory=lambda: [{"nodes": "10%"}])


@dataclass
class NodePoolSpec:
    name: str
    nodeclass: str = "default"
    instance_types: list[str] = field(default_factory=list)
    capacity_types: list[str] = field(default_factory=lambda: ["on-demand"])
    requirements: list[RequirementSpec] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[TaintSpec] = field(default_factory=list)
    startup_taints: list[TaintSpec] = field(default_factory=list)
    limits: dict[str, str] = field(default_factory=dict)
    disruption: DisruptionSpec = field(default_factory=DisruptionSpec)
    weight: int | None = None
    expire_after: str = "720h"

    def manifest(self, cluster: ClusterSpec) -> dict[str, Any]:
        """The karpenter.sh/v1 NodePool object (Auto Mode: nodeClassRef to eks.amazonaws.com NodeClass)."""
        reqs = [{"key": r.key, "operator": r.operator, **({"values": r.values} if r.values else {})}
                for r in self.requirements]
        if self.instance_types:
            reqs.append({"key": "node.kubernetes.io/instance-type", "operator": "In",
                         "values": list(self.instance_types)})
        reqs.append({"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(self.capacity_types)})
        group, kind = (("eks.amazonaws.com", "NodeClass") if cluster.auto_mode
                       else ("karpenter.k8s.aws", "EC2NodeClass"))
        template: dict[str, Any] = {"spec": {
            "nodeClassRef": {"group": group, "kind": kind, "name": self.nodeclass},
            "requirements": reqs, "expireAfter": self.expire_after}}
        if self.labels:
            template["metadata"] = {"labels": dict(self.labels)}
        if self.taints:
            template["spec"]["taints"] = [t.to_k8s() for t in self.taints]
        if self.startup_taints:
            template["spec"]["startupTaints"] = [t.to_k8s() for t in self.startup_taints]
        spec: dict[str, Any] = {"template": template, "disruption": {
            "consolidationPolicy": self.disruption.consolidation_policy,
            "consolidateAfter": self.disruption.consolidate_after,
            "budgets": copy.deepcopy(self.disruption.budgets)}}
        if self.limits:
            spec["limits"] = dict(self.limits)
        if self.weight is not None:
            spec["weight"] = self.weight
        return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool",
                "metadata": {"name": self.name}, "spec": spec}


@dataclass
class NodeClassSpec:
    name: str = "default"
    role: str | None = None                              # default KarpenterNodeRole-<cluster>
    ami_alias: str = "al2023@latest"
    subnet_tags: dict[str, str] = field(default_factory=dict)          # default discovery tag
    security_group_tags: dict[str, str] = field(default_factory=dict)  # default discovery tag
    ready: bool = True

    def manifest(self, cluster: ClusterSpec) -> dict[str, Any]:
        """EC2NodeClass (karpenter.k8s.aws/v1) or, on Auto Mode, NodeClass (eks.amazonaws.com/v1)."""
        discovery = {"karpenter.sh/discovery": cluster.name}
        role = self.role or (f"AmazonEKSAutoNodeRole-{cluster.name}" if cluster.auto_mode
                             else f"KarpenterNodeRole-{cluster.name}")
        spec: dict[str, Any] = {
            "role": role,
            "subnetSelectorTerms": [{"tags": dict(self.subnet_tags or discovery)}],
            "securityGroupSelectorTerms": [{"tags": dict(self.security_group_tags or discovery)}],
        }
        if cluster.auto_mode:
            api_version, kind = "eks.amazonaws.com/v1", "NodeClass"
            spec["ephemeralStorage"] = {"size": "80Gi", "iops": 3000, "throughput": 125}
        else:
            api_version, kind = "karpenter.k8s.aws/v1", "EC2NodeClass"
            spec["amiSelectorTerms"] = [{"alias": self.ami_alias}]
        status = "True" if self.ready else "False"
        reason = "Ready" if self.ready else "SubnetsNotFound"
        message = "" if self.ready else "SubnetSelector did not match any Subnets"
        conditions = [{"type": t, "status": status if t in ("Ready", "SubnetsReady") else "True",
                       "reason": reason if t in ("Ready", "SubnetsReady") else t,
                       "message": message if t in ("Ready", "SubnetsReady") else "",
                       "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}
                      for t in ("Ready", "SubnetsReady", "SecurityGroupsReady", "InstanceProfileReady")]
        return {"apiVersion": api_version, "kind": kind, "metadata": {"name": self.name},
                "spec": spec, "status": {"conditions": conditions}}


@dataclass
class EfaPluginSpec:
    installed: bool = True
    tolerates_gpu_taint: bool = True


@dataclass
class GpuOperatorSpec:
    installed: bool = False
    state: Literal["ready", "notReady", "ignored"] = "ready"


@dataclass
class NvidiaRuntimeSpec:
    """How GPUs reach containers on the GPU nodes. Defaults are the upstream defaults, which leak: the device
    plugin's `deviceListStrategy` defaults to `envvar` (NVIDIA/k8s-device-plugin@1b826acc README, DEVICE_LIST_STRATEGY
    "(default 'envvar')") and the NVIDIA Container Toolkit honours NVIDIA_VISIBLE_DEVICES from unprivileged containers
    (NVIDIA/nvidia-container-toolkit@d34b3046 api/config/v1/config.go: AcceptEnvvarUnprivileged: true), so a pod
    without a GPU request in a CUDA image (ENV NVIDIA_VISIBLE_DEVICES=all) sees every GPU of its node. Hardened:
    `volume-mounts` + `accept-nvidia-visible-devices-as-volume-mounts = true` +
    `accept-nvidia-visible-devices-envvar-when-unprivileged = false`."""

    device_list_strategy: Literal["envvar", "volume-mounts"] = "envvar"
    accept_envvar_when_unprivileged: bool = True


@dataclass
class OperatorsSpec:
    # "none" on an Auto Mode cluster means EKS manages the plugin invisibly (GPUs still appear).
    nvidia_device_plugin: Literal["helm", "static", "gpu-operator", "none"] = "helm"
    gpu_feature_discovery: bool = True
    efa_device_plugin: EfaPluginSpec = field(default_factory=EfaPluginSpec)
    mpi_operator: bool = True
    gpu_operator: GpuOperatorSpec = field(default_factory=GpuOperatorSpec)
    nvidia_runtime: NvidiaRuntimeSpec = field(default_factory=NvidiaRuntimeSpec)


@dataclass
class KarpenterSpec:
    launch: float = 1.0
    register: float = 1.0
    initialize: float = 0.5
    ready: float = 0.5
    gpu_allocatable_after_ready: float = 0.0


@dataclass
class KubeletSpec:
    image_pull_seconds: float = 0.1
    image_pull_seconds_per_image: dict[str, float] = field(default_factory=dict)  # glob -> seconds
    unpullable_images: list[str] = field(default_factory=list)                   # globs
    max_starting_containers: int = 64   # container processes starting at once on this machine (the rest queue)
    # A node's root volume: Karpenter's default EBS for its AMI families is 20Gi (aws/karpenter-provider-aws
    # pkg/providers/amifamily/resolver.go DefaultEBS), as is the EKS AMI's (awslabs/amazon-eks-ami issue #13); the AMI
    # itself takes about 1.5 GB of it (awslabs/amazon-eks-ami pull request #163). An image larger than what is left
    # cannot be unpacked (aws/karpenter-provider-aws issue #3692: "no space left on device").
    root_volume_gib: float = 20.0
    os_disk_gb: float = 1.5
    hard_timeout_seconds: float = 600.0
    heartbeat_seconds: float = 300.0     # nodeStatusReportFrequency (heartbeats proper go to Leases)
    # images the catalog (sim/tools/images.py) lacks: glob -> {absolute path in the image: provider}, provider one of
    # `fake:<tool>`, `host:<binary>`, `python3`, `python3+torch`; on top of a shell and coreutils
    images: dict[str, dict[str, str]] = field(default_factory=dict)

    def pull_seconds(self, image: str) -> float:
        for pattern, seconds in self.image_pull_seconds_per_image.items():
            if fnmatch.fnmatchcase(image, pattern):
                return seconds
        return self.image_pull_seconds

    def is_unpullable(self, image: str) -> bool:
        return any(fnmatch.fnmatchcase(image, p) for p in self.unpullable_images)


@dataclass
class NcclSpec:
    # what the default nccl-tests image holds (its tag, options.DEFAULT_NCCL_IMAGE: cuda12.8.1, aws-ofi-nccl v1.16.0,
    # NCCL v2.27.5-1, nccl-tests v2.16.4)
    version: str = "2.27.5"
    cuda: str = "12.8"
    tests_version: str = "2.16.4"
    ofi_plugin_version: str = "1.16.0"
    libfabric_version: str = "2.1"
    intra_efficiency: float = 0.53     # busbw reached at large sizes / NVLink GB/s per GPU
    # busbw reached at large sizes / (per-node EFA Gbps / 8). Above 1 on purpose: the bus-bandwidth
    # formula counts 2(n-1)/n of the data while NVLink carries the intra-node part, so published
    # 2x p5.48xlarge runs reach ~437-444 GB/s over 400 GB/s of EFA (tests/data/nccl-tests samples).
    inter_efficiency: float = 1.11
    pcie_efficiency: float = 0.75
    latency_us: float = 12.0
    inter_latency_us: float = 30.0
    noise: float = 0.02
    socket_gbs: float = 1.2            # busbw ceiling with the Socket transport, GB/s
    low_bandwidth_factor: float = 0.4
    seed: int = 0


@dataclass
class ApiSpec:
    error_rate: float = 0.0
    seed: int = 0
    kinds: list[int | str] = field(default_factory=lambda: [429, 500, 503, "drop"])
    retry_after_seconds: int = 1

    def _check(self, ctx: Any) -> None:
        bad = [k for k in self.kinds if k not in (429, 500, 503, "drop")]
        if bad:
            ctx.error("kinds", f"api.kinds accepts 429, 500, 503 and drop; given {bad}")
        if not 0.0 <= self.error_rate < 1.0:
            ctx.error("error_rate", f"api.error_rate must be in [0, 1), given {self.error_rate}")


@dataclass
class SubnetSpec:
    zone: str
    cidr: str
    public: bool = False
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class SecurityGroupSpec:
    name: str
    description: str = ""
    self_rule: bool = True
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class AwsSpec:
    enabled: bool = False
    region: str | None = None            # default cluster.region
    account_id: str = "123456789012"
    cluster_name: str | None = None      # default cluster.name
    vpc_cidr: str = "10.0.0.0/16"
    node_role: str | None = None
    discovery_tag_key: str = "karpenter.sh/discovery"
    subnets: list[SubnetSpec] = field(default_factory=list)
    security_groups: list[SecurityGroupSpec] = field(default_factory=list)


@dataclass
class RbacSpec:
    restrict: bool = False


@dataclass
class FaultSpec:
    kind: str
    nodes: list[int | str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    _extra_into = "params"               # unknown keys of a fault are its parameters

    def _check(self, ctx: Any) -> None:
        for key, message in problems(self.kind, set(self.params)):
            ctx.error(key, message)


def resolve_sample(ref: str, base_dir: Path) -> Path:
    """`sample:<path>` -> packaged sample; otherwise a path relative to the scenario file."""
    if ref.startswith("sample:"):
        return SAMPLES_DIR / ref[len("sample:"):]
    path = Path(ref)
    return path if path.is_absolute() else base_dir / path
