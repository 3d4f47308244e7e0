"""NVIDIA_REQUIRE_CUDA as NVIDIA's CUDA images set it and as the NVIDIA container runtime enforces it at container
start: the requirement of an image by its CUDA version, and the refusal (or not) on a node's driver.

The runtime's rules (NVIDIA/nvidia-container-toolkit@d34b3046 cmd/nvidia-container-runtime/README.md "NVIDIA_REQUIRE_*"
and internal/config/image/cuda_image.go GetRequirements): space-separated constraints are ORed, comma-separated ones
ANDed, several NVIDIA_REQUIRE_* variables ANDed; NVIDIA_DISABLE_REQUIRE=<true> (Go strconv.ParseBool) skips them all;
the check runs only where the runtime injects the driver (a GPU given, or NVIDIA_VISIBLE_DEVICES honoured).
"""
from __future__ import annotations

import re

# The brands each branch alternative lists, in the images' order (identical in every capture below).
BRANDS = ("unknown", "grid", "tesla", "nvidia", "quadro", "quadrortx", "nvidiartx", "vapps", "vpc", "vcs", "vws",
          "cloudgaming")
# CUDA version of the image -> the driver branches its NVIDIA_REQUIRE_CUDA accepts besides `cuda>=X.Y` (the
# forward-compatibility branches of the image's cuda-compat package), as the images print their environment:
#   13.1: a Dockerfile copying the CUDA 13.1.1 base image's ENV (rapidsai docs): 535, 550, 570, 575, 580
#   13.0: `env` inside nvidia/cuda:13.0.2-base-ubuntu22.04, and images built on 13.0.x: 535, 550, 565, 570, 575 (no 560)
#   12.9: the environment of an image built FROM a CUDA 12.9.1 base (vLLM): 535, 550, 560, 565, 570
#   12.8: the history of an image built FROM nvidia/cuda:12.8.1-cudnn-devel (ENV step): 470, 535, 550, 560, 565
#   12.5: `env` in a CUDA 12.5.1 image (Colab runtime): 470, 535, 550
BRANCHES: dict[str, tuple[int, ...]] = {
    "13.1": (535, 550, 570, 575, 580),
    "13.0": (535, 550, 565, 570, 575),
    "12.9": (535, 550, 560, 565, 570),
    "12.8": (470, 535, 550, 560, 565),
    "12.5": (470, 535, 550),
}
# The GPU brand the runtime compares `brand=` with (NVML's brand, lowercased): data-center GPUs print
# `Product Brand : NVIDIA` (shared/samples q-h100-80gb-hbm3-590-load.txt, q-h200-590-idle.txt). Every branch
# alternative lists both `tesla` and `nvidia`, so the data-center brands decide nothing here.
BRAND = "nvidia"
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_VERSION = re.compile(r"(\d+)\.(\d+)")


def require_cuda(cuda: str) -> str:
    """NVIDIA_REQUIRE_CUDA of an image built for CUDA `cuda` ("13.0"); without a known branch list, the plain
    `cuda>=X.Y` (stricter than an image listing forward-compatible branches, never kinder)."""
    alternatives = [f"brand={b},driver>={d},driver<{d + 1}" for d in BRANCHES.get(cuda, ()) for b in BRANDS]
    return " ".join([f"cuda>={cuda}", *alternatives])


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _holds(predicate: str, driver: str, cuda: str, brand: str) -> bool:
    match = re.match(r"^(cuda|driver|brand|arch)\s*(>=|<=|==|=|<|>)\s*(.+)$", predicate.strip())
    if not match:
        return False
    name, op, value = match.groups()
    if name == "brand":
        return op in ("=", "==") and value.lower() == brand
    if name == "arch":
        return True          # the compute capability constraint; the images here set none
    have, want = _version(cuda if name == "cuda" else driver), _version(value)
    return {">=": have >= want, "<=": have <= want, ">": have > want, "<": have < want,
            "=": have == want, "==": have == want}[op]


def satisfied(requirement: str, driver: str, cuda: str, brand: str = BRAND) -> bool:
    """One NVIDIA_REQUIRE_* value: any space-separated alternative whose comma-separated predicates all hold."""
    return any(all(_holds(p, driver, cuda, brand) for p in alt.split(",")) for alt in requirement.split())


def refusal(env: dict[str, str], driver: str, cuda: str, brand: str = BRAND) -> str | None:
    """nvidia-container-cli's refusal of a container whose environment is `env` on a node with this driver and CUDA
    version, or None when it starts. The runtime names the image's `cuda>=` condition (as seen in captures:
    `requirement error: unsatisfied condition: cuda>=12.8, please update your driver to a newer version, or use an
    earlier cuda container`, MauriceNino/dashdot issue #1226)."""
    if env.get("NVIDIA_DISABLE_REQUIRE", "") in _TRUE:
        return None
    for name, value in sorted(env.items()):
        if not name.startswith("NVIDIA_REQUIRE_") or name.startswith("NVIDIA_REQUIRE_JETPACK") or not value.strip():
            continue
        if not satisfied(value, driver, cuda, brand):
            condition = value.split()[0]
            return (f"nvidia-container-cli: requirement error: unsatisfied condition: {condition}, please update your "
                    "driver to a newer version, or use an earlier cuda container")
    return None


def cuda_of_tag(image: str) -> str | None:
    """The CUDA major.minor an NVIDIA CUDA image tag names (`nvidia/cuda:13.0.2-runtime-ubuntu22.04` -> 13.0,
    `...cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04` -> 12.5)."""
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    match = re.search(r"(?:^|cuda)(\d+\.\d+)(?:\.\d+)?(?:-|$)", tag)
    return match.group(1) if match else None
