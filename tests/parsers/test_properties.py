"""Property tests: launcher prefixes, prompts, indentation, whitespace and column widths never change a parse."""
from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_gpucluster.parsers import parse_fi_info, parse_nccl, parse_nvidia_smi

from ._data import DATA

_TAGGED = re.compile(r"^\s*\[\d+,\d+\]<std(?:out|err)>:|^\s*\d+: ", re.M)


def _names(kind: str) -> list[str]:
    return sorted(p.name for p in (DATA / kind).iterdir() if p.name != "SOURCES.md")


def _read(kind: str, name: str) -> str:
    return (DATA / kind / name).read_text(encoding="utf-8")


@st.composite
def mutated(draw: st.DrawFn, kind: str, prompt: str) -> tuple[str, str, bool]:
    """(original, mutated, gained_tags) for one sample of `kind`."""
    name = draw(st.sampled_from(_names(kind)))
    text = _read(kind, name)
    lines = text.splitlines()
    tagged_already = bool(_TAGGED.search(text))
    prefix = draw(st.sampled_from(["", "", "mpirun", "srun", "kubectl"] if not tagged_already else [""]))
    indent = " " * draw(st.integers(0, 6))
    out: list[str] = []
    rank = draw(st.integers(0, 15))
    for line in lines:
        trailing = " " * draw(st.integers(0, 3))
        if prefix == "mpirun":
            line = f"[1,{rank}]<stdout>:{line}"
        elif prefix == "srun":
            line = f"{rank}: {line}"
        elif prefix == "kubectl":
            line = f"[pod/launcher-x7k2p/launcher] {line}"
        out.append(indent + line + trailing if line else (indent if draw(st.booleans()) else ""))
    if draw(st.booleans()):
        out.insert(0, prompt)
    body = "\n".join(out)
    body = "\n" * draw(st.integers(0, 2)) + body + "\n" * draw(st.integers(0, 2))
    if draw(st.booleans()):
        body = body.replace("\n", "\r\n")
    return text, body, prefix in ("mpirun", "srun")


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(mutated("nvidia-smi", "$ nvidia-smi"))
def test_nvidia_smi_survives_prefixes_and_whitespace(case: tuple[str, str, bool]) -> None:
    original, text, _ = case
    assert parse_nvidia_smi(text).to_json() == parse_nvidia_smi(original).to_json()


@SETTINGS
@given(mutated("fi_info", "ubuntu@ip-10-0-1-2:~$ fi_info -p efa"))
def test_fi_info_survives_prefixes_and_whitespace(case: tuple[str, str, bool]) -> None:
    original, text, gained_tags = case
    want, got = parse_fi_info(original), parse_fi_info(text)
    assert {**got.to_json(), "hosts": None} == {**want.to_json(), "hosts": None}
    assert got.hosts == (1 if gained_tags else want.hosts)
    assert got.nic_count() == want.nic_count()


@SETTINGS
@given(mutated("nccl-tests", "$ mpirun -np 16 --hostfile /etc/mpi/hostfile ./run.sh"))
def test_nccl_survives_prefixes_and_whitespace(case: tuple[str, str, bool]) -> None:
    original, text, _ = case
    want, got = parse_nccl(original), parse_nccl(text)
    assert got.to_json() == want.to_json()
    assert (got.nccl_version, got.ofi_plugin_version) == (want.nccl_version, want.ofi_plugin_version)


def _respace(line: str, widths: list[int]) -> str:
    """Re-join the tokens of a table line with other column gaps."""
    lead = "#" if line.lstrip().startswith("#") else ""
    tokens = line.lstrip().lstrip("#").split()
    return lead + "".join(" " * widths[i % len(widths)] + tok for i, tok in enumerate(tokens))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([n for n in _names("nccl-tests") if "allreduce" in n or "reducescatter" in n]),
       st.lists(st.integers(1, 9), min_size=1, max_size=6))
def test_nccl_column_widths_do_not_matter(name: str, widths: list[int]) -> None:
    original = _read("nccl-tests", name)
    table_line = re.compile(r"^(\s*(?:\[\d+,\d+\]<stdout>:|\d+: )?)(#\s+size\s.*|#\s+\(B\).*|\s*\d+\s+\d+\s+[a-z].*)$")
    lines = []
    for line in original.splitlines():
        # a row cut by an error message (nccl-tests issue 79): the message is not table columns, its spaces stay
        m = table_line.match(line) if " failure " not in line else None
        lines.append(m.group(1) + _respace(m.group(2), widths) if m else line)
    assert parse_nccl("\n".join(lines)).to_json() == parse_nccl(original).to_json()


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([n for n in _names("nvidia-smi") if "-L-" not in n and not n.startswith("q") and "error" not in n]),
       st.integers(2, 8))
def test_nvidia_smi_cell_padding_does_not_matter(name: str, gap: int) -> None:
    """Widen every run of 2+ spaces inside table cells (the 79-column vs 89-column layouts differ only so)."""
    original = _read("nvidia-smi", name)
    widened = "\n".join(re.sub(r" {2,}", " " * gap, ln) if ln.lstrip().startswith("|") else ln
                        for ln in original.splitlines())
    assert parse_nvidia_smi(widened).to_json() == parse_nvidia_smi(original).to_json()
