"""nccl-tests (`*_perf`): typed result, result tables of every format era, bandwidth helpers.

Bandwidth that matters is the out-of-place bus bandwidth at a large message size
(`busbw_at`) and its peak (`peak_busbw`); `avg_busbw` is kept but averages over all
sizes, tiny ones included, and must not be judged alone.
"""
from __future__ import annotations

import re

from ._text import ParseError, split_lines, to_float
from .nccl_json import parse_nccl_json
from .nccl_log import NcclLogFacts, gdrdma_of, scan_log_line, transport_of
from .nccl_model import COLLECTIVES, KIND, NcclCollective, NcclHalf, NcclResult, NcclRow

__all__ = ["NcclHalf", "NcclRow", "NcclCollective", "NcclResult", "parse_nccl", "COLLECTIVES"]

_TYPE_BYTES = {"int8": 1, "uint8": 1, "char": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "f8e4m3": 1, "f8e5m2": 1,
               "half": 2, "float16": 2, "bfloat16": 2, "bf16": 2, "int32": 4, "uint32": 4, "int": 4,
               "float": 4, "float32": 4, "int64": 8, "uint64": 8, "double": 8, "float64": 8}


# ---------------------------------------------------------------------------------------------

_HEADER = re.compile(r"^#\s*size\s+count\s+type\b")
_ROW_START = re.compile(r"^\s*\d+\s+\d+\s+[A-Za-z_][A-Za-z0-9_]*\s")
_RANK_LINE = re.compile(r"^#\s+Rank\s+(\d+)\s(?:.*?\bon\s+(\S+)\s+device\b)?")
_STARTING = re.compile(r"Collective test starting:\s*(\w+?)(?:_perf)?\s*$")
_BINARY = re.compile(r"\b(" + "|".join(COLLECTIVES) + r")_perf\b")
_OOB = re.compile(r"^#\s*Out of bounds values\s*:\s*(\d+)")
_AVG = re.compile(r"^#\s*Avg bus bandwidth\s*:\s*(\S+)")
_VALIDATION = re.compile(r"\bvalidation:\s*(\d)")


class _Builder:
    def __init__(self) -> None:
        self.collectives: list[NcclCollective] = []
        self.current: NcclCollective | None = None
        self.columns: list[str] | None = None
        self.pending_name: str | None = None
        self.rank_ids: set[int] = set()
        self.rank_hosts: dict[int, str] = {}
        self.validation: bool | None = None
        self.closed = False

    def start(self, name: str | None = None) -> NcclCollective:
        self.current = NcclCollective(name=name or self.pending_name, validation=self.validation)
        self.collectives.append(self.current)
        self.pending_name, self.closed = None, False
        if self.rank_ids:
            self.current.ranks = len(self.rank_ids)
            self.current.rank_hosts = dict(self.rank_hosts)
        return self.current

    def ensure(self) -> NcclCollective:
        if self.current is None or self.closed:
            return self.start()
        return self.current


def parse_nccl(text: str) -> NcclResult:
    """Parse nccl-tests stdout (any version, any launcher prefix) or its `-J` JSON file, plus
    NCCL_DEBUG lines. Raises ParseError for text that holds none of these."""
    stripped = text.lstrip()
    if stripped.startswith("{"):  # nccl-tests text never starts with a brace
        return parse_nccl_json(text)
    lines = split_lines(text)
    facts = NcclLogFacts()
    b = _Builder()
    marker = False
    for ln in lines:
        t = ln.text.strip()
        if not t:
            continue
        scan_log_line(facts, t)
        if t.startswith("#"):
            marker |= _header_line(b, t)
            continue
        m = _BINARY.search(t)
        if m and not _ROW_START.match(t):
            b.pending_name = m.group(1)
        if _ROW_START.match(t):
            row = _parse_row(t.split(), b.columns)
            if row is not None:
                coll = b.ensure()
                coll.rows.append(row)
                marker = True
                if b.columns and "error" in b.columns:
                    coll.error_column = "error"
    result = NcclResult(collectives=[c for c in b.collectives if c.rows or c.avg_busbw is not None or c.name],
                        log=facts, errors=list(facts.errors))
    for c in result.collectives:
        if c.name is None:
            c.name = _infer_name(c)
        if c.ranks is None:
            c.ranks = facts.nranks
    result.transport = transport_of(facts)
    result.gdrdma = gdrdma_of(facts)
    nccl_lines = facts.networks or facts.nccl_version or facts.net_channels or facts.errors
    if not marker and (refusal := launch_refusal([ln.text for ln in lines])) is not None:
        result.launch_error = refusal
        result.errors.append(refusal)
        return result
    if not marker and not nccl_lines and not any("NCCL INFO" in ln.text for ln in lines):
        first = next((ln.text.strip() for ln in lines if ln.text.strip()), "")
        raise ParseError(KIND, f"no result table, no nccl-tests header and no NCCL log lines (starts with {first[:60]!r})")
    return result


# Open MPI prints its refusals as help text: a paragraph after a line of dashes (its help banner); some pastes and
# launchers drop the banner, so the openers seen in captures (tests/data/nccl-tests/mpirun-*) and the launcher
# failures _ERRORS in nccl_log.py already knows are recognised without it.
_DASHES = re.compile(r"^-{20,}$")
_MPI_REFUSALS = re.compile(r"^(?:There are not enough slots available in the system|"
                           r"(?:mpirun|ORTE|PRTE) was unable to |(?:ORTE|PRTE) has lost communication)")


