"""Hardware catalog of the simulated cluster: EC2 instance types, their GPUs, EFA and node sizes."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

# Sources for the numbers below (checked against the public AWS pages):
# - GPU count, GPU memory, vCPU, memory, network bandwidth, EFA support and EFA interface count:
#   https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html (accelerated computing specs) and
#   https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa.html#efa-instance-types
# - GPUDirect RDMA: p4d/p4de/p5/p5e/p5en only ("GPUDirect RDMA" rows of the instance pages);
#   g4dn/g5/g6/g6e have EFA but no GPUDirect RDMA.
# - NVLink: A100 SXM4 600 GB/s, H100/H200 SXM5 900 GB/s per GPU (NVIDIA data sheets).
# - Max pods: amazon-eks-ami `eni-max-pods.txt` (VPC CNI without prefix delegation).
# - MiB values are the `Memory-Usage` totals nvidia-smi prints (shared/samples/nvidia-smi/*):
#   H100 80GB HBM3 81559MiB, H200 143771MiB, L4 23034MiB, A10G 23028MiB; A100 from the 450-era
#   samples (40536MiB for 40GB); A100 80GB 81920MiB; T4 15360MiB; L40S 46068MiB.


@dataclass(frozen=True)
class GpuModel:
    """One GPU model as nvidia-smi and GPU Feature Discovery name it."""

    name: str                  # nvidia-smi name, e.g. "NVIDIA H100 80GB HBM3"
    memory_mib: int            # total as nvidia-smi prints it
    power_cap_w: int
    compute_cap: str           # "9.0"
    architecture: str          # GFD nvidia.com/gpu.family
    nvlink_gbs: float          # NVLink bandwidth per GPU in GB/s; 0 = PCIe only
    pcie_gbs: float            # usable PCIe bandwidth per GPU in GB/s
    mig_capable: bool = False
    # Health facts the fake nvidia-smi / dcgmi print (sources: profiles/default.yaml [HLT]; link speeds as
    # `nvidia-smi nvlink -s` prints them in tests/data/nvlink).
    nvlink_links: int = 0
    nvlink_link_gbs: float = 0.0
    pcie_gen: int = 4
    device_id: str = ""        # PCI device id as DCGM prints it (entity_groups)
    # PCIe generation an idle GPU's link drops to (None: stays at max). The nvidia-smi manual (GPU Link Info,
    # current): "These may be reduced when the GPU is not in use"; NVIDIA's forum answer to "Prevent PCIe From
    # Reducing Gen?": "Downgrading the PCIe link when not in use is an important integral part of the GPU's power
    # management", and idle cards show 2.5 GT/s (Gen 1) there. Modelled on the PCIe cards of the g families (T4, A10G,
    # L4, L40S); the idle H200 HGX capture (tests/data/nvidia-smi/q-h200-590-idle.txt) prints Gen 5.
    idle_pcie_gen: int | None = None
    # NVML GPU fabric info (nvmlDeviceGetGpuFabricInfo, `Fabric / State` in -q) is "for Hopper or newer fully supported
    # devices" (NVML API reference): A100 prints `N/A` there even on NVSwitch boards, as GPUs without it do
    # (tests/data/nvidia-smi-health/q-l40s-595-idle.txt layout).
    fabric_info: bool = False

    @property
    def gfd_product(self) -> str:
        """GFD `nvidia.com/gpu.product` label value: spaces replaced by dashes."""
        return self.name.replace(" ", "-")

    @property
    def memory_gb_label(self) -> int:
        """GFD `nvidia.com/gpu.memory` is in MiB."""
        return self.memory_mib


GPU_MODELS: dict[str, GpuModel] = {
    "T4": GpuModel("Tesla T4", 15360, 70, "7.5", "turing", 0, 12.0, pcie_gen=3, device_id="1eb8", idle_pcie_gen=1),
    "A10G": GpuModel("NVIDIA A10G", 23028, 300, "8.6", "ampere", 0, 24.0, idle_pcie_gen=1),
    "L4": GpuModel("NVIDIA L4", 23034, 72, "8.9", "ada-lovelace", 0, 24.0, idle_pcie_gen=1),
    "L40S": GpuModel("NVIDIA L40S", 46068, 350, "8.9", "ada-lovelace", 0, 24.0, idle_pcie_gen=1),
    "A100-40GB": GpuModel("NVIDIA A100-SXM4-40GB", 40960, 400, "8.0", "ampere", 600, 24.0, True, 12, 25.0, 4, "20b0"),
    "A100-80GB": GpuModel("NVIDIA A100-SXM4-80GB", 81920, 400, "8.0", "ampere", 600, 24.0, True, 12, 25.0, 4, "20b2"),
    "H100": GpuModel("NVIDIA H100 80GB HBM3", 81559, 700, "9.0", "hopper", 900, 50.0, True, 18, 26.562, 5, "2330",
                     fabric_info=True),
    "H200": GpuModel("NVIDIA H200", 143771, 700, "9.0", "hopper", 900, 50.0, True, 18, 26.562, 5, "2335",
                     fabric_info=True),
    # Blackwell (profiles/default.yaml [SMI6]/[NVL6]): names, MiB and power caps as public nvidia-smi captures print
    # them; NVLink 5 1.8 TB/s per GPU over 18 links (50 GB/s per link and direction: derived, no `nvlink -s` capture);
    # compute capability 10.0 (sm_100) for B200, 10.3 for B300 (sim only); PCI device ids unknown (left empty).
    "B200": GpuModel("NVIDIA B200", 183359, 1000, "10.0", "blackwell", 1800, 50.0, True, 18, 50.0, 5, fabric_info=True),
    "B300": GpuModel("NVIDIA B300 SXM6 AC", 275040, 1100, "10.3", "blackwell", 1800, 50.0, True, 18, 50.0, 5,
                     fabric_info=True),
    # g7e (profiles/default.yaml [AC6]): RTX PRO 6000 Blackwell Server Edition, compute capability 12.0 (sm_120);
    # name, 97887 MiB and the 600 W cap as public `nvidia-smi --query-gpu` captures print them (exact-string search;
    # none in shared/samples); PCIe Gen5 x16, no NVLink.
    "RTXPRO6000": GpuModel("NVIDIA RTX PRO 6000 Blackwell Server Edition", 97887, 600, "12.0", "blackwell", 0, 50.0,
                           pcie_gen=5),
}

# PCI bus ids of the 8 GPUs on HGX boards as nvidia-smi shows them (p5: h100-x8-550 sample).
_HGX_H100_BUS = ["53", "64", "75", "86", "97", "A8", "B9", "CA"]
_HGX_A100_BUS = ["10:1C", "10:1D", "20:1C", "20:1D", "90:1C", "90:1D", "A0:1C", "A0:1D"]
_PCIE_BUS = ["1E", "1F", "20", "21", "22", "23", "24", "25"]


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type with what a node of that type offers."""

    name: str
    vcpu: int
    memory_gib: int
    network_gbps: float
    gpu_model: GpuModel | None = None
    gpus: int = 0
    efa: int = 0                     # EFA interfaces (0 = EFA not supported)
    gpudirect_rdma: bool = False
    max_pods: int = 58
    arch: str = "amd64"

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def size(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def generation(self) -> str:
        digits = "".join(ch for ch in self.family.split("-")[0] if ch.isdigit())   # p6-b200 -> 6
        return digits or "0"

    @property
    def category(self) -> str:
        return "".join(ch for ch in self.family if ch.isalpha())[:1]

    @property
    def is_gpu(self) -> bool:
        return self.gpus > 0

    @property
    def efa_supported(self) -> bool:
        return self.efa > 0

    def gpu_bus_ids(self) -> list[str]:
        """nvidia-smi style bus ids (`00000000:53:00.0`) of the GPUs of one node."""
        if self.gpu_model is None:
            return []
        if self.gpu_model.name.startswith(("NVIDIA H100", "NVIDIA H200", "NVIDIA B200", "NVIDIA B300")):
            return [f"00000000:{b}:00.0" for b in _HGX_H100_BUS[: self.gpus]]
        if self.gpu_model.name.startswith("NVIDIA A100"):
            return [f"00000000:{b}.0" for b in _HGX_A100_BUS[: self.gpus]]
        return [f"00000000:00:{b}.0" for b in _PCIE_BUS[: self.gpus]]

    def efa_domains(self) -> list[str]:
        """EFA device names (`rdmap79s0`) as libfabric domains use them, one per interface."""
        if self.efa == 0:
            return []
        if self.family == "p4d" or self.family == "p4de":
            return ["rdmap16s27", "rdmap32s27", "rdmap144s27", "rdmap160s27"][: self.efa]
        # p5 samples show rdmap79s0 .. rdmap201s0; spread deterministic ids over that range.
        start, stop = (79, 202) if self.efa > 4 else (155, 190)
        step = max(1, (stop - start) // max(1, self.efa))
        return [f"rdmap{start + i * step}s0" for i in range(self.efa)]

    def allocatable(self) -> dict[str, str]:
        """cpu/memory/pods allocatable as the EKS AMI bootstrap computes them (kube-reserved + eviction)."""
        cpu_m = self.vcpu * 1000 - _kube_reserved_cpu_m(self.vcpu)
        mem_mi = self.memory_gib * 1024 - (255 + 11 * self.max_pods) - 100
        # The EFA installer reserves 2 MiB huge pages on EFA nodes (a real p4de shows 21122Mi
        # allocatable: shared/samples/k8s/describe-node-p4de-allocatable-efa-fragment.txt).
        huge_mi = _EFA_HUGEPAGES_MI if self.efa else 0
        return {"cpu": f"{cpu_m}m", "memory": f"{mem_mi - huge_mi}Mi", "pods": str(self.max_pods),
                "ephemeral-storage": "95491281146", "hugepages-1Gi": "0", "hugepages-2Mi": f"{huge_mi}Mi"}

    def capacity(self) -> dict[str, str]:
        return {"cpu": str(self.vcpu), "memory": f"{self.memory_gib * 1024 * 1024}Ki",
                "pods": str(self.max_pods), "ephemeral-storage": "104845292Ki",
                "hugepages-1Gi": "0", "hugepages-2Mi": f"{_EFA_HUGEPAGES_MI if self.efa else 0}Mi"}

    def with_overrides(self, *, gpus: int | None = None, efa: int | None = None) -> InstanceType:
        """A copy with a different GPU or EFA count (scenario node-group overrides)."""
        return replace(self, gpus=self.gpus if gpus is None else gpus,
                       efa=self.efa if efa is None else efa)


_EFA_HUGEPAGES_MI = 21122


def _kube_reserved_cpu_m(vcpu: int) -> int:
    """EKS AMI: 6% of the first core, 1% of the second, 0.5% of cores 3-4, 0.25% above 4."""
    reserved = 60.0
    if vcpu > 1:
        reserved += 10
    if vcpu > 2:
        reserved += 5 * (min(vcpu, 4) - 2)
    if vcpu > 4:
        reserved += 2.5 * (vcpu - 4)
    return int(reserved)


def _gpu_sizes(family: str, model: str, rows: list[tuple[str, int, int, int, float, int, int]],
               rdma: bool = False) -> dict[str, InstanceType]:
    out: dict[str, InstanceType] = {}
    for size, gpus, vcpu, mem, gbps, efa, max_pods in rows:
        name = f"{family}.{size}"
        out[name] = InstanceType(name, vcpu, mem, gbps, GPU_MODELS[model], gpus, efa, rdma, max_pods)
    return out


def _cpu_sizes(family: str, rows: list[tuple[str, int, int, float, int]]) -> dict[str, InstanceType]:
    return {f"{family}.{s}": InstanceType(f"{family}.{s}", v, m, g, max_pods=p) for s, v, m, g, p in rows}


# (size, gpus, vcpu, memory GiB, network Gbps, EFA interfaces, max pods)
INSTANCE_TYPES: dict[str, InstanceType] = {
    **_gpu_sizes("g4dn", "T4", [
        ("xlarge", 1, 4, 16, 25, 0, 29), ("2xlarge", 1, 8, 32, 25, 0, 29),
        ("4xlarge", 1, 16, 64, 25, 0, 29), ("8xlarge", 1, 32, 128, 50, 1, 58),
        ("12xlarge", 4, 48, 192, 50, 1, 234), ("16xlarge", 1, 64, 256, 50, 1, 58),
        ("metal", 8, 96, 384, 100, 1, 737)]),
    **_gpu_sizes("g5", "A10G", [
        ("xlarge", 1, 4, 16, 10, 0, 58), ("2xlarge", 1, 8, 32, 10, 0, 58),
        ("4xlarge", 1, 16, 64, 25, 0, 234), ("8xlarge", 1, 32, 128, 25, 1, 234),
        ("12xlarge", 4, 48, 192, 40, 1, 737), ("16xlarge", 1, 64, 256, 25, 1, 234),
        ("24xlarge", 4, 96, 384, 50, 1, 737), ("48xlarge", 8, 192, 768, 100, 1, 345)]),
    **_gpu_sizes("g6", "L4", [
        ("xlarge", 1, 4, 16, 10, 0, 58), ("2xlarge", 1, 8, 32, 10, 0, 58),
        ("4xlarge", 1, 16, 64, 25, 0, 234), ("8xlarge", 1, 32, 128, 25, 1, 234),
        ("12xlarge", 4, 48, 192, 40, 1, 234), ("16xlarge", 1, 64, 256, 25, 1, 737),
        ("24xlarge", 4, 96, 384, 50, 1, 737), ("48xlarge", 8, 192, 768, 100, 1, 737)]),
    **_gpu_sizes("g6e", "L40S", [
        ("xlarge", 1, 4, 32, 20, 0, 58), ("2xlarge", 1, 8, 64, 20, 0, 58),
        ("4xlarge", 1, 16, 128, 20, 0, 234), ("8xlarge", 1, 32, 256, 25, 1, 234),
        ("12xlarge", 4, 48, 384, 100, 1, 234), ("16xlarge", 1, 64, 512, 35, 1, 737),
        ("24xlarge", 4, 96, 768, 200, 2, 737), ("48xlarge", 8, 192, 1536, 400, 4, 737)]),
    **_gpu_sizes("p4d", "A100-40GB", [("24xlarge", 8, 96, 1152, 400, 4, 737)], rdma=True),
    **_gpu_sizes("p4de", "A100-80GB", [("24xlarge", 8, 96, 1152, 400, 4, 737)], rdma=True),
    **_gpu_sizes("p5", "H100", [("48xlarge", 8, 192, 2048, 3200, 32, 100)], rdma=True),
    # p5.4xlarge: 1 H100, 16 vCPU, 256 GiB, 100 Gbps, 1 EFA (ac.html); no GPUDirect RDMA expected (profile);
    # max pods by eni-max-pods' formula: 4 interfaces x (30 IPs - 1) + 2 = 118.
    **_gpu_sizes("p5", "H100", [("4xlarge", 1, 16, 256, 100, 1, 118)]),
    # p6-b200 / p6-b300 (ac.html, efa-acc-inst-types): 8 B200, 192 vCPU, 2048 GiB, 3200 Gbps, 8 EFA; 8 B300,
    # 192 vCPU, 4096 GiB, 6400 Gbps, 16 EFA. Max pods: p5.48xlarge's 100 (not in our eni-max-pods copy).
    # GPUDirect RDMA on: the profile does not require it (unconfirmed), a real P6 EFA path uses it.
    **_gpu_sizes("p6-b200", "B200", [("48xlarge", 8, 192, 2048, 3200, 8, 100)], rdma=True),
    **_gpu_sizes("p6-b300", "B300", [("48xlarge", 8, 192, 4096, 6400, 16, 100)], rdma=True),
    # g7e (ac.html [AC6] in profiles/default.yaml): 1 GPU up to 8xlarge, 2 on 12xlarge, 4 on 24xlarge, 8 on 48xlarge;
    # EFA on 8xlarge and larger (1, 1, 2, 4 cards); vCPU and memory per AWS's g7e page (8/64, 16/128, 32/256,
    # 48/512, 96/1024, 192/2048 GiB); max pods: not in our eni-max-pods copy, those of g6e of the same size.
    **_gpu_sizes("g7e", "RTXPRO6000", [
        ("2xlarge", 1, 8, 64, 50, 0, 58), ("4xlarge", 1, 16, 128, 50, 0, 234), ("8xlarge", 1, 32, 256, 100, 1, 234),
        ("12xlarge", 2, 48, 512, 400, 1, 234), ("24xlarge", 4, 96, 1024, 800, 2, 737),
        ("48xlarge", 8, 192, 2048, 1600, 4, 737)]),
    **_gpu_sizes("p5e", "H200", [("48xlarge", 8, 192, 2048, 3200, 32, 100)], rdma=True),
    **_gpu_sizes("p5en", "H200", [("48xlarge", 8, 192, 2048, 3200, 16, 100)], rdma=True),
    **_cpu_sizes("m5", [("large", 2, 8, 10, 29), ("xlarge", 4, 16, 10, 58), ("2xlarge", 8, 32, 10, 58),
                        ("4xlarge", 16, 64, 10, 234), ("8xlarge", 32, 128, 10, 234),
                        ("12xlarge", 48, 192, 12, 234), ("16xlarge", 64, 256, 20, 737),
                        ("24xlarge", 96, 384, 25, 737)]),
    **_cpu_sizes("m6i", [("large", 2, 8, 12.5, 29), ("xlarge", 4, 16, 12.5, 58),
                         ("2xlarge", 8, 32, 12.5, 58), ("4xlarge", 16, 64, 12.5, 234),
                         ("8xlarge", 32, 128, 12.5, 234), ("12xlarge", 48, 192, 18.75, 234),
                         ("16xlarge", 64, 256, 25, 737), ("24xlarge", 96, 384, 37.5, 737),
                         ("32xlarge", 128, 512, 50, 737)]),
    **_cpu_sizes("c5", [("large", 2, 4, 10, 29), ("xlarge", 4, 8, 10, 58), ("2xlarge", 8, 16, 10, 58),
                        ("4xlarge", 16, 32, 10, 234), ("9xlarge", 36, 72, 12, 234),
                        ("12xlarge", 48, 96, 12, 234), ("18xlarge", 72, 144, 25, 737),
                        ("24xlarge", 96, 192, 25, 737)]),
}


class UnknownInstanceType(KeyError):
    """An instance type the catalog does not know."""

    def __str__(self) -> str:
        known = ", ".join(sorted({t.family for t in INSTANCE_TYPES.values()}))
        return f"unknown instance type {self.args[0]!r}; the simulated catalog knows the families {known}"


def instance_type(name: str) -> InstanceType:
    """The catalog entry for `name`, or UnknownInstanceType."""
    try:
        return INSTANCE_TYPES[name]
    except KeyError:
        raise UnknownInstanceType(name) from None


@dataclass(frozen=True)
class GpuDevice:
    """One GPU of one concrete node (what nvidia-smi lists)."""

    index: int
    name: str
    bus_id: str
    uuid: str
    serial: str
    memory_mib: int
    power_cap_w: int
    compute_cap: str


@dataclass
class NodeHardware:
    """The hardware of one concrete node: instance type plus software versions and per-node devices."""

    instance: InstanceType
    driver_version: str = "580.105.08"
    cuda_version: str = "13.0"
    mig_mode: str = "Disabled"           # Disabled | Enabled
    mig_profile: str | None = None       # e.g. "1g.10gb" when MIG is enabled (single strategy)
    gpus: list[GpuDevice] = field(default_factory=list)
    efa_devices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (the fake tools read this from the sim context)."""
        it = self.instance
        return {
            "instance_type": it.name, "vcpu": it.vcpu, "memory_gib": it.memory_gib,
            "network_gbps": it.network_gbps, "gpudirect_rdma": it.gpudirect_rdma,
            "gpu_model": it.gpu_model.name if it.gpu_model else None,
            "nvlink_gbs": it.gpu_model.nvlink_gbs if it.gpu_model else 0.0,
            "pcie_gbs": it.gpu_model.pcie_gbs if it.gpu_model else 0.0,
            "nvlink_links": it.gpu_model.nvlink_links if it.gpu_model else 0,
            "nvlink_link_gbs": it.gpu_model.nvlink_link_gbs if it.gpu_model else 0.0,
            "pcie_gen": it.gpu_model.pcie_gen if it.gpu_model else 0,
            "device_id": it.gpu_model.device_id if it.gpu_model else "",
            "fabric_info": it.gpu_model.fabric_info if it.gpu_model else False,
            "idle_pcie_gen": it.gpu_model.idle_pcie_gen if it.gpu_model else None,
            "driver_version": self.driver_version, "cuda_version": self.cuda_version,
            "mig_mode": self.mig_mode, "mig_profile": self.mig_profile,
            "gpus": [g.__dict__ for g in self.gpus], "efa_devices": list(self.efa_devices),
        }


def node_hardware(instance: InstanceType, seed: str, *, driver_version: str | None = None,
                  cuda_version: str | None = None, mig_profile: str | None = None) -> NodeHardware:
    """Concrete devices of one node; UUIDs and serials are derived from `seed` (the node name)."""
    def _hex(tag: str, n: int) -> str:
        return hashlib.sha256(f"{seed}/{tag}".encode()).hexdigest()[:n]

    gpus: list[GpuDevice] = []
    model = instance.gpu_model
    if model is not None:
        bus_ids = instance.gpu_bus_ids()
        bus_ids += [f"00000000:{0x30 + i:02X}:00.0" for i in range(len(bus_ids), instance.gpus)]
        for i, bus in enumerate(bus_ids):
            h = _hex(f"gpu{i}", 32)
            uuid = f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
            serial = str(int(_hex(f"serial{i}", 12), 16) % 10**13).zfill(13)
            gpus.append(GpuDevice(i, model.name, bus, uuid, serial, model.memory_mib,
                                  model.power_cap_w, model.compute_cap))
    return NodeHardware(
        instance=instance,
        driver_version=driver_version or "580.105.08",
        cuda_version=cuda_version or "13.0",
        mig_mode="Enabled" if mig_profile else "Disabled",
        mig_profile=mig_profile,
        gpus=gpus,
        efa_devices=instance.efa_domains(),
    )
