"""An image without kernels for the GPU (issue 24 item 5): NCCL cannot run there, which says nothing about the
cluster, so the NCCL checks are NOT SHOWN naming the architecture and the profile key that fixes it; any other
failure before the first row still fails. Real captures: NVIDIA/nccl-tests issues 79 and 124 (tests/data/nccl-tests)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_gpucluster.checks import Status
from pytest_gpucluster.checks.nccl import NcclRun, bandwidth, correctness, network
from pytest_gpucluster.checks.nccl_run import COMPUTE_CAP
from pytest_gpucluster.profile import load_profile
from pytest_gpucluster.sim.tools.fake.nccl_kernels import runs_on
from pytest_gpucluster.sim.tools.images import lookup

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl-tests"
NO_KERNEL = "allreduce-k80-no-kernel-image-nccl-tests-issue79.txt"
NCCL_ERROR = "allreduce-rtx3090-unhandled-cuda-error-nccl-tests-issue124.txt"


def run_of(name: str, itype: str, facts: dict[str, str]) -> NcclRun:
    return NcclRun(f"n1/{itype}", itype, 1, 8, "all_reduce_perf -g 8", log=(DATA / name).read_text(),
                   outcome="probe pod Failed, exit code 2", facts=dict(facts)).parse()


def test_no_kernel_image_for_the_gpu_is_not_shown_naming_the_architecture_and_the_profile_key() -> None:
    run = run_of(NO_KERNEL, "g4dn.12xlarge", {COMPUTE_CAP: "7.5", "gpu product": "Tesla-T4"})
    inst = load_profile().for_instance("g4dn.12xlarge")
    for verdict in (correctness(run), network(run, inst), bandwidth(run, inst)):
        assert verdict.status is Status.NOT_SHOWN, verdict.message
        assert "this image has no kernels for sm_75 (Tesla-T4, compute capability 7.5)" in verdict.message
        assert "set families.g4dn.nccl.image (or instances.g4dn.12xlarge.nccl.image)" in verdict.message
        assert "-gencode=arch=compute_75,code=sm_75" in verdict.message


def test_without_gpu_feature_discovery_labels_it_says_the_capability_is_unknown() -> None:
    verdict = correctness(run_of(NO_KERNEL, "g7e.12xlarge", {}))
    assert verdict.status is Status.NOT_SHOWN
    assert "compute capability unknown: the node has no nvidia.com/gpu.compute.* labels" in verdict.message


def test_another_failure_before_the_first_row_still_fails() -> None:
    verdict = correctness(run_of(NCCL_ERROR, "g6e.12xlarge", {COMPUTE_CAP: "8.9"}))
    assert verdict.status is Status.FAIL and "produced no result" in verdict.message


@pytest.mark.parametrize("cc,runs", [("7.5", False), ("8.0", True), ("8.6", True), ("8.9", True), ("9.0", True),
                                     ("10.0", True), ("10.3", True), ("12.0", False)])
def test_aws_nccl_tests_image_runs_where_its_cubins_do(cc: str, runs: bool) -> None:
    """NVCC_GENCODE sm_80/86/89/90/100 and no PTX (aws-samples nccl-tests.Dockerfile): a cubin runs on the same
    major and a later minor only, so B300 (10.3) runs and T4 (7.5) and RTX PRO 6000 Blackwell (12.0) do not."""
    assert lookup("public.ecr.aws/hpc-cloud/nccl-tests:cuda12.8.1-efa1.42.0-ofiv1.16.0-ncclv2.27.5-1-testsv2.16.4"
                  ).runs_on(cc) is runs


def test_ptx_runs_on_later_architectures_and_unknown_images_run_everywhere() -> None:
    assert runs_on("sass=7.0;ptx=9.0", "12.0") and not runs_on("sass=7.0;ptx=9.0", "8.9")
    assert runs_on("", "7.5") and runs_on("sass=;ptx=", "3.7")
