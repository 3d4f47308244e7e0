"""`dcgmi diag -r N` text tables (DCGM 2.x, 3.x and 4.x, no `-j`) read into the same model as the JSON document, and
the one entry point `gpucluster parse dcgm-diag` uses for either form.

The layout is dcgmi's own (NVIDIA/DCGM dcgmi/Diag.cpp): a two-column table, 25 characters of name and 46 of result,
section rows (`|-----  Deployment  ---...|`, `+-----  Hardware  ---...+`); messages longer than 45 characters are cut
every 45 characters into rows with an empty name (Diag::DisplayVerboseInfo). Per version:
- 2.x: no Metadata section; tests by display name ("Blacklist", "GPU Memory"), results "Pass", "Pass - All",
  "Skip - All", split per GPU as "Pass - GPUs: 1, 2 / Fail - GPU: 0"; "Warning" / "Error" / "Info" rows.
- 3.x: the same with a Metadata section (DCGM Version, Driver Version Detected, GPU Device IDs Detected).
- 4.x: plugin names ("software", "memory", "pcie"), the test's overall result on its own row, then one row per entity
  ("GPU0: Pass"); messages as "Warning" (for the whole test) or "Warning: GPU0" (for one GPU).
- when the diagnostic cannot run at all dcgmi prints no table, only "Error: Unable to complete diagnostic ..." lines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._text import ParseError
from .dcgm_diag import KIND, DcgmDiagResult, DcgmTestResult, parse_dcgm_diag

__all__ = ["parse_dcgm_diag_output", "parse_dcgm_diag_text"]

_WIDTH = 45                      # DATA_INFO_TAG_LEN: characters of a message per row
_STATUS = {"pass": "pass", "fail": "fail", "warn": "warn", "skip": "skip", "not run": "not run"}
_SECTION = re.compile(r"^[|+]-{3,}\s+(?P<name>[A-Za-z][A-Za-z ]*?)\s+-+\+-+[|+]$")
_HEADER = re.compile(r"^\|\s*Diagnostic\s*\|\s*Result\s*\|$")
_RULE = re.compile(r"^\+-+\+-+\+$")
_RESULT = re.compile(r"^(?P<status>Pass|Fail|Warn|Skip|Not Run)"
                     r"(?:\s+-\s+(?:(?P<all>All)|GPUs?:\s*(?P<ids>\d+(?:\s*,\s*\d+)*)))?\s*$", re.IGNORECASE)
_ENTITY = re.compile(r"^(?P<group>GPU|CPU)\s?(?P<id>\d+):\s+(?P<status>Pass|Fail|Warn|Skip|Not Run)\s*$", re.IGNORECASE)
_MESSAGE = re.compile(r"^(?P<kind>Warning|Error|Info)(?::\s*(?P<group>GPU|CPU)\s?(?P<id>\d+))?$")
_LEADING_GPU = re.compile(r"^GPU\s*(\d+)\b")
# dcgmi diag's own failure lines (Diag::RunStartDiag): "Error: Unable to complete diagnostic for group 0. Return:
# ...", "... for entities 0,1", "Error: Diagnostic could not be run ...", "Error: Diagnostic can only be performed ..."
_RUN_ERROR = re.compile(r"^\s*Error: (?:Unable to complete diagnostic|Diagnostic (?:could not|can only))")
_METADATA = {"dcgm version": "dcgm_version", "driver version detected": "driver_version"}


@dataclass
class _Row:
    name: str
    cell: str          # the result cell as printed, padding included

    @property
    def info(self) -> str:
        return self.cell.strip()

    @property
    def chunk(self) -> str:
        """The cell as one piece of a wrapped message: its first 45 characters, spaces kept (they are text)."""
        return self.cell[:_WIDTH]


@dataclass
class _Table:
    category: str = ""
    test: str | None = None                       # the test the rows below belong to
    results: list[DcgmTestResult] = field(default_factory=list)
    current: DcgmTestResult | None = None         # the message being continued
    current_kind: str = ""


def _rows(text: str) -> list[list[_Row | str]]:
    """Each table of the text as rows (`_Row`) and section names (str). Indented copies (a markdown list) are read;
    a line missing its closing `|` (a cut paste) keeps what it has."""
    tables: list[list[_Row | str]] = []
    table: list[_Row | str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith(("|", "+")):
            if table:
                tables.append(table)
            table = None
            continue
        if _RULE.match(line) or line.startswith("+="):
            if table and any(isinstance(r, _Row) for r in table) and _RULE.match(line):
                tables.append(table)            # the footer: a second table may follow (two runs in one file)
                table = None
            continue
        if table is None:
            table = []
        section = _SECTION.match(line)
        if section:
            table.append(section["name"].strip())
            continue
        if _HEADER.match(line) or not line.startswith("|"):
            continue
        body = raw[raw.index("|") + 1:]
        name, sep, rest = body.partition("|")
        if not sep:
            continue
        end = rest.rfind("|")
        cell = rest[:end] if end >= 0 else rest
        cell = cell[1:] if cell.startswith(" ") else cell
        table.append(_Row(name.strip(), cell))
    if table:
        tables.append(table)
    # dcgmi's table, not any box of text: a section row, or a result cell in dcgmi's words
    return [t for t in tables if any(isinstance(r, _Row) for r in t) and any(
        isinstance(r, str) or _RESULT.match(r.info) or _ENTITY.match(r.info) for r in t)]


def _status(word: str) -> str:
    return _STATUS.get(word.strip().lower(), f"unknown:{word.strip().lower()}")


def _add_message(state: _Table, kind: str, entity: int | None, text: str) -> None:
    """Attach a Warning/Error/Info to the result it is about: the named GPU's (4.x `Warning: GPU0`, or a 3.x
    message that starts with `GPU n`), else the test's worst result; a message before any test (a cut paste) is a
    result of its own: an Error fails, a Warning warns, never a pass."""
    if entity is None and (lead := _LEADING_GPU.match(text.strip())):
        entity = int(lead[1])
    mine = [r for r in state.results if r.test == state.test and r.category == state.category] if state.test else []
    target = next((r for r in mine if r.entity_id == entity), None) if entity is not None else None
    if target is None and mine:
        rank = {"fail": 0, "warn": 1}
        target = min(mine, key=lambda r: rank.get(r.status, 2))
    if target is None:
        target = DcgmTestResult(state.test or state.category or "?", state.category, entity,
                                {"Error": "fail", "Warning": "warn"}.get(kind, "unknown:info"))
        state.results.append(target)
    bucket = target.info if kind == "Info" else target.warnings
    bucket.append(text)
    state.current, state.current_kind = target, kind


def _continue(state: _Table, chunk: str) -> None:
    assert state.current is not None
    bucket = state.current.info if state.current_kind == "Info" else state.current.warnings
    bucket[-1] += chunk


def _read_table(rows: list[_Row | str], out: DcgmDiagResult, devices: list[str]) -> None:
    state = _Table()
    overall: dict[tuple[str, str], str] = {}      # (category, test) -> the test's own row (4.x), to compare
    for row in rows:
        if isinstance(row, str):
            state.category, state.test, state.current = row, None, None
            continue
        if state.category == "Metadata":
            key = row.name.lower()
            if key in _METADATA:
                setattr(out, _METADATA[key], row.info.strip() or None)
            elif key == "gpu device ids detected" and not devices:   # two runs in one file: the first's
                devices.extend(d.strip() for d in row.info.split(",") if d.strip())
            continue
        info = row.info
        message = _MESSAGE.match(row.name)
        if message:
            entity = int(message["id"]) if message["id"] and message["group"] == "GPU" else None
            _add_message(state, message["kind"], entity, row.chunk)
            continue
        if not row.name:
            ent, split = _ENTITY.match(info), _RESULT.match(info)
            if ent and state.test:
                if ent["group"].upper() == "GPU":
                    state.results.append(DcgmTestResult(state.test, state.category, int(ent["id"]),
                                                        _status(ent["status"])))
                state.current = None
            elif split and split["ids"] and state.test:
                for gpu in split["ids"].split(","):
                    state.results.append(DcgmTestResult(state.test, state.category, int(gpu),
                                                        _status(split["status"])))
                state.current = None
            elif state.current is not None:
                _continue(state, row.chunk)
            continue
        state.test, state.current = row.name, None
        result = _RESULT.match(info)
        status = _status(result["status"]) if result else f"unknown:{info.lower()}"
        if result and result["ids"]:
            for gpu in result["ids"].split(","):
                state.results.append(DcgmTestResult(row.name, state.category, int(gpu), status))
        else:
            overall[(state.category, row.name)] = status
            state.results.append(DcgmTestResult(row.name, state.category, None, status))
    # 4.x: a test's own row is followed by its per-GPU rows; keep the per-GPU results and the test's row only when it
    # says more than they do (DCGM#253: pcie "Fail" with every GPU "Pass": the failure is the test's, not a GPU's)
    for (category, test), status in overall.items():
        per_gpu = [r for r in state.results if r.test == test and r.category == category and r.entity_id is not None]
        whole = next(r for r in state.results if r.test == test and r.category == category and r.entity_id is None)
        if per_gpu and not whole.warnings and not whole.info and status in {r.status for r in per_gpu}:
            state.results.remove(whole)
    for r in state.results:      # every chunk but a message's last is exactly 45 characters: its spaces are text
        r.warnings, r.info = [w.strip() for w in r.warnings], [i.strip() for i in r.info]
    out.results.extend(state.results)


def parse_dcgm_diag_text(text: str) -> DcgmDiagResult:
    """Read every dcgmi diag table in `text` (two runs saved in one file give the results of both), or dcgmi's
    "Error: Unable to complete diagnostic ..." lines when it printed no table."""
    tables = _rows(text)
    out = DcgmDiagResult()
    if not tables:
        errors = [line.strip() for line in text.splitlines() if line.strip().startswith("Error:")]
        if errors and any(_RUN_ERROR.match(line) for line in errors):
            out.runtime_error = " ".join(errors)
            return out
        raise ParseError(KIND, "no dcgmi diag table and no 'Error: Unable to complete diagnostic' line")
    devices: list[str] = []
    for table in tables:
        _read_table(table, out, devices)
    ids = sorted({r.entity_id for r in out.results if r.entity_id is not None})
    # "GPU Device IDs Detected" lists the device of every GPU of the run in entity order (Diag.cpp); without per-GPU
    # rows (3.x "Pass - All") the run's GPUs are the node's, numbered from 0
    numbering = ids if len(ids) == len(devices) else list(range(len(devices)))
    out.gpus = {gpu: {"device_id": dev, "serial": ""} for gpu, dev in zip(numbering, devices)}
    if not out.results:
        raise ParseError(KIND, "a dcgmi diag table without any test result")
    return out


def parse_dcgm_diag_output(text: str) -> DcgmDiagResult:
    """`dcgmi diag` output in either form: the text table (or its error lines) or the `-j` JSON document."""
    stripped = text.lstrip()
    if _rows(text) or (not stripped.startswith("{") and any(_RUN_ERROR.match(line) for line in text.splitlines())):
        return parse_dcgm_diag_text(text)
    return parse_dcgm_diag(text)
