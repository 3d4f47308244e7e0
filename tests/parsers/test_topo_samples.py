"""`nvidia-smi topo -m` parser on the real captures in tests/data/topo (see its SOURCES.md)."""
from __future__ import annotations

import pytest

from pytest_gpucluster.parsers import ParseError, parse_topo

from ._data import sample


def test_space_aligned_4gpu_nv6_with_nics() -> None:
    t = parse_topo(sample("topo", "h100-x4-nv6-4nic-nccl-issue1617.txt"))
    assert t.gpus == ["GPU0", "GPU1", "GPU2", "GPU3"] and t.devices[4:] == ["NIC0", "NIC1", "NIC2", "NIC3"]
    assert {t.link(a, b) for a in t.gpus for b in t.gpus if a != b} == {"NV6"}
    assert t.link("GPU2", "NIC2") == "PIX" and t.link("NIC3", "NIC3") == "X"
    assert t.cpu_affinity["GPU1"] == "4,12,20,28" and t.numa_affinity["GPU2"] == "7"


@pytest.mark.parametrize("name,cpus", [("h100-590-single-gpu-ansi.txt", "0-19"), ("l40s-595-single-gpu-ansi.txt", "0-7")])
def test_tab_separated_ansi_header_single_gpu(name: str, cpus: str) -> None:
    t = parse_topo(sample("topo", name))
    assert t.devices == ["GPU0"] and t.link("GPU0", "GPU0") == "X"
    assert t.cpu_affinity == {"GPU0": cpus} and t.numa_affinity == {"GPU0": "0"}


def test_not_topo() -> None:
    with pytest.raises(ParseError):
        parse_topo("Legend:\n  X = Self\n")
