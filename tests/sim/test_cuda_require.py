"""NVIDIA_REQUIRE_CUDA as the CUDA images set it and the NVIDIA container runtime enforces it (sim/tools/cuda_require.py)."""
from __future__ import annotations

import pytest

from pytest_gpucluster.sim.tools.cuda_require import cuda_of_tag, refusal, require_cuda, satisfied

# The head of NVIDIA_REQUIRE_CUDA as `env` prints it inside nvidia/cuda:13.0.2-base-ubuntu22.04 (a public capture).
CAPTURED_13_0 = ("cuda>=13.0 brand=unknown,driver>=535,driver<536 brand=grid,driver>=535,driver<536 "
                 "brand=tesla,driver>=535,driver<536 brand=nvidia,driver>=535,driver<536 ")


def test_the_requirement_reads_as_the_images_print_it() -> None:
    assert require_cuda("13.0").startswith(CAPTURED_13_0)
    assert require_cuda("13.0").endswith("brand=cloudgaming,driver>=575,driver<576")
    assert "driver>=560," not in require_cuda("13.0") and "driver>=560," in require_cuda("12.9")


@pytest.mark.parametrize("cuda_image, driver, cuda, starts", [
    ("13.0", "560.35.05", "12.6", False),     # AL2023 AMIs v20241121..v20250403: CUDA 13 images refused
    ("13.0", "570.172.08", "12.8", True),     # a forward-compatible branch the image lists
    ("13.0", "580.105.08", "13.0", True),     # the driver's own CUDA is new enough
    ("12.9", "560.35.05", "12.6", True),      # AWS's nccl-tests image (CUDA 12.9.1) lists the 560 branch
    ("12.8", "560.35.05", "12.6", True),      # the default tag cuda12.8.1-efa...: its 12.8.1 base lists 560 too
    ("12.5", "560.35.05", "12.6", True),      # vectorAdd sample: CUDA 12.5 <= 12.6
    ("12.5", "525.147.05", "12.0", False),
])
def test_requirement_on_a_driver(cuda_image: str, driver: str, cuda: str, starts: bool) -> None:
    assert satisfied(require_cuda(cuda_image), driver, cuda) is starts


def test_refusal_names_the_cuda_condition_and_honours_disable_require() -> None:
    env = {"NVIDIA_REQUIRE_CUDA": require_cuda("13.0")}
    assert refusal(env, "560.35.05", "12.6") == (
        "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=13.0, please update your driver to a "
        "newer version, or use an earlier cuda container")
    assert refusal({**env, "NVIDIA_DISABLE_REQUIRE": "true"}, "560.35.05", "12.6") is None
    assert refusal({**env, "NVIDIA_DISABLE_REQUIRE": "yes"}, "560.35.05", "12.6") is not None   # ParseBool: not true


@pytest.mark.parametrize("ref, cuda", [("nvidia/cuda:13.0.2-runtime-ubuntu22.04", "13.0"),
                                       ("nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04", "12.5"),
                                       ("nvidia/cuda:latest", None)])
def test_cuda_of_tag(ref: str, cuda: str | None) -> None:
    assert cuda_of_tag(ref) == cuda


def test_the_nccl_tests_image_requires_the_cuda_its_tag_names() -> None:
    from pytest_gpucluster.options import DEFAULT_NCCL_IMAGE
    from pytest_gpucluster.sim.tools.images import lookup
    env = lookup(DEFAULT_NCCL_IMAGE).env_for(DEFAULT_NCCL_IMAGE)
    assert env["NVIDIA_REQUIRE_CUDA"].startswith("cuda>=12.8 ")           # tag cuda12.8.1-...
    latest = "public.ecr.aws/hpc-cloud/nccl-tests:latest"
    assert lookup(latest).env_for(latest)["NVIDIA_REQUIRE_CUDA"].startswith("cuda>=12.9 ")   # the Dockerfile's ARG

