"""Every nccl-tests / NCCL log sample in tests/data: tables, bandwidths, versions, network, errors."""
from __future__ import annotations

import pytest

from pytest_gpucluster.parsers import parse_nccl

from ._data import DATA, sample

GiB = 1 << 30


def nccl(name: str):
    return parse_nccl(sample("nccl-tests", name))


def test_every_sample_is_covered_below() -> None:
    assert {p.name for p in (DATA / "nccl-tests").iterdir()} - {"SOURCES.md"} == set(COVERED)


def test_gcm_pairwise_two_nodes() -> None:
    r = nccl("allreduce-a100-80gb-2node-pairwise-gcm-fixture.txt")
    (c,) = r.collectives
    assert (c.name, c.ranks, len(c.rows)) == ("all_reduce", 16, 6)
    assert (c.peak_busbw, c.avg_busbw, c.out_of_bounds) == (182.8, 150.209, 0)
    assert c.busbw_at(GiB) == 182.8 and c.rows[-1].in_place.busbw == 181.39
    assert c.rows[-1].out_of_place.time_us == 11013.0
    assert r.nccl_version == "2.12.12+cuda11.6"
    assert (r.transport, r.gdrdma, r.errors) == (None, None, [])


def test_gcm_single_node() -> None:
    r = nccl("allreduce-a100-80gb-x8-single-node-gcm-fixture.txt")
    (c,) = r.collectives
    assert (c.ranks, c.peak_busbw, c.avg_busbw) == (8, 231.72, 210.99)
    assert c.busbw_at(512 * 1024 * 1024) == 226.63
    assert c.busbw_at(1000) is None  # nothing measured at or below 1000 B (min 32 MiB)
    assert r.nccl_version == "2.16.2+cuda11.6"


def test_old_format_validation_off_info_line_in_table() -> None:
    r = nccl("allreduce-a100-x8-single-node-validation-off-superbench.txt")
    (c,) = r.collectives
    assert (c.name, c.ranks, len(c.rows), c.error_column, c.validation) == ("all_reduce", 8, 34, "error", False)
    assert all(row.out_of_place.wrong is None and row.redop == "sum" and row.root is None for row in c.rows)
    assert c.peak_busbw == 235.26 and c.busbw_at(8 * GiB) == 235.26 and c.busbw_at(GiB) == 230.29
    assert c.avg_busbw == 68.4048  # far below the peak: the average includes tiny sizes


def test_indented_tagged_elided_p5() -> None:
    r = nccl("allreduce-eksgpuefa-indented-elided.txt")
    (c,) = r.collectives
    assert (len(c.rows), c.rows[0].size, c.rows[-1].size) == (32, 0, 2 * GiB)
    assert (c.peak_busbw, c.avg_busbw, c.busbw_at(GiB)) == (444.31, 79.9352, 442.13)
    assert c.rows[0].out_of_place.time_us == 0.13


def test_gh200_cuda_busy_failure_without_table() -> None:
    r = nccl("allreduce-gh200-2node-cuda-busy-failure.txt")
    (c,) = r.collectives
    assert (c.name, c.ranks, c.rows, c.peak_busbw) == ("all_reduce", 8, [], None)
    assert r.log.nccl_tests_version == "2.17.8"
    assert any("Test CUDA failure" in e and "busy or unavailable" in e for e in r.errors)
    assert sum("Test failure" in e for e in r.errors) == 6  # one per failing pid
    assert r.to_json()["collectives"][0]["rows"] == []


def test_karpenter_efa_elided_slow_network() -> None:
    r = nccl("allreduce-karpenter-eks-efa-elided.txt")
    (c,) = r.collectives
    assert (c.peak_busbw, c.avg_busbw, c.busbw_at(GiB)) == (2.84, 0.960456, 2.83)
    assert r.transport == "efa" and r.log.ofi_provider == "efa"
    assert r.gdrdma is None  # no channel lines in the capture


@pytest.mark.parametrize("name,version,rows,peak,avg,at_1g", [
    ("allreduce-p4d-eks-2node-nccl283-debug-info.txt", "2.8.3+cuda11.2", 28, 32.71, 7.80081, 32.71),
    ("allreduce-p4d-eks-2node-nccl299-debug-info.txt", "2.9.9+cuda11.2", 30, 43.81, 11.2432, 42.48),
])
def test_p4d_debug_logs_old_error_column(name: str, version: str, rows: int, peak: float, avg: float, at_1g: float) -> None:
    r = nccl(name)
    (c,) = r.collectives
    assert (c.name, c.ranks, len(c.rows), c.error_column) == ("all_reduce", 16, rows, "error")
    assert (c.peak_busbw, c.avg_busbw, c.busbw_at(GiB)) == (peak, avg, at_1g)
    assert c.rows[-1].out_of_place.wrong == 5e-07 and c.wrong_rows == []
    assert r.nccl_version == version
    assert (r.transport, r.gdrdma) == ("efa", True)
    assert r.log.networks == ["AWS Libfabric"] and r.errors == []


def test_srun_prefix_no_banner_no_avg() -> None:
    r = nccl("allreduce-p4de-2node-srun-prefix.txt")
    (c,) = r.collectives
    assert (len(c.rows), c.rows[0].size, c.avg_busbw, c.out_of_bounds) == (29, 8, None, None)
    assert c.rows[-3].out_of_place.time_us == 13552.0
    assert (c.peak_busbw, c.busbw_at(GiB), c.busbw_at(2 * GiB)) == (78.33, 76.79, 78.33)


def test_p5_mpirun_elided() -> None:
    r = nccl("allreduce-p5-2node-eks-mpirun-elided.txt")
    (c,) = r.collectives
    assert [row.size for row in c.rows] == [0] + [2 ** k for k in range(26, 32)]
    assert (c.peak_busbw, c.avg_busbw, c.busbw_at(GiB), c.busbw_at(1_500_000_000)) == (437.79, 52.9753, 313.29, 313.29)


