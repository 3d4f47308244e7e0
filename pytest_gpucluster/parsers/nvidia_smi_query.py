"""nvidia-smi machine-ish outputs: `--query-*=... --format=csv`, `-q` text and `-q -x` XML."""
from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ._text import Line, ParseError, dedent_block, is_prompt, to_int
from .nvidia_smi_model import KIND, Gpu, GpuProcess, MigDevice, NvidiaSmiResult, version_or_none

__all__ = ["parse_csv", "parse_query_text", "parse_xml"]

# ---------------------------------------------------------------------------------------------
# --query-gpu / --query-compute-apps CSV

_FIELD = re.compile(r"^[a-z][a-zA-Z0-9_.]*(?: \[[^\]]+\])?$")
_GPU_FIELDS = {
    "index": "index", "name": "name", "gpu_name": "name", "pci.bus_id": "bus_id", "gpu_bus_id": "bus_id",
    "uuid": "uuid", "gpu_uuid": "uuid", "memory.total": "memory_total_mib", "memory.used": "memory_used_mib",
    "mig.mode.current": "mig_mode", "ecc.errors.uncorrected.volatile.total": "ecc_errors_uncorrected",
}


def _csv_null(value: str) -> str | None:
    v = value.strip()
    if not v or v in ("N/A", "[N/A]", "Not Supported", "[Not Supported]") or (v.startswith("[") and v.endswith("]")):
        return None
    return v


def parse_csv(lines: list[Line], fields: list[str] | None = None) -> NvidiaSmiResult | None:
    """None when the lines are not nvidia-smi CSV; header optional when `fields` is given."""
    body = [ln.text.strip() for ln in lines if ln.text.strip() and not is_prompt(ln.text)]
    if not body:
        return None
    rows = list(csv.reader(body, skipinitialspace=True))
    header = [h.strip() for h in rows[0]]
    if all(_FIELD.match(h) for h in header) and any(re.sub(r" \[.*", "", h) in _GPU_FIELDS or h.startswith(("pid", "driver_version", "timestamp")) for h in header):
        data = rows[1:]
    elif fields:
        header, data = list(fields), rows
    else:
        return None
    names = [re.sub(r" \[.*", "", h) for h in header]
    result = NvidiaSmiResult(format="csv")
    apps = "pid" in names
    for row in data:
        if len(row) != len(names):
            result.warnings.append(f"CSV row has {len(row)} cells, header has {len(names)}: {','.join(row)[:80]}")
            continue
        rec = {n: _csv_null(v) for n, v in zip(names, row)}
        if rec.get("driver_version"):
            result.driver_version = version_or_none(rec["driver_version"])
        if apps:
            result.processes.append(GpuProcess(
                gpu=to_int(rec.get("gpu_index")) if rec.get("gpu_index") else None, pid=to_int(rec.get("pid")),
                name=rec.get("process_name") or rec.get("name"), memory_used_mib=to_int(rec.get("used_gpu_memory") or rec.get("used_memory")),
                gpu_uuid=rec.get("gpu_uuid"), gpu_bus_id=rec.get("gpu_bus_id")))
            continue
        gpu = Gpu()
        for name, attr in _GPU_FIELDS.items():
            value = rec.get(name)
            if value is None:
                continue
            if attr in ("index", "memory_total_mib", "memory_used_mib", "ecc_errors_uncorrected"):
                setattr(gpu, attr, to_int(value))
            else:
                setattr(gpu, attr, value)
        if gpu.mig_mode not in ("Enabled", "Disabled"):
            gpu.mig_mode = None
        result.gpus.append(gpu)
    if not result.gpus and not result.processes and data and not apps:
        return None
    return result


# ---------------------------------------------------------------------------------------------
# -q text

@dataclass
class _Node:
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


def _sum_counts(values: list[str | None]) -> int | None:
    ints = [to_int(v) for v in values if v is not None]
    known = [i for i in ints if i is not None]
    return sum(known) if known else None


def parse_query_text(lines: list[Line]) -> NvidiaSmiResult:
    texts = [ln.text for ln in lines if not is_prompt(ln.text)]
    root = _tree(texts)
    result = NvidiaSmiResult(format="query")
    result.driver_version = version_or_none(root.val("Driver Version") or root.val("KMD Version"))
    result.cuda_version = version_or_none(root.val("CUDA Version") or root.val("CUDA UMD Version"))
    gpu_nodes = [n for n in root.children if re.match(r"^GPU [0-9A-Fa-f]+:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d$", n.key)]
    attached = to_int(root.val("Attached GPUs"))
    positional = attached is not None and attached == len(gpu_nodes)
    for pos, node in enumerate(gpu_nodes):
        gpu = Gpu(index=pos if positional else None, bus_id=node.key.split(" ", 1)[1])
        gpu.name = node.val("Product Name")
        gpu.uuid = node.val("GPU UUID")
        gpu.memory_total_mib = to_int(node.val("FB Memory Usage", "Total"))
        gpu.memory_used_mib = to_int(node.val("FB Memory Usage", "Used"))
        cur, pend = node.val("MIG Mode", "Current"), node.val("MIG Mode", "Pending")
        gpu.mig_mode = cur if cur in ("Enabled", "Disabled") else None
        gpu.mig_mode_pending = pend if pend in ("Enabled", "Disabled") and pend != cur else None
        gpu.persistence_mode = node.val("Persistence Mode")
        gpu.ecc_errors_uncorrected = _text_ecc(node)
        for section in ("Clocks Event Reasons", "Clocks Throttle Reasons"):
            sec = node.get(section)
            if sec is not None:
                gpu.clock_event_reasons.update(_flatten_reasons(sec))
        result.gpus.append(gpu)
        _text_processes(result, node, gpu.index)
        _text_migs(result, node, gpu.index)
    if not gpu_nodes and result.driver_version is None:
        raise ParseError(KIND, "-q output without GPU sections or driver version")
    return result


