"""`nvidia-smi nvlink -s` (link status): per GPU, each link's speed in GB/s or inactive, or why there are none."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

KIND = "nvlink"
__all__ = ["NvlinkGpu", "NvlinkResult", "parse_nvlink"]

_GPU = re.compile(r"^GPU (?P<index>\d+): (?P<name>.+?)(?: \(UUID: (?P<uuid>[^)]+)\))?\s*$")
_LINK = re.compile(r"^Link (?P<link>\d+): (?:(?P<speed>[\d.]+) GB/s|<?(?P<state>[Ii]nactive)>?)")


@dataclass
class NvlinkGpu:
    index: int
    name: str
    uuid: str | None
    links: dict[int, float | None] = field(default_factory=dict)   # link -> GB/s, None = inactive
    note: str | None = None           # what nvidia-smi printed instead of links

    @property
    def active(self) -> list[int]:
        return [k for k, v in self.links.items() if v is not None]

    @property
    def inactive(self) -> list[int]:
        return [k for k, v in self.links.items() if v is None]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "uuid": self.uuid,
                "links": {str(k): v for k, v in self.links.items()}, "note": self.note}


@dataclass
class NvlinkResult:
    gpus: list[NvlinkGpu] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # lines outside any GPU block

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "gpus": [g.to_json() for g in self.gpus], "notes": self.notes}


def parse_nvlink(text: str) -> NvlinkResult:
    """Never raises: empty output (GPUs without NVLink print nothing on some drivers) is an empty result."""
    out = NvlinkResult()
    current: NvlinkGpu | None = None
    for raw in text.replace("\r", "").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if (g := _GPU.match(line)):
            current = NvlinkGpu(int(g["index"]), g["name"].strip(), g["uuid"])
            out.gpus.append(current)
        elif (lk := _LINK.match(line)) and current is not None:
            current.links[int(lk["link"])] = float(lk["speed"]) if lk["speed"] else None
        elif current is not None:
            current.note = f"{current.note}; {line}" if current.note else line
        else:
            out.notes.append(line)
    return out
