"""THE reader of `nvidia-smi -q` (text) and `nvidia-smi -q -x` (XML): one pass per GPU section into SmiLog / SmiGpu
(identity, memory, MIG mode, persistence mode, ECC with the 590-series replacement flags, retired pages, row
remapper, GPU recovery action, PCIe link, performance state, clocks event reasons, power limits, fabric, VBIOS,
processes, MIG devices). `as_result` gives the same reading as the NvidiaSmiResult every nvidia-smi output has."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ._text import Line, ParseError, dedent_block, is_prompt, split_lines, to_float, to_int
from .nvidia_smi_model import KIND, Gpu, GpuProcess, MigDevice, NvidiaSmiResult, SmiGpu, SmiLog, version_or_none

__all__ = ["HEADER", "as_result", "parse_smi_log", "read_text", "read_xml"]

# How -q text begins (`==============NVSMI LOG==============`; a `-d` filtered or pasted capture may start at
# `Attached GPUs`); -q -x is an <nvidia_smi_log> document.
HEADER = re.compile(r"NVSMI LOG|^\s*Attached GPUs\s+:", re.M)
XML_ROOT = "<nvidia_smi_log"
_GPU_SECTION = re.compile(r"^GPU [0-9A-Fa-f]+:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d$")
_REASON_ALIASES = {"idle": "gpu_idle", "display_clock_setting": "display_clocks_setting"}


def parse_smi_log(text: str) -> SmiLog:
    """`nvidia-smi -q` text or `-q -x` XML; ParseError for anything else."""
    if XML_ROOT in text:
        return read_xml(text)
    if not HEADER.search(text):
        raise ParseError(KIND, "not `nvidia-smi -q` output (no NVSMI LOG header)")
    return read_text(split_lines(text))


def as_result(log: SmiLog, fmt: str) -> NvidiaSmiResult:
    """The -q reading as the result of any nvidia-smi output (format `query` or `xml`)."""
    result = NvidiaSmiResult(format=fmt, driver_version=log.driver_version, cuda_version=log.cuda_version,
                             processes=list(log.processes), mig_devices=list(log.mig_devices))
    for g in log.gpus:
        result.gpus.append(Gpu(index=g.index, name=g.name, bus_id=g.bus_id, uuid=g.uuid,
                               memory_total_mib=g.memory_total_mib, memory_used_mib=g.memory_used_mib,
                               mig_mode=g.mig_mode, ecc_errors_uncorrected=g.ecc_volatile_uncorrectable,
                               mig_mode_pending=g.mig_mode_pending, persistence_mode=g.persistence_mode,
                               clock_event_reasons=dict(g.clock_event_reasons)))
    return result


def _reason_key(name: str) -> str:
    """A clocks event reason as the XML names it: `HW Slowdown` -> `hw_slowdown`, `Idle` -> `gpu_idle`."""
    key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return _REASON_ALIASES.get(key, key)


def _mig(current: str | None, pending: str | None) -> tuple[str | None, str | None]:
    """(current, pending) MIG mode; N/A (no MIG on the GPU) is None, pending only when it differs."""
    cur = current if current in ("Enabled", "Disabled") else None
    return cur, pending if pending in ("Enabled", "Disabled") and pending != current else None


def _num(value: str | None) -> int | None:
    """The leading integer of a value (`5`, `16x`, `61 pages`); None for N/A."""
    if value is None:
        return None
    m = re.match(r"\s*(\d+)", value)
    return int(m.group(1)) if m else None


def _watts(value: str | None) -> float | None:
    return to_float(value.split()[0]) if value and value.split() else None


def _sum_counts(values: list[str | None]) -> int | None:
    known = [i for i in (to_int(v) for v in values if v is not None) if i is not None]
    return sum(known) if known else None


# -- -q text ------------------------------------------------------------------------------------------------
@dataclass
class _Node:
    """One `key : value` line of -q text and the lines indented under it."""

    key: str
    value: str | None = None
    children: list["_Node"] = field(default_factory=list)

    def get(self, *path: str) -> "_Node | None":
        node: _Node | None = self
        for part in path:
            if node is None:
                return None
            node = next((c for c in node.children if c.key.lower() == part.lower()), None)
        return node

    def val(self, *path: str) -> str | None:
        node = self.get(*path)
        return node.value if node is not None else None


_KV = re.compile(r"^(\s*)(\S.*?)\s*:(?:\s(.*))?$")


def _tree(lines: list[str]) -> _Node:
    root = _Node("")
    stack: list[tuple[int, _Node]] = [(-1, root)]
    for raw in dedent_block(lines):
        if not raw.strip() or set(raw.strip()) <= set("=") or "NVSMI LOG" in raw:
            continue
        indent = len(raw) - len(raw.lstrip())
        m = _KV.match(raw)
        if m and not re.match(r"^\s*GPU [0-9A-Fa-f]+:[0-9A-Fa-f]{2}:", raw):
            key, value = m.group(2).strip(), (m.group(3) or "").strip()
        else:
            key, value = raw.strip(), None
        while stack[-1][0] >= indent:
            stack.pop()
        node = _Node(key, value)
        stack[-1][1].children.append(node)
        stack.append((indent, node))
    return root


def _uncorrectable(section: _Node | None) -> int | None:
    """Uncorrectable ECC errors of a Volatile/Aggregate section: the old schema's `Double Bit > Total`, else the sum
    of the new schema's `... Uncorrectable ...` counters (SRAM parity/SEC-DED, DRAM)."""
    if section is None:
        return None
    old = section.val("Double Bit", "Total")
    if old is not None:
        return to_int(old)
    return _sum_counts([c.value for c in section.children if "uncorrectable" in c.key.lower()])