_REASON_ALIASES = {"idle": "gpu_idle", "display_clock_setting": "display_clocks_setting",
                   "applications_clocks_setting": "applications_clocks_setting"}


def _flatten_reasons(section: _Node) -> dict[str, str]:
    out: dict[str, str] = {}
    for child in section.children:
        if child.value is not None:
            key = re.sub(r"[^a-z0-9]+", "_", child.key.lower()).strip("_")
            out[_REASON_ALIASES.get(key, key)] = child.value
        out.update(_flatten_reasons(child))
    return out


def _text_ecc(node: _Node) -> int | None:
    vol = node.get("ECC Errors", "Volatile")
    if vol is None:
        return None
    old = vol.val("Double Bit", "Total")
    if old is not None:
        return to_int(old)
    return _sum_counts([c.value for c in vol.children if "uncorrectable" in c.key.lower()])


def _text_processes(result: NvidiaSmiResult, node: _Node, index: int | None) -> None:
    procs = node.get("Processes")
    if procs is None:
        return
    current: GpuProcess | None = None
    for c in procs.children:
        if c.key == "Process ID":
            current = GpuProcess(gpu=index, pid=to_int(c.value))
            result.processes.append(current)
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


def _text_migs(result: NvidiaSmiResult, node: _Node, index: int | None) -> None:
    migs = node.get("MIG Devices")
    if migs is None:
        return
    for dev in migs.children:
        if not dev.key.startswith("MIG Device"):
            continue
        result.mig_devices.append(MigDevice(
            gpu=index, gi=to_int(dev.val("GPU Instance ID")), ci=to_int(dev.val("Compute Instance ID")),
            device=to_int(dev.val("Index")), memory_total_mib=to_int(dev.val("FB Memory Usage", "Total"))))


# ---------------------------------------------------------------------------------------------
# -q -x XML

def _x(el: ET.Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = el.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def parse_xml(text: str) -> NvidiaSmiResult:
    start = text.find("<nvidia_smi_log")
    end = text.rfind("</nvidia_smi_log>")
    if start < 0 or end < 0:
        raise ParseError(KIND, "truncated -q -x XML (no closing </nvidia_smi_log>)")
    try:  # the DOCTYPE is dropped: it names a DTD file nobody has
        root = ET.fromstring(text[start:end + len("</nvidia_smi_log>")])
    except ET.ParseError as exc:
        raise ParseError(KIND, f"malformed -q -x XML: {exc}") from exc
    result = NvidiaSmiResult(format="xml")
    result.driver_version = version_or_none(_x(root, "driver_version") or _x(root, "kmd_version"))
    result.cuda_version = version_or_none(_x(root, "cuda_version") or _x(root, "cuda_umd_version"))
    gpus = root.findall("gpu")
    attached = to_int(_x(root, "attached_gpus"))
    positional = attached is not None and attached == len(gpus)
    for pos, el in enumerate(gpus):
        gpu = Gpu(index=pos if positional else None, bus_id=el.get("id") or _x(el, "pci/pci_bus_id"))
        gpu.name = _x(el, "product_name")
        gpu.uuid = _x(el, "uuid")
        gpu.memory_total_mib = to_int(_x(el, "fb_memory_usage/total"))
        gpu.memory_used_mib = to_int(_x(el, "fb_memory_usage/used"))
        cur, pend = _x(el, "mig_mode/current_mig"), _x(el, "mig_mode/pending_mig")
        gpu.mig_mode = cur if cur in ("Enabled", "Disabled") else None
        gpu.mig_mode_pending = pend if pend in ("Enabled", "Disabled") and pend != cur else None
        gpu.persistence_mode = _x(el, "persistence_mode")
        gpu.ecc_errors_uncorrected = _xml_ecc(el.find("ecc_errors/volatile"))
        for tag in ("clocks_event_reasons", "clocks_throttle_reasons"):  # R535+ renamed the schema
            sec = el.find(tag)
            for child in (sec if sec is not None else []):
                key = re.sub(r"^clocks_(?:event|throttle)_reason_", "", child.tag)
                gpu.clock_event_reasons[key] = (child.text or "").strip()
        result.gpus.append(gpu)
        for mig in el.findall("mig_devices/mig_device"):
            result.mig_devices.append(MigDevice(
                gpu=gpu.index, gi=to_int(_x(mig, "gpu_instance_id")), ci=to_int(_x(mig, "compute_instance_id")),
                device=to_int(_x(mig, "index")), memory_total_mib=to_int(_x(mig, "fb_memory_usage/total")),
                profile=_x(mig, "profile_name")))
        for proc in el.findall("processes/process_info"):
            result.processes.append(GpuProcess(
                gpu=gpu.index, pid=to_int(_x(proc, "pid")), name=_x(proc, "process_name"),
                memory_used_mib=to_int(_x(proc, "used_memory")), type=_x(proc, "type"), gpu_bus_id=gpu.bus_id))
    return result


def _xml_ecc(volatile: ET.Element | None) -> int | None:
    if volatile is None:
        return None
    old = _x(volatile, "double_bit/total")
    if old is not None:
        return to_int(old)
    return _sum_counts([(c.text or "").strip() for c in volatile if "uncorrectable" in c.tag])
