"""`nvidia-smi topo -m`: the connection matrix between GPUs and NICs (NV#, PIX, PXB, PHB, NODE, SYS), CPU and NUMA
affinity per GPU, and the NIC legend (NIC0 -> mlx5_0 / rdmap...)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ._text import ParseError

KIND = "topo"
__all__ = ["TopoMatrix", "parse_topo"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_DEVICE = re.compile(r"^(?:GPU\d+|NIC\d+|mlx\d+_\d+|rdmap\w+|efa_\d+|\w+_\d+)$")
_NIC_LEGEND = re.compile(r"^\s*(?P<nic>NIC\d+): (?P<name>\S+)\s*$")
_TRAILING = ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")


@dataclass
class TopoMatrix:
    devices: list[str] = field(default_factory=list)
    links: dict[str, dict[str, str]] = field(default_factory=dict)     # row -> column -> code
    cpu_affinity: dict[str, str] = field(default_factory=dict)
    numa_affinity: dict[str, str] = field(default_factory=dict)
    nic_names: dict[str, str] = field(default_factory=dict)

    @property
    def gpus(self) -> list[str]:
        return [d for d in self.devices if d.startswith("GPU")]

    def link(self, a: str, b: str) -> str | None:
        return self.links.get(a, {}).get(b)

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "devices": self.devices, "links": self.links, "cpu_affinity": self.cpu_affinity,
                "numa_affinity": self.numa_affinity, "nic_names": self.nic_names}


def _cells(line: str) -> list[str]:
    if "\t" in line:
        return [c.strip() for c in line.split("\t")]
    return [c.strip() for c in re.split(r"\s{2,}", line.strip())]


def parse_topo(text: str) -> TopoMatrix:
    lines = [_ANSI.sub("", raw).rstrip() for raw in text.replace("\r", "").split("\n")]
    head = next((i for i, ln in enumerate(lines) if re.match(r"^\s*GPU0(\s|$)", ln)), None)
    if head is None:
        raise ParseError(KIND, "no header line starting with GPU0")
    header = [c for c in _cells(lines[head]) if c]
    devices = []
    for cell in header:
        if cell in _TRAILING:
            break
        devices.append(cell)
    trailing = header[len(devices):]
    out = TopoMatrix(devices=devices)
    for ln in lines[head + 1:]:
        if not ln.strip() or ln.strip().startswith("Legend"):
            if out.links:
                break
            continue
        cells = _cells(ln)
        if "\t" not in ln:
            cells = [c for c in cells if c]
        if not cells or not _DEVICE.match(cells[0]):
            break
        row, values = cells[0], cells[1:]
        out.links[row] = {d: values[i] for i, d in enumerate(devices) if i < len(values) and values[i]}
        rest = values[len(devices):]
        for name, value in zip(trailing, rest):
            if name == "CPU Affinity" and value:
                out.cpu_affinity[row] = value
            elif name == "NUMA Affinity" and value:
                out.numa_affinity[row] = value
    for ln in lines:
        if (m := _NIC_LEGEND.match(ln)):
            out.nic_names[m["nic"]] = m["name"]
    if not out.links:
        raise ParseError(KIND, "a header but no matrix rows")
    return out
