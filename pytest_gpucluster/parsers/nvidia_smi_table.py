"""nvidia-smi default table: header versions, GPU blocks, MIG devices and processes, any layout era.

The table is read by cells (split on `|`), never by fixed columns, so the 79-column R4xx layout,
the 535/545 narrow and 550+ wide Bus-Id layouts, the 580+ `+---+` separators and R610's
`KMD Version`/`CUDA UMD Version` header all go through the same code.
"""
from __future__ import annotations

import re

from ._text import Line, to_int
from .nvidia_smi_model import Gpu, GpuProcess, MigDevice, NvidiaSmiResult, version_or_none

__all__ = ["parse_table"]

_SEPARATOR = re.compile(r"^[|+][-=+| ]*[|+]$")
_DRIVER = re.compile(r"(?:Driver|KMD) Version:\s*(\S+)")
_CUDA = re.compile(r"CUDA (?:UMD )?Version:\s*(\S+)")
_SMI = re.compile(r"NVIDIA-SMI\s+(\S+)")
_GPU_CELL = re.compile(r"^(\d+)\s+(.*?)\s*(?:\b(On|Off|N/A|WDDM|TCC|MCDM)\s*)?$")
_BUS_ID = re.compile(r"\b([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\b")
_MEMORY = re.compile(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB")
_MIG_IDS = re.compile(r"^(\d+)\s+(\d+|N/A)\s+(\d+|N/A)\s+(\d+|N/A)$")
_PROC_GI = re.compile(r"^(\d+|N/A)\s+(\d+|N/A)\s+(\d+|N/A)\s+(\d+)\s+(\S+)\s+(.*?)\s+(\d+\s*MiB|N/A)$")
_PROC_OLD = re.compile(r"^(\d+|N/A)\s+(\d+)\s+(\S+)\s+(.*?)\s+(\d+\s*MiB|N/A)$")


def _cells(line: str) -> list[str]:
    inner = line.strip()
    if inner.startswith("|"):
        inner = inner[1:]
    if inner.endswith("|"):
        inner = inner[:-1]
    return [c.strip() for c in inner.split("|")]


def parse_table(lines: list[Line]) -> NvidiaSmiResult:
    result = NvidiaSmiResult(format="table")
    section: str | None = None  # "gpus" | "mig" | "procs"
    in_data = False
    block: list[list[str]] = []
    proc_has_gi = True

    def flush() -> None:
        nonlocal block
        if block:
            if section == "gpus":
                _add_gpu(result, block)
            elif section == "mig":
                _add_mig(result, block)
        block = []

    for ln in lines:
        s = ln.text.strip()
        if not s or s[0] not in "|+":
            flush()
            if section == "procs":
                in_data = False
            continue
        if "NVIDIA-SMI" in s:
            flush()
            m = _DRIVER.search(s) or _SMI.search(s)  # old headers print only "NVIDIA-SMI <version>"
            result.driver_version = version_or_none(m.group(1)) if m else None
            c = _CUDA.search(s)
            result.cuda_version = version_or_none(c.group(1)) if c else None
            section, in_data = None, False
            continue
        if _SEPARATOR.match(s):
            if "=" in s:
                in_data = True
                continue
            flush()
            if section == "procs" and in_data:
                in_data = False
                section = None
            continue
        cells = _cells(s)
        head = cells[0]
        if head.startswith("Processes:"):
            flush()
            section, in_data, proc_has_gi = "procs", False, False
            continue
        if head.startswith("MIG devices:"):
            flush()
            section, in_data = "mig", False
            continue
        if not in_data:
            if "Bus-Id" in s:
                section = "gpus"
            if section == "procs" and re.search(r"\bGI\b", s):
                proc_has_gi = True
            continue
        if section == "procs":
            _add_process(result, " ".join(cells).strip(), proc_has_gi)
        elif section in ("gpus", "mig"):
            block.append(cells)
    flush()
    return result


def _add_gpu(result: NvidiaSmiResult, block: list[list[str]]) -> None:
    first = block[0]
    m = _GPU_CELL.match(first[0])
    if not m:
        result.warnings.append(f"unreadable GPU row: {' | '.join(first)}")
        return
    name = m.group(2).strip() or None
    gpu = Gpu(index=int(m.group(1)), persistence_mode=m.group(3))
    if name and name.endswith("..."):
        name, gpu.name_truncated = name[:-3].rstrip(), True
    gpu.name = name
    if len(first) > 1:
        b = _BUS_ID.search(first[1])
        gpu.bus_id = b.group(1) if b else None
    if len(first) > 2:
        gpu.ecc_errors_uncorrected = to_int(first[2])
    for row in block[1:]:
        if len(row) > 1:
            mem = _MEMORY.search(row[1])
            if mem and gpu.memory_total_mib is None:
                gpu.memory_used_mib, gpu.memory_total_mib = int(mem.group(1)), int(mem.group(2))
        last = row[-1] if row else ""
        mig = re.match(r"^(Enabled|Disabled)(\*)?$", last)
        if mig:
            gpu.mig_mode = mig.group(1)
            if mig.group(2):  # "Disabled*": a change is pending until the next GPU reset
                gpu.mig_mode_pending = "Enabled" if mig.group(1) == "Disabled" else "Disabled"
    result.gpus.append(gpu)


def _add_mig(result: NvidiaSmiResult, block: list[list[str]]) -> None:
    first = block[0]
    m = _MIG_IDS.match(first[0])
    if not m:
        if not re.search(r"No MIG devices found", " ".join(first), re.I):
            result.warnings.append(f"unreadable MIG row: {' | '.join(first)}")
        return
    gpu, gi, ci, dev = (None if g == "N/A" else int(g) for g in m.groups())
    mig = MigDevice(gpu=gpu, gi=gi, ci=ci, device=dev)
    if len(first) > 1:
        mem = _MEMORY.search(first[1])
        if mem:
            mig.memory_total_mib = int(mem.group(2))
    result.mig_devices.append(mig)


def _add_process(result: NvidiaSmiResult, row: str, has_gi: bool) -> None:
    if not row or re.match(r"^No running processes found", row, re.I):
        return
    m = _PROC_GI.match(row) if has_gi else None
    if m:
        gpu, _gi, _ci, pid, ptype, name, mem = m.groups()
    else:
        m = _PROC_OLD.match(row)
        if not m:
            result.warnings.append(f"unreadable process row: {row}")
            return
        gpu, pid, ptype, name, mem = m.groups()
    result.processes.append(GpuProcess(
        gpu=None if gpu == "N/A" else int(gpu), pid=int(pid), name=name.strip() or None,
        memory_used_mib=to_int(mem), type=ptype))
