"""nvidia-smi `--query-gpu=... --format=csv` and `--query-compute-apps=... --format=csv` output."""
from __future__ import annotations

import csv
import re

from ._text import Line, is_prompt, to_int
from .nvidia_smi_model import Gpu, GpuProcess, NvidiaSmiResult, version_or_none

__all__ = ["parse_csv"]

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
