"""Fake NVIDIA CUDA sample `vectorAdd` (nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-*): its real output
on success, its real `Failed to allocate device vector A (error code <cudaGetErrorString>)!` otherwise.

Text: NVIDIA/cuda-samples Samples/0_Introduction/vectorAdd/vectorAdd.cu (printf/fprintf lines, exit(EXIT_FAILURE)),
as shown in the GPU Operator docs' `kubectl logs pod/cuda-vectoradd`. Error strings: CUDA runtime
cudaGetErrorString for cudaErrorInsufficientDriver (35), cudaErrorNoDevice (100), cudaErrorSystemNotReady (802).
"""
from __future__ import annotations

import sys
from typing import Any

from . import ctx as simctx
from . import health

CUDA_RUNTIME = "12.5"          # the image's CUDA runtime (vectoradd-cuda12.5.0)
MIN_DRIVER = 525               # CUDA 12.x minor version compatibility: driver >= 525 (docs.nvidia.com/deploy/cuda-compatibility)
OK = """[Vector addition of 50000 elements]
Copy input data from the host memory to the CUDA device
CUDA kernel launch with 196 blocks of 256 threads
Copy output data from the CUDA device to the host memory
Test PASSED
Done
"""
INSUFFICIENT = "CUDA driver version is insufficient for CUDA runtime version"
NO_DEVICE = "no CUDA-capable device is detected"
NOT_READY = "system not yet initialized"


def _error(ctx: dict[str, Any]) -> str | None:
    if simctx.fault(ctx, "driver-unreachable") is not None:
        return NO_DEVICE
    major = health.driver_major(ctx)
    if major is not None and major < MIN_DRIVER:
        return INSUFFICIENT
    if not simctx.visible_gpus(ctx):
        return NO_DEVICE
    if simctx.fault(ctx, "nvlink-down") is not None:
        return NOT_READY           # an NVSwitch node whose fabric manager has not trained the fabric
    return None


def vector_add(argv: list[str]) -> int:
    ctx = simctx.load()
    recorded = simctx.replay(ctx, "vectorAdd")
    if recorded is not None:
        return recorded
    error = _error(ctx)
    print("[Vector addition of 50000 elements]", flush=True)
    if error is not None:
        print(f"Failed to allocate device vector A (error code {error})!", file=sys.stderr)
        return 1
    sys.stdout.write(OK.split("\n", 1)[1])
    return 0
