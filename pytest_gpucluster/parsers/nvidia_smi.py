"""nvidia-smi: which output a text is (table, -L, CSV, -q, -q -x, an error) and its reading; `-L` lists and error
outputs are read here, the other formats by their own reader."""
from __future__ import annotations

import re

from . import nvidia_smi_csv, nvidia_smi_q, nvidia_smi_table
from ._text import Line, ParseError, is_prompt, split_lines
from .nvidia_smi_model import (
    KIND,
    Gpu,
    GpuProcess,
    MigDevice,
    NvidiaSmiResult,
    SmiError,
    product_key,
    product_matches,
)

__all__ = [
    "Gpu", "MigDevice", "GpuProcess", "SmiError", "NvidiaSmiResult", "parse_nvidia_smi",
    "product_key", "product_matches",
]

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'", "\u02bc": "'"})
_ERRORS: list[tuple[str, re.Pattern[str]]] = [
    ("driver_unreachable", re.compile(r"couldn'?t communicate with the nvidia driver", re.I)),
    ("driver_unreachable", re.compile(r"nvidia-smi has failed because it couldn", re.I)),
    ("no_devices", re.compile(r"\bno devices were found\b", re.I)),
    ("other", re.compile(r"failed to initialize nvml", re.I)),
    ("other", re.compile(r"unable to determine the device handle", re.I)),
    ("other", re.compile(r"\bGPU is lost\b", re.I)),
    ("other", re.compile(r"nvidia-smi: (?:command )?not found|executable file not found", re.I)),
    ("other", re.compile(r"nvidia-smi has failed", re.I)),
]


def detect_error(lines: list[Line]) -> SmiError | None:
    """Recognise nvidia-smi's failure texts, on one or several lines and with any apostrophe."""
    body = [ln.text.strip() for ln in lines if ln.text.strip() and not is_prompt(ln.text)]
    joined = re.sub(r"\s+", " ", " ".join(body).translate(_APOSTROPHES))
    for category, pattern in _ERRORS:
        if pattern.search(joined):
            return SmiError(category, joined)
    return None


# ---------------------------------------------------------------------------------------------
# nvidia-smi -L

_LIST_GPU = re.compile(r"^\s*GPU (\d+): (.+?) \(UUID: ([^)]+)\)\s*$")
_LIST_MIG = re.compile(r"^\s*MIG (\S+)\s+Device\s+(\d+): \(UUID: ([^)]+)\)\s*$")
_OLD_MIG_UUID = re.compile(r"^MIG-GPU-[0-9a-fA-F-]+/(\d+)/(\d+)$")


def parse_list(lines: list[Line]) -> NvidiaSmiResult:
    result = NvidiaSmiResult(format="list")
    current: Gpu | None = None
    for ln in lines:
        m = _LIST_GPU.match(ln.text)
        if m:
            current = Gpu(index=int(m.group(1)), name=m.group(2).strip(), uuid=m.group(3).strip())
            result.gpus.append(current)
            continue
        m = _LIST_MIG.match(ln.text)
        if m:
            mig = MigDevice(gpu=current.index if current else None, profile=m.group(1),
                            device=int(m.group(2)), uuid=m.group(3).strip())
            old = _OLD_MIG_UUID.match(mig.uuid or "")
            if old:  # R450/R460 spelled the GI/CI into the UUID
                mig.gi, mig.ci = int(old.group(1)), int(old.group(2))
            result.mig_devices.append(mig)
            if current is not None:
                current.mig_mode = "Enabled"
    return result


# ---------------------------------------------------------------------------------------------
# dispatch

def parse_nvidia_smi(text: str, *, fields: list[str] | None = None) -> NvidiaSmiResult:
    """Parse any nvidia-smi output: default table, -L, --query-*=... --format=csv, -q, -q -x, errors.

    `fields` names the columns of `--format=csv,noheader` output (which carries no header).
    Raises ParseError when the text is none of these.
    """
    lines = split_lines(text)
    joined = "\n".join(ln.text for ln in lines)
    if nvidia_smi_q.XML_ROOT in joined:
        return nvidia_smi_q.as_result(nvidia_smi_q.read_xml(joined), "xml")
    if nvidia_smi_q.HEADER.search(joined):
        log = nvidia_smi_q.read_text(lines)
        if not log.gpus and log.driver_version is None:
            raise ParseError(KIND, "-q output without GPU sections or driver version")
        return nvidia_smi_q.as_result(log, "query")
    if re.search(r"^\s*[|+].*NVIDIA-SMI", joined, re.M) or re.search(r"^\s*\|.*Bus-Id", joined, re.M):
        result = nvidia_smi_table.parse_table(lines)
        if result.gpus or result.driver_version or result.processes:
            return result
    if any(_LIST_GPU.match(ln.text) for ln in lines):
        return parse_list(lines)
    csv_result = nvidia_smi_csv.parse_csv(lines, fields)
    if csv_result is not None:
        return csv_result
    error = detect_error(lines)
    if error is not None:
        return NvidiaSmiResult(format="error", error=error)
    first = next((ln.text.strip() for ln in lines if ln.text.strip()), "")
    raise ParseError(KIND, f"no table, list, CSV, -q or XML output and no known error (starts with {first[:60]!r})")
