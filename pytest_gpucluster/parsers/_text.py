"""Text plumbing shared by the parsers: launcher prefixes, prompt lines, numbers and ParseError."""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ParseError", "Line", "split_lines", "is_prompt", "to_int", "to_float", "dedent_block"]


class ParseError(ValueError):
    """The text is not output of the tool the parser was asked to read."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"not {kind} output: {reason}")
        self.kind = kind
        self.reason = reason


# Prefixes launchers put in front of every line, outermost first:
#   kubectl logs --prefix      "[pod/launcher-abc/mpi-launcher] "
#   Open MPI --tag-output      "[1,0]<stdout>:"   (job,rank)
#   srun --label               "0: "  or right-aligned " 3: " with many tasks
_KUBECTL_PREFIX = re.compile(r"^\s*\[pod/[^\]\s]+\] ?")
_MPI_PREFIX = re.compile(r"^\s*\[(\d+),(\d+)\]<(?:stdout|stderr)>:")
_SRUN_PREFIX = re.compile(r"^\s*(\d{1,5}):(?: |$)")   # "0: " (an empty rank line is just "0:")

# Shell prompts seen in pasted captures: "$ cmd", "# cmd", "user@host:~$ cmd", "❯ cmd", "(venv) $ cmd".
_PROMPT = re.compile(r"^\s*(?:\([^)]*\)\s*)?(?:[\w.-]+@[\w.-]+(?::[^\s$#]*)?\s?[$#]|[$❯>%]|#(?=\s+\w+(?:-\w+)*(?:\s|$)))\s")


@dataclass(frozen=True)
class Line:
    """One output line with the launcher prefix removed; `tag` names the rank that printed it."""

    text: str
    tag: str | None = None


def split_lines(text: str) -> list[Line]:
    """Split `text` into lines, remove launcher prefixes and trailing whitespace (CR too).

    Indentation in front of a prefix is dropped with the prefix; indentation of untagged
    lines is kept because some formats (nvidia-smi -q, fi_info -v) nest by indentation.
    """
    out: list[Line] = []
    srun_lines = _count_srun(text)
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.rstrip()
        tag: str | None = None
        m = _KUBECTL_PREFIX.match(line)
        if m:
            line = line[m.end():]
        m = _MPI_PREFIX.match(line)
        if m:
            tag = m.group(2)
            line = line[m.end():]
        elif srun_lines:
            m = _SRUN_PREFIX.match(line)
            if m:
                tag = m.group(1)
                line = line[m.end():]
        out.append(Line(line.rstrip(), tag))
    return out


def _count_srun(text: str) -> bool:
    """True when most non-blank lines carry an srun `N: ` label (so a stray `3: ` is not eaten)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return False
    labelled = sum(1 for ln in lines if _SRUN_PREFIX.match(ln))
    return labelled * 2 >= len(lines)


def is_prompt(line: str) -> bool:
    """A shell prompt line (`$ nvidia-smi`, `ubuntu@host:~$ fi_info -p efa`) pasted before output."""
    return bool(_PROMPT.match(line))


def dedent_block(lines: list[str]) -> list[str]:
    """Remove the indentation common to all non-blank lines (markdown lists, reST blocks)."""
    widths = [len(ln) - len(ln.lstrip(" \t")) for ln in lines if ln.strip()]
    cut = min(widths, default=0)
    return [ln[cut:] if ln.strip() else "" for ln in lines]


_NUM = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")


def to_float(token: str | None) -> float | None:
    """Float from a table cell; None for N/A, blanks, `nan`, and anything not a number."""
    if token is None:
        return None
    token = token.strip()
    if not _NUM.match(token):
        return None
    return float(token)


def to_int(token: str | None) -> int | None:
    """Int from a cell that may carry a unit (`81559 MiB`, `81559MiB`); None for N/A."""
    if token is None:
        return None
    m = re.match(r"^\s*([-+]?\d+)(?:\s*[A-Za-z%]+)?\s*$", token)
    return int(m.group(1)) if m else None