def _reasons(section: _Node | None, out: dict[str, str], active: list[str]) -> None:
    """Every clocks event reason under the section, nested ones (HW Slowdown's Thermal / Power Brake) included."""
    for child in section.children if section is not None else []:
        if child.value is not None:
            out[_reason_key(child.key)] = child.value
            if child.value.strip().lower() == "active":
                active.append(child.key)
        _reasons(child, out, active)


def _text_gpu(node: _Node, index: int | None) -> SmiGpu:
    g = SmiGpu(bus_id=node.key.split(" ", 1)[1], index=index, name=node.val("Product Name"),
               uuid=node.val("GPU UUID"), vbios=node.val("VBIOS Version"),
               persistence_mode=node.val("Persistence Mode"), ecc_mode=node.val("ECC Mode", "Current"),
               memory_total_mib=to_int(node.val("FB Memory Usage", "Total")),
               memory_used_mib=to_int(node.val("FB Memory Usage", "Used")))
    g.mig_mode, g.mig_mode_pending = _mig(node.val("MIG Mode", "Current"), node.val("MIG Mode", "Pending"))
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
    for section in ("Clocks Event Reasons", "Clocks Throttle Reasons"):   # R535+ renamed the section
        _reasons(node.get(section), g.clock_event_reasons, g.clock_events_active)
    power = node.get("GPU Power Readings") or node.get("Power Readings")
    if power is not None:
        g.power_limit_w = _watts(power.val("Current Power Limit") or power.val("Power Limit"))
        g.power_limit_default_w = _watts(power.val("Default Power Limit"))
    g.fabric_state, g.fabric_status = node.val("Fabric", "State"), node.val("Fabric", "Status")
    g.performance_state = node.val("Performance State")
    g.recovery_action = node.val("GPU Recovery Action")
    g.sram_threshold_exceeded = node.val("ECC Errors", "Aggregate", "SRAM Threshold Exceeded")
    g.unrepairable_memory = node.val("ECC Errors", "Unrepairable Memory")
    return g


def read_text(lines: list[Line]) -> SmiLog:
    """-q text (launcher prefixes already removed by split_lines; pasted prompt lines are skipped)."""
    root = _tree([ln.text for ln in lines if not is_prompt(ln.text)])
    log = SmiLog(driver_version=version_or_none(root.val("Driver Version") or root.val("KMD Version")),
                 cuda_version=version_or_none(root.val("CUDA Version") or root.val("CUDA UMD Version")))
    sections = [n for n in root.children if _GPU_SECTION.match(n.key)]
    attached = to_int(root.val("Attached GPUs"))
    positional = attached is not None and attached == len(sections)
    for pos, node in enumerate(sections):
        g = _text_gpu(node, pos if positional else None)
        log.gpus.append(g)
        _text_processes(log, node, g.index)
        _text_migs(log, node, g.index)
    return log


def _text_processes(log: SmiLog, node: _Node, index: int | None) -> None:
    procs = node.get("Processes")
    if procs is None:
        return
    current: GpuProcess | None = None
    for c in procs.children:
        if c.key == "Process ID":
            current = GpuProcess(gpu=index, pid=to_int(c.value))
            log.processes.append(current)
            for sub in c.children:  # nested under the PID in -q text
                _apply_proc_field(current, sub)
        elif current is not None:
            _apply_proc_field(current, c)


def _apply_proc_field(proc: GpuProcess, node: _Node) -> None:
    if node.key == "Type":
        proc.type = node.value
    elif node.key in ("Name", "Process Name"):
        proc.name = node.value
    elif node.key == "Used GPU Memory":
        proc.memory_used_mib = to_int(node.value)


