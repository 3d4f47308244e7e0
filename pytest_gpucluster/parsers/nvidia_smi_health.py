"""The health sections of `nvidia-smi -q` (text and `-q -x` XML): ECC (with the 590-series replacement flags), retired
pages, row remapper, GPU recovery action, PCIe link, performance state and clocks event reasons, power limits, fabric
state, persistence mode and VBIOS, per GPU. Readers of `nvidia-smi -q` sections; the rest of -q is read by
nvidia_smi_query.py (whose tree reader this module reuses)."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any

from ._text import ParseError, to_float, to_int
from .nvidia_smi_query import _Node, _tree, _x

KIND = "nvidia-smi"
__all__ = ["GpuHealth", "SmiHealth", "parse_smi_health"]


@dataclass
class GpuHealth:
    bus_id: str
    name: str | None = None
    uuid: str | None = None
    vbios: str | None = None
    persistence_mode: str | None = None
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
    clock_events_active: list[str] = field(default_factory=list)
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
class SmiHealth:
    driver_version: str | None = None
    cuda_version: str | None = None
    gpus: list[GpuHealth] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"driver_version": self.driver_version, "cuda_version": self.cuda_version,
                "gpus": [g.to_json() for g in self.gpus]}


def _num(value: str | None) -> int | None:
    if value is None:
        return None
    m = re.match(r"\s*(\d+)", value)
    return int(m.group(1)) if m else None


def _watts(value: str | None) -> float | None:
    return to_float(value.split()[0]) if value and value.split() else None


def _uncorrectable(section: _Node | None) -> int | None:
    if section is None:
        return None
    old = section.val("Double Bit", "Total")
    if old is not None:
        return to_int(old)
    vals = [to_int(c.value) for c in section.children if c.value is not None and "uncorrectable" in c.key.lower()]
    known = [v for v in vals if v is not None]
    return sum(known) if known else None


def _active_reasons(section: _Node | None) -> list[str]:
    out: list[str] = []
    if section is None:
        return out
    for child in section.children:
        if child.value is not None and child.value.strip().lower() == "active":
            out.append(child.key)
        out += _active_reasons(child)
    return out


def _text(text: str) -> SmiHealth:
    root = _tree([ln for ln in text.replace("\r", "").split("\n")])
    out = SmiHealth(driver_version=root.val("Driver Version"), cuda_version=root.val("CUDA Version"))
    for node in root.children:
        if not re.match(r"^GPU [0-9A-Fa-f]+:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d$", node.key):
            continue
        g = GpuHealth(bus_id=node.key.split(" ", 1)[1], name=node.val("Product Name"), uuid=node.val("GPU UUID"),
                      vbios=node.val("VBIOS Version"), persistence_mode=node.val("Persistence Mode"),
                      ecc_mode=node.val("ECC Mode", "Current"))
        g.ecc_volatile_uncorrectable = _uncorrectable(node.get("ECC Errors", "Volatile"))
        g.ecc_aggregate_uncorrectable = _uncorrectable(node.get("ECC Errors", "Aggregate"))
        ret = node.get("Retired Pages")
        if ret is not None:
            g.retired_sbe = _num(ret.val("Single Bit ECC")) if ret.val("Single Bit ECC") != "N/A" else None
            g.retired_dbe = _num(ret.val("Double Bit ECC")) if ret.val("Double Bit ECC") != "N/A" else None
            pend = ret.val("Pending Page Blacklist") or ret.val("Pending Page Retirement")
            g.retired_pending = pend if pend not in (None, "N/A") else None
        rows = node.get("Remapped Rows")
        if rows is not None and rows.value in (None, ""):
            g.remapped_correctable = _num(rows.val("Correctable Error"))
            g.remapped_uncorrectable = _num(rows.val("Uncorrectable Error"))
            g.remap_pending = rows.val("Pending")
            g.remap_failure = rows.val("Remapping Failure Occurred")
            hist = rows.get("Bank Remap Availability Histogram")
            for c in hist.children if hist is not None else []:
                if (n := _num(c.value)) is not None:
                    g.remap_histogram[c.key] = n
        link = node.get("PCI", "GPU Link Info")
        if link is not None:
            g.pcie_gen_max = _num(link.val("PCIe Generation", "Max"))
            g.pcie_gen_current = _num(link.val("PCIe Generation", "Current"))
            g.pcie_width_max = _num(link.val("Link Width", "Max"))
            g.pcie_width_current = _num(link.val("Link Width", "Current"))
        for section in ("Clocks Event Reasons", "Clocks Throttle Reasons"):
            g.clock_events_active += _active_reasons(node.get(section))
        power = node.get("GPU Power Readings") or node.get("Power Readings")
        if power is not None:
            g.power_limit_w = _watts(power.val("Current Power Limit") or power.val("Power Limit"))
            g.power_limit_default_w = _watts(power.val("Default Power Limit"))
        g.fabric_state, g.fabric_status = node.val("Fabric", "State"), node.val("Fabric", "Status")
        g.performance_state = node.val("Performance State")
        g.recovery_action = node.val("GPU Recovery Action")
        g.sram_threshold_exceeded = node.val("ECC Errors", "Aggregate", "SRAM Threshold Exceeded")
        g.unrepairable_memory = node.val("ECC Errors", "Unrepairable Memory")
        out.gpus.append(g)
    return out


def _xml(text: str) -> SmiHealth:
    start, end = text.find("<nvidia_smi_log"), text.rfind("</nvidia_smi_log>")
    try:
        root = ET.fromstring(text[start:end + len("</nvidia_smi_log>")])
    except ET.ParseError as exc:
        raise ParseError(KIND, f"malformed -q -x XML: {exc}") from exc
    out = SmiHealth(driver_version=_x(root, "driver_version"), cuda_version=_x(root, "cuda_version"))
    for el in root.findall("gpu"):
        g = GpuHealth(bus_id=el.get("id") or _x(el, "pci/pci_bus_id") or "?", name=_x(el, "product_name"),
                      uuid=_x(el, "uuid"), vbios=_x(el, "vbios_version"), persistence_mode=_x(el, "persistence_mode"),
                      ecc_mode=_x(el, "ecc_mode/current_ecc"))
        for attr, path in (("ecc_volatile_uncorrectable", "ecc_errors/volatile"),
                           ("ecc_aggregate_uncorrectable", "ecc_errors/aggregate")):
            sec = el.find(path)
            if sec is not None:
                old = _x(sec, "double_bit/total")
                vals = [to_int((c.text or "").strip()) for c in sec if "uncorrectable" in c.tag]
                known = [v for v in vals if v is not None]
                setattr(g, attr, to_int(old) if old is not None else (sum(known) if known else None))
        g.retired_sbe = _num(_x(el, "retired_pages/multiple_single_bit_retirement/retired_count"))
        g.retired_dbe = _num(_x(el, "retired_pages/double_bit_retirement/retired_count"))
        g.retired_pending = _x(el, "retired_pages/pending_blacklist") or _x(el, "retired_pages/pending_retirement")
        g.remapped_correctable = _num(_x(el, "remapped_rows/remapped_row_corr"))
        g.remapped_uncorrectable = _num(_x(el, "remapped_rows/remapped_row_unc"))
        g.remap_pending = _x(el, "remapped_rows/remapped_row_pending")
        g.remap_failure = _x(el, "remapped_rows/remapped_row_failure")
        link = "pci/pci_gpu_link_info"
        g.pcie_gen_max = _num(_x(el, f"{link}/pcie_gen/max_link_gen"))
        g.pcie_gen_current = _num(_x(el, f"{link}/pcie_gen/current_link_gen"))
        g.pcie_width_max = _num(_x(el, f"{link}/link_widths/max_link_width"))
        g.pcie_width_current = _num(_x(el, f"{link}/link_widths/current_link_width"))
        for tag in ("clocks_event_reasons", "clocks_throttle_reasons"):
            reasons = el.find(tag)
            for child in list(reasons) if reasons is not None else []:
                if (child.text or "").strip().lower() == "active":
                    g.clock_events_active.append(re.sub(r"^clocks_(?:event|throttle)_reason_", "", child.tag))
        for section in ("gpu_power_readings", "power_readings"):
            if el.find(section) is not None:
                g.power_limit_w = _watts(_x(el, f"{section}/current_power_limit") or _x(el, f"{section}/power_limit"))
                g.power_limit_default_w = _watts(_x(el, f"{section}/default_power_limit"))
                break
        g.fabric_state, g.fabric_status = _x(el, "fabric/state"), _x(el, "fabric/status")
        g.performance_state = _x(el, "performance_state")
        out.gpus.append(g)
    return out


def parse_smi_health(text: str) -> SmiHealth:
    """The health sections of `nvidia-smi -q` text or `-q -x` XML; ParseError for anything else."""
    if "<nvidia_smi_log" in text:
        return _xml(text)
    if not re.search(r"NVSMI LOG|^\s*Attached GPUs\s+:", text, re.M):
        raise ParseError(KIND, "not `nvidia-smi -q` output (no NVSMI LOG header)")
    return _text(text)