def launch_refusal(lines: list[str]) -> str | None:
    """The first paragraph of Open MPI's refusal to launch (joined into one line), or None."""
    stripped = [ln.strip() for ln in lines]
    for i, text in enumerate(stripped):
        after_banner = i > 0 and _DASHES.match(stripped[i - 1]) is not None and text != ""
        if not (_MPI_REFUSALS.match(text) or after_banner and not text.startswith(("#", "["))):
            continue
        paragraph = []
        for line in stripped[i:]:
            if not line or _DASHES.match(line):
                break
            paragraph.append(line)
        return " ".join(paragraph).rstrip(":")
    return None


def _header_line(b: _Builder, t: str) -> bool:
    """Handle a `#` line; True when it proves the text is nccl-tests output."""
    if m := _STARTING.search(t):
        if b.current is not None and not b.current.rows and b.current.name is None:
            b.current.name = m.group(1)
        else:
            b.start(m.group(1))
        return True
    if _HEADER.match(t):
        cols = t.lstrip("#").split()
        if b.current is not None and b.current.rows:
            b.closed = True  # a second table: next rows belong to a new collective
        b.columns = cols
        b.ensure()
        return True
    if t.startswith("# nThread") or "Using devices" in t:
        if v := _VALIDATION.search(t):
            b.validation = v.group(1) != "0"
        if t.startswith("# nThread"):
            b.rank_ids, b.rank_hosts = set(), {}
            if b.current is not None and b.current.rows:
                b.closed = True
        return True
    if m := _RANK_LINE.match(t):
        b.rank_ids.add(int(m.group(1)))
        if m.group(2):
            b.rank_hosts[int(m.group(1))] = m.group(2)
        if b.current is not None and not b.current.rows:
            b.current.ranks = len(b.rank_ids)
            b.current.rank_hosts = dict(b.rank_hosts)
        return True
    if m := _OOB.match(t):
        b.ensure().out_of_bounds = int(m.group(1))
        return True
    if m := _AVG.match(t):
        coll = b.ensure()
        coll.avg_busbw = to_float(m.group(1))
        b.closed = True
        return True
    return False


def _parse_row(tokens: list[str], columns: list[str] | None) -> NcclRow | None:
    try:
        size, count = int(tokens[0]), int(tokens[1])
    except (ValueError, IndexError):
        return None
    dtype = tokens[2]
    if columns and columns[:3] == ["size", "count", "type"]:
        first_half = next((i for i, c in enumerate(columns) if c in ("time", "cputime")), None)
        if first_half is None:
            return None
        has_redop, has_root = "redop" in columns[3:first_half], "root" in columns[3:first_half]
    else:  # no header seen: infer from the token shapes
        rest = tokens[3:]
        has_redop = bool(rest) and to_float(rest[0]) is None and rest[0] != "N/A"
        after = rest[1:] if has_redop else rest
        has_root = len(after) % 2 == 1
    idx = 3
    redop = root = None
    if has_redop:
        redop = tokens[idx] if idx < len(tokens) else None
        idx += 1
    if has_root:
        root_tok = tokens[idx] if idx < len(tokens) else ""
        root = int(root_tok) if re.match(r"^-?\d+$", root_tok) else None
        idx += 1
    halves = tokens[idx:]
    group = _half_width(columns)
    out_half = _half(halves[:4])
    in_half = _half(halves[group:group + 4]) if len(halves) >= group + 4 else None
    if out_half is None:
        return None
    if in_half is None and len(halves) < group + 4:
        out_half, in_half = None, out_half  # only in-place measured (trace replay)
    return NcclRow(size=size, count=count, type=dtype, redop=redop, root=root,
                   out_of_place=out_half, in_place=in_half)


def _half_width(columns: list[str] | None) -> int:
    """Tokens per half: 4 normally, 8 with per-iteration timing columns (i_min i_max i_p99 i_cv%)."""
    if not columns:
        return 4
    times = [i for i, c in enumerate(columns) if c in ("time", "cputime")]
    return times[1] - times[0] if len(times) >= 2 else 4


def _half(tokens: list[str]) -> NcclHalf | None:
    if len(tokens) < 4:
        return None
    time_us, algbw, busbw = (to_float(t) for t in tokens[:3])
    if time_us is None or algbw is None or busbw is None:
        return None
    wrong_f = to_float(tokens[3])
    wrong: float | int | None = wrong_f
    if wrong_f is not None and wrong_f.is_integer() and "e-" not in tokens[3].lower() and "." not in tokens[3]:
        wrong = int(wrong_f)
    return NcclHalf(time_us=time_us, algbw=algbw, busbw=busbw, wrong=wrong)


def _infer_name(c: NcclCollective) -> str | None:
    """Best guess of the collective from the table when no `*_perf` name was printed.

    size/count/type-width is 1 for all_reduce, reduce, broadcast and the number of ranks for
    reduce_scatter/all_gather/alltoall; redop `none` marks data movement, root >= 0 rooted ops.
    Ambiguous shapes (all_gather vs alltoall, sendrecv) give None.
    """
    ratios = {r.size // (r.count * _TYPE_BYTES[r.type]) for r in c.rows
              if r.count and r.type in _TYPE_BYTES and r.size % (r.count * _TYPE_BYTES[r.type]) == 0}
    if len(ratios) != 1:
        return None
    ratio = ratios.pop()
    redops = {r.redop for r in c.rows}
    roots = {r.root for r in c.rows}
    reducing = bool(redops - {None, "none"})
    rooted = any(x is not None and x >= 0 for x in roots)
    if reducing:
        if rooted:
            return "reduce" if ratio == 1 else None
        return "all_reduce" if ratio == 1 else "reduce_scatter"
    if rooted and ratio == 1 and redops <= {"none"}:
        return "broadcast"
    return None