def _text_migs(log: SmiLog, node: _Node, index: int | None) -> None:
    migs = node.get("MIG Devices")
    for dev in migs.children if migs is not None else []:
        if dev.key.startswith("MIG Device"):
            log.mig_devices.append(MigDevice(
                gpu=index, gi=to_int(dev.val("GPU Instance ID")), ci=to_int(dev.val("Compute Instance ID")),
                device=to_int(dev.val("Index")), memory_total_mib=to_int(dev.val("FB Memory Usage", "Total"))))


# -- -q -x XML ------------------------------------------------------------------------------------------------
def _x(el: ET.Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = el.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _xml_uncorrectable(section: ET.Element | None) -> int | None:
    if section is None:
        return None
    old = _x(section, "double_bit/total")
    if old is not None:
        return to_int(old)
    return _sum_counts([(c.text or "").strip() for c in section if "uncorrectable" in c.tag])


def _xml_gpu(el: ET.Element, index: int | None) -> SmiGpu:
    g = SmiGpu(bus_id=el.get("id") or _x(el, "pci/pci_bus_id") or "?", index=index, name=_x(el, "product_name"),
               uuid=_x(el, "uuid"), vbios=_x(el, "vbios_version"), persistence_mode=_x(el, "persistence_mode"),
               ecc_mode=_x(el, "ecc_mode/current_ecc"), memory_total_mib=to_int(_x(el, "fb_memory_usage/total")),
               memory_used_mib=to_int(_x(el, "fb_memory_usage/used")))
    g.mig_mode, g.mig_mode_pending = _mig(_x(el, "mig_mode/current_mig"), _x(el, "mig_mode/pending_mig"))
    g.ecc_volatile_uncorrectable = _xml_uncorrectable(el.find("ecc_errors/volatile"))
    g.ecc_aggregate_uncorrectable = _xml_uncorrectable(el.find("ecc_errors/aggregate"))
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
    for tag in ("clocks_event_reasons", "clocks_throttle_reasons"):  # R535+ renamed the schema
        reasons = el.find(tag)
        for child in list(reasons) if reasons is not None else []:
            key, value = re.sub(r"^clocks_(?:event|throttle)_reason_", "", child.tag), (child.text or "").strip()
            g.clock_event_reasons[key] = value
            if value.lower() == "active":
                g.clock_events_active.append(key)
    for section in ("gpu_power_readings", "power_readings"):
        if el.find(section) is not None:
            g.power_limit_w = _watts(_x(el, f"{section}/current_power_limit") or _x(el, f"{section}/power_limit"))
            g.power_limit_default_w = _watts(_x(el, f"{section}/default_power_limit"))
            break
    g.fabric_state, g.fabric_status = _x(el, "fabric/state"), _x(el, "fabric/status")
    g.performance_state = _x(el, "performance_state")
    return g


def read_xml(text: str) -> SmiLog:
    start, end = text.find(XML_ROOT), text.rfind("</nvidia_smi_log>")
    if start < 0 or end < 0:
        raise ParseError(KIND, "truncated -q -x XML (no closing </nvidia_smi_log>)")
    try:  # the DOCTYPE is dropped: it names a DTD file nobody has
        root = ET.fromstring(text[start:end + len("</nvidia_smi_log>")])
    except ET.ParseError as exc:
        raise ParseError(KIND, f"malformed -q -x XML: {exc}") from exc
    log = SmiLog(driver_version=version_or_none(_x(root, "driver_version") or _x(root, "kmd_version")),
                 cuda_version=version_or_none(_x(root, "cuda_version") or _x(root, "cuda_umd_version")))
    elements = root.findall("gpu")
    attached = to_int(_x(root, "attached_gpus"))
    positional = attached is not None and attached == len(elements)
    for pos, el in enumerate(elements):
        g = _xml_gpu(el, pos if positional else None)
        log.gpus.append(g)
        for mig in el.findall("mig_devices/mig_device"):
            log.mig_devices.append(MigDevice(
                gpu=g.index, gi=to_int(_x(mig, "gpu_instance_id")), ci=to_int(_x(mig, "compute_instance_id")),
                device=to_int(_x(mig, "index")), memory_total_mib=to_int(_x(mig, "fb_memory_usage/total")),
                profile=_x(mig, "profile_name")))
        for proc in el.findall("processes/process_info"):
            log.processes.append(GpuProcess(
                gpu=g.index, pid=to_int(_x(proc, "pid")), name=_x(proc, "process_name"),
                memory_used_mib=to_int(_x(proc, "used_memory")), type=_x(proc, "type"), gpu_bus_id=g.bus_id))
    return log
