"""The nvidia-smi result models, filled by the readers that import this module: NvidiaSmiResult (GPUs, MIG devices,
processes, errors, product names: any output, read by nvidia_smi.py for -L and errors, nvidia_smi_table.py,
nvidia_smi_csv.py and nvidia_smi_q.py) and SmiLog / SmiGpu (everything `nvidia-smi -q` and `-q -x` print per GPU,
read by nvidia_smi_q.py only)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

KIND = "nvidia-smi"


def product_key(name: str | None) -> str | None:
    """Comparable product key: `NVIDIA H100 80GB HBM3`, `NVIDIA-H100-80GB-HBM3` (GFD label) -> `H100-80GB-HBM3`.

    Drops a leading `NVIDIA`/`Tesla` brand, a trailing `...` and turns spaces/dashes/underscores
    into single dashes, upper-cased.
    """
    if not name:
        return None
    s = name.strip()
    if s.endswith("..."):
        s = s[:-3]
    s = re.sub(r"[\s_-]+", "-", s.strip(" -")).upper()
    s = re.sub(r"^(?:NVIDIA|TESLA|QUADRO|GEFORCE)-", "", s)
    s = re.sub(r"^(?:NVIDIA|TESLA)-", "", s)  # "Tesla V100" once branded "NVIDIA Tesla V100"
    return s or None


def product_matches(printed: str | None, expected: str) -> bool:
    """True when the printed GPU name is `expected` (any spelling); a truncated name matches by prefix."""
    got, want = product_key(printed), product_key(expected)
    if got is None or want is None:
        return False
    if printed and printed.rstrip().endswith("..."):
        return want.startswith(got)
    return got == want


@dataclass
class Gpu:
    index: int | None = None
    name: str | None = None
    bus_id: str | None = None
    uuid: str | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    mig_mode: str | None = None          # "Enabled" | "Disabled" | None
    ecc_errors_uncorrected: int | None = None
    # extras (not in the JSON contract)
    name_truncated: bool = False         # the table cut the name and printed "..."
    mig_mode_pending: str | None = None  # pending mode when it differs ("Disabled*" in the table)
    persistence_mode: str | None = None
    clock_event_reasons: dict[str, str] = field(default_factory=dict)  # normalised name -> "Active"/"Not Active"

    @property
    def product_key(self) -> str | None:
        return product_key(self.name)

    def matches_product(self, expected: str) -> bool:
        return product_matches(self.name if not self.name_truncated else (self.name or "") + "...", expected)

    @property
    def active_clock_event_reasons(self) -> list[str]:
        return sorted(k for k, v in self.clock_event_reasons.items() if v.strip().lower() == "active")

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index, "name": self.name, "bus_id": self.bus_id, "uuid": self.uuid,
            "memory_total_mib": self.memory_total_mib, "memory_used_mib": self.memory_used_mib,
            "mig_mode": self.mig_mode, "ecc_errors_uncorrected": self.ecc_errors_uncorrected,
        }


@dataclass
class MigDevice:
    gpu: int | None = None
    gi: int | None = None
    ci: int | None = None
    profile: str | None = None
    memory_total_mib: int | None = None
    device: int | None = None   # MIG device index on its GPU (extra)
    uuid: str | None = None     # extra (from -L)

    def to_json(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "gi": self.gi, "ci": self.ci, "profile": self.profile,
                "memory_total_mib": self.memory_total_mib}


@dataclass
class GpuProcess:
    gpu: int | None = None
    pid: int | None = None
    name: str | None = None
    memory_used_mib: int | None = None
    type: str | None = None          # extras
    gpu_uuid: str | None = None
    gpu_bus_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "pid": self.pid, "name": self.name, "memory_used_mib": self.memory_used_mib}


@dataclass
class SmiError:
    category: str  # driver_unreachable | no_devices | other
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"category": self.category, "message": self.message}


@dataclass
class NvidiaSmiResult:
    format: str  # table | list | csv | query | xml | error
    driver_version: str | None = None
    cuda_version: str | None = None
    gpus: list[Gpu] = field(default_factory=list)
    mig_devices: list[MigDevice] = field(default_factory=list)
    processes: list[GpuProcess] = field(default_factory=list)
    error: SmiError | None = None
    warnings: list[str] = field(default_factory=list)  # rows that looked like data but did not parse

    @property
    def ok(self) -> bool:
        return self.error is None

    def by_bus_id(self) -> dict[str, Gpu]:
        return {normalise_bus_id(g.bus_id): g for g in self.gpus if g.bus_id}

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND, "format": self.format, "driver_version": self.driver_version,
            "cuda_version": self.cuda_version, "gpus": [g.to_json() for g in self.gpus],
            "mig_devices": [m.to_json() for m in self.mig_devices],
            "processes": [p.to_json() for p in self.processes],
            "error": self.error.to_json() if self.error else None,
        }


@dataclass
class SmiGpu:
    """One GPU section of `nvidia-smi -q` (text) or `-q -x` (XML), as printed."""

    bus_id: str
    index: int | None = None           # the section's position, when `Attached GPUs` equals the number of sections
    name: str | None = None
    uuid: str | None = None
    vbios: str | None = None
    persistence_mode: str | None = None       # Enabled | Disabled | N/A
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    mig_mode: str | None = None               # Enabled | Disabled | None (N/A: the GPU has no MIG)
    mig_mode_pending: str | None = None       # the pending mode when it differs from the current one
    ecc_mode: str | None = None
    ecc_volatile_uncorrectable: int | None = None
    ecc_aggregate_uncorrectable: int | None = None
    retired_sbe: int | None = None
    retired_dbe: int | None = None
    retired_pending: str | None = None
    remapped_correctable: int | None = None
    remapped_uncorrectable: int | None = None
    remap_pending: str | None = None
    remap_failure: str | None = None
    remap_histogram: dict[str, int] = field(default_factory=dict)
    pcie_gen_max: int | None = None
    pcie_gen_current: int | None = None
    pcie_width_max: int | None = None
    pcie_width_current: int | None = None
    clock_events_active: list[str] = field(default_factory=list)   # the active reasons, named as printed
    clock_event_reasons: dict[str, str] = field(default_factory=dict)  # every reason, XML short name -> its value
    power_limit_w: float | None = None
    power_limit_default_w: float | None = None
    fabric_state: str | None = None
    fabric_status: str | None = None
    performance_state: str | None = None       # P0 (maximum performance) .. P12
    recovery_action: str | None = None         # NVML GPU recovery action: None, Reset, Reboot, Drain P2P, ...
    sram_threshold_exceeded: str | None = None  # ECC Errors > Aggregate (590-series drivers): Yes = replace
    unrepairable_memory: str | None = None      # ECC Errors (590-series drivers): Yes = replace

    @property
    def busy(self) -> bool:
        """Read while working: performance state P0 and the Idle clocks event reason not active (an idle GPU can sit
        in P0 with `Idle : Active`, as the H200 capture q-h200-590-idle.txt shows)."""
        idle = any(r in ("Idle", "gpu_idle") for r in self.clock_events_active)
        return self.performance_state == "P0" and not idle

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SmiLog:
    """`nvidia-smi -q` / `-q -x` output (NVIDIA calls it the NVSMI log): versions, GPU sections, their processes and
    MIG devices."""

    driver_version: str | None = None
    cuda_version: str | None = None
    gpus: list[SmiGpu] = field(default_factory=list)
    processes: list[GpuProcess] = field(default_factory=list)
    mig_devices: list[MigDevice] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"driver_version": self.driver_version, "cuda_version": self.cuda_version,
                "gpus": [g.to_json() for g in self.gpus]}


def normalise_bus_id(bus_id: str) -> str:
    """`00000000:53:00.0` and `0000:53:00.0` -> `0000:53:00.0` (lower-case, 4-digit domain)."""
    m = re.match(r"^([0-9a-fA-F]+):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$", bus_id.strip())
    if not m:
        return bus_id.strip().lower()
    dom = m.group(1)[-4:].rjust(4, "0")
    return f"{dom}:{m.group(2)}:{m.group(3)}.{m.group(4)}".lower()


def version_or_none(raw: str | None) -> str | None:
    """The version a field prints (`580.105.08`), or None for `N/A` and masked placeholders (`XXX.XX`)."""
    if raw is None:
        return None
    # R610+ drivers append a note to the deprecated fields: `610.47 [Deprecated; will be removed in CUDA 14.0. Use
    # KMD Version instead]` (tests/data/nvidia-smi/q-header-610-deprecated-version-notes-excerpt.txt): keep the version.
    match = re.match(r"^\d+(?:\.\d+)*", raw.strip())
    return match.group(0) if match else None