def test_p5_aws_batch_trailing_spaces_wide_wrong_header() -> None:
    r = nccl("allreduce-p5-awsbatch-mpirun-prefix.txt")
    (c,) = r.collectives
    assert (len(c.rows), c.rows[-1].size) == (32, 16 * GiB)
    assert (c.peak_busbw, c.avg_busbw, c.out_of_bounds, c.busbw_at(GiB)) == (483.05, 156.742, 0, 441.81)
    assert c.rows[-1].in_place.busbw == 483.35


def test_ib_docs_excerpt() -> None:
    r = nccl("nccl-debug-info-net-ib-nccl-docs-excerpt.txt")
    assert (r.collectives, r.transport, r.gdrdma) == ([], "ib", None)


def test_pytorch_g6e_log_efa_without_gdr() -> None:
    r = nccl("nccl-debug-pytorch-g6e-4pod-efa-libfabric-v10.txt")
    assert r.collectives == []
    assert (r.transport, r.gdrdma) == ("efa", False)  # channels "via NET/Libfabric/0", "GDR 0"
    assert (r.nccl_version, r.ofi_plugin_version, r.libfabric_version) == ("2.27.3+cuda12.9", "1.16.2", "2.1")
    assert r.log.net_plugin == "Libfabric (v10)" and r.log.ofi_nics == 4 and r.log.ofi_fabric == "efa"
    assert r.log.networks == ["Libfabric"]


def test_warn_no_net_plugin() -> None:
    r = nccl("nccl-warn-failed-to-initialize-any-net-plugin-docs.txt")
    assert r.collectives == [] and r.transport is None
    assert len(r.errors) == 1 and "Failed to initialize any NET plugin" in r.errors[0]


def test_reduce_scatter_named_from_table_shape() -> None:
    r = nccl("reducescatter-a100-x8-single-node-superbench.txt")
    (c,) = r.collectives
    assert (c.name, c.ranks, len(c.rows)) == ("reduce_scatter", 8, 34)
    assert (c.peak_busbw, c.avg_busbw) == (231.52, 60.168)
    assert c.rows[5].to_json() == {"size": 32, "count": 1, "type": "float", "redop": "sum",
                                   "out_of_place": {"time_us": 35.06, "algbw": 0.0, "busbw": 0.0, "wrong": None},
                                   "in_place": {"time_us": 35.14, "algbw": 0.0, "busbw": 0.0, "wrong": None}}


COVERED = [
    "mpirun-not-enough-slots-no-banner-nccl-tests-issue21.txt", "mpirun-not-enough-slots-banner-ompi-issue1571.txt",
    "allreduce-a100-80gb-2node-pairwise-gcm-fixture.txt", "allreduce-a100-80gb-x8-single-node-gcm-fixture.txt",
    "allreduce-a100-x8-single-node-validation-off-superbench.txt", "allreduce-eksgpuefa-indented-elided.txt",
    "allreduce-gh200-2node-cuda-busy-failure.txt", "allreduce-karpenter-eks-efa-elided.txt",
    "allreduce-p4d-eks-2node-nccl283-debug-info.txt", "allreduce-p4d-eks-2node-nccl299-debug-info.txt",
    "allreduce-p4de-2node-srun-prefix.txt", "allreduce-p5-2node-eks-mpirun-elided.txt",
    "allreduce-p5-awsbatch-mpirun-prefix.txt", "nccl-debug-info-net-ib-nccl-docs-excerpt.txt",
    "nccl-debug-pytorch-g6e-4pod-efa-libfabric-v10.txt", "nccl-warn-failed-to-initialize-any-net-plugin-docs.txt",
    "reducescatter-a100-x8-single-node-superbench.txt", "allreduce-k80-no-kernel-image-nccl-tests-issue79.txt",
    "allreduce-rtx3090-unhandled-cuda-error-nccl-tests-issue124.txt",
]


@pytest.mark.parametrize("name,slots,app", [
    ("mpirun-not-enough-slots-no-banner-nccl-tests-issue21.txt", 16, "all_reduce_perf"),
    ("mpirun-not-enough-slots-banner-ompi-issue1571.txt", 4, "./c_hello"),
])
def test_open_mpi_refusal_is_a_launch_error_not_unparseable(name: str, slots: int, app: str) -> None:
    """Open MPI's "not enough slots" help text (with or without its dashed banner) means no rank started: a launch
    error with Open MPI's reason, not "not nccl-tests output"."""
    r = parse_nccl(sample("nccl-tests", name))
    assert r.collectives == [] and r.launch_error is not None
    assert r.launch_error.startswith(f"There are not enough slots available in the system to satisfy the {slots} slots")
    assert app in r.launch_error and r.launch_error in r.errors


@pytest.mark.parametrize("name,first_error", [
    ("allreduce-k80-no-kernel-image-nccl-tests-issue79.txt",
     "zlabs-trainer: Test CUDA failure common.cu:253 'no kernel image is available for execution on the device'"),
    ("allreduce-rtx3090-unhandled-cuda-error-nccl-tests-issue124.txt",
     "ArchLinux: Test NCCL failure all_reduce.cu:44 'unhandled cuda error / '"),
])
def test_a_test_that_fails_before_its_first_row_has_no_rows_and_its_error(name: str, first_error: str) -> None:
    """Both captures stop before a complete row (issue 79 inside its first row, after its size columns): no table to
    judge, the failure line kept as an error."""
    r = parse_nccl(sample("nccl-tests", name))
    assert r.collective("all_reduce") is None
    assert any(e.endswith(first_error) for e in r.errors), r.errors
