"""The nccl-tests result model (rows, collectives, result); filled by the text reader (nccl.py) and the JSON
reader (nccl_json.py), which both import this module and not each other."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .nccl_log import NcclLogFacts

KIND = "nccl-tests"
COLLECTIVES = ("all_reduce", "all_gather", "broadcast", "reduce_scatter", "reduce", "alltoall",
               "alltoallv", "scatter", "gather", "sendrecv", "hypercube")


@dataclass
class NcclHalf:
    time_us: float
    algbw: float
    busbw: float
    wrong: float | int | None   # #wrong count (new) or max error (old `error` column); None for N/A

    def to_json(self) -> dict[str, Any]:
        return {"time_us": self.time_us, "algbw": self.algbw, "busbw": self.busbw, "wrong": self.wrong}


@dataclass
class NcclRow:
    size: int
    count: int
    type: str
    redop: str | None
    out_of_place: NcclHalf | None
    in_place: NcclHalf | None
    root: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "count": self.count, "type": self.type, "redop": self.redop,
                "out_of_place": self.out_of_place.to_json() if self.out_of_place else None,
                "in_place": self.in_place.to_json() if self.in_place else None}


@dataclass
class NcclCollective:
    name: str | None
    ranks: int | None = None
    rows: list[NcclRow] = field(default_factory=list)
    avg_busbw: float | None = None
    out_of_bounds: int | None = None
    error_column: str = "#wrong"   # "#wrong" (count of wrong elements) or "error" (old: max abs error)
    validation: bool | None = None  # False when run with -c 0 (every #wrong is N/A)
    rank_hosts: dict[int, str] = field(default_factory=dict)   # rank -> host, from the "# Rank N ... on <host>" lines

    @property
    def peak_busbw(self) -> float | None:
        """Highest out-of-place bus bandwidth of any row (in-place when only in-place was measured)."""
        vals = [r.out_of_place.busbw for r in self.rows if r.out_of_place]
        if not vals:
            vals = [r.in_place.busbw for r in self.rows if r.in_place]
        return max(vals) if vals else None

    @property
    def max_size(self) -> int | None:
        return max((r.size for r in self.rows), default=None)

    def busbw_at(self, size_bytes: int) -> float | None:
        """Out-of-place bus bandwidth at `size_bytes`. When that size was not measured, the row with
        the largest size below it is used (never a larger size: that would flatter a short run).
        Several rows of one size (repeated cycles) give their best value. None when no row is at or
        below the size."""
        sizes = [r.size for r in self.rows if r.out_of_place and r.size <= size_bytes]
        if not sizes:
            return None
        chosen = max(sizes)
        return max(r.out_of_place.busbw for r in self.rows if r.out_of_place and r.size == chosen)

    @property
    def wrong_rows(self) -> list[NcclRow]:
        """Rows whose #wrong count is non-zero (only meaningful with the `#wrong` column)."""
        if self.error_column != "#wrong":
            return []
        return [r for r in self.rows
                if any(h is not None and h.wrong not in (None, 0) for h in (r.out_of_place, r.in_place))]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ranks": self.ranks, "rows": [r.to_json() for r in self.rows],
                "peak_busbw": self.peak_busbw, "avg_busbw": self.avg_busbw, "out_of_bounds": self.out_of_bounds}


@dataclass
class NcclResult:
    collectives: list[NcclCollective] = field(default_factory=list)
    transport: str | None = None       # efa | ib | socket
    gdrdma: bool | None = None
    errors: list[str] = field(default_factory=list)
    log: NcclLogFacts = field(default_factory=NcclLogFacts)
    format: str = "text"               # text | json
    launch_error: str | None = None    # the launcher refused to start the ranks (Open MPI help text), no test ran

    @property
    def nccl_version(self) -> str | None:
        return self.log.nccl_version

    @property
    def ofi_plugin_version(self) -> str | None:
        return self.log.ofi_plugin_version

    @property
    def libfabric_version(self) -> str | None:
        return self.log.libfabric_version

    def collective(self, name: str | None = None) -> NcclCollective | None:
        """The first collective (of `name` when given) that has rows."""
        for c in self.collectives:
            if (name is None or c.name == name) and c.rows:
                return c
        return None

    @property
    def peak_busbw(self) -> float | None:
        c = self.collective()
        return c.peak_busbw if c else None

    def busbw_at(self, size_bytes: int, name: str | None = None) -> float | None:
        c = self.collective(name)
        return c.busbw_at(size_bytes) if c else None

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "collectives": [c.to_json() for c in self.collectives],
                "transport": self.transport, "gdrdma": self.gdrdma, "errors": list(self.errors)}
