"""`nvidia-smi nvlink -s` parser on the real captures in tests/data/nvlink (see its SOURCES.md)."""
from __future__ import annotations

from pytest_gpucluster.parsers import parse, parse_nvlink

from ._data import sample


def test_h100_18_links_tab_indented() -> None:
    r = parse_nvlink(sample("nvlink", "h100-80gb-hbm3-590-18links.txt"))
    assert len(r.gpus) == 1 and r.gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert r.gpus[0].links == {i: 26.562 for i in range(18)}


def test_a100_x8_space_indented_integer_speed() -> None:
    r = parse_nvlink(sample("nvlink", "a100-80gb-x8-gpud.txt"))
    assert [g.index for g in r.gpus] == list(range(8))
    assert all(len(g.active) == 12 and set(g.links.values()) == {25.0} for g in r.gpus)
    assert parse_nvlink(sample("nvlink", "a100-80gb-12links-tab-azure.txt")).gpus[0].index == 7


def test_all_links_inactive_is_a_note_without_links() -> None:
    g = parse_nvlink(sample("nvlink", "a100-80gb-all-inactive-azure.txt")).gpus[0]
    assert g.links == {} and "all links are inactive" in (g.note or "")


def test_gpus_without_nvlink() -> None:
    assert parse_nvlink(sample("nvlink", "l40s-595-not-supported.txt")).gpus[0].note == \
        "Device does not have or support Nvlink"
    assert parse("nvlink", sample("nvlink", "a10-empty-gpud.txt")).gpus == []


def test_inactive_link_line() -> None:
    # the per-link form quoted in Azure/azhpc-diagnostics issue #73
    r = parse_nvlink("GPU 3: Tesla V100-SXM2-32GB (UUID: x)\n\t Link 0: 25.781 GB/s\n\t Link 3: <inactive>\n")
    assert r.gpus[0].inactive == [3] and r.gpus[0].active == [0]
