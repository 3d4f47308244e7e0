"""Fake `torch` for simulated pods: CUDA device queries answered from the pod's sim context."""
from __future__ import annotations

import time

from . import cuda, distributed, version

# Importing NGC PyTorch takes seconds before any CUDA work starts (modelled: no published figure; with the per-device
# context cost in cuda.py, eight GPUs take longer than a fixed 4 s sleep: a probe must wait for the load's own
# marker, never for a guessed time).
IMPORT_S = 3.0
time.sleep(IMPORT_S)

__version__ = "2.5.1+cu124"
__all__ = ["cuda", "distributed", "version", "__version__"]


class _Tensor:
    """Just enough of a CUDA tensor for a load loop (`x @ x`): the node-health probe's matmul load. A matmul on a
    CUDA device is queued on that GPU for the time it takes there (cuda.enqueue); the host returns at once, as CUDA
    kernel launches are asynchronous, and waits in torch.cuda.synchronize(). (It used to return at once and cost
    nothing, so a `while time.time() - t < 8` load loop spun a host core for 8 s per node.)"""

    def __init__(self, device: str, size: tuple[int, ...] = ()) -> None:
        self.device = device
        self.size = size

    def __matmul__(self, other: "_Tensor") -> "_Tensor":
        rows = self.size[0] if self.size else 1
        inner = self.size[-1] if self.size else 1
        cols = other.size[-1] if len(other.size) > 1 else 1
        if self.device.startswith("cuda"):
            cuda.enqueue(int(self.device.partition(":")[2] or 0), 2.0 * rows * inner * cols)
        return _Tensor(self.device, (rows, cols) if len(other.size) > 1 else (rows,))


def randn(*size: int, device: str = "cpu") -> _Tensor:
    """CUDA tensors fail as PyTorch does when the NVSwitch fabric is not ready (fabric manager stopped):
    `RuntimeError: CUDA error: system not yet initialized` (cudaErrorSystemNotReady)."""
    if device.startswith("cuda"):
        if cuda._fabric_not_ready():
            raise RuntimeError("Unexpected error from cudaGetDeviceCount(). Did you run some cuda functions before "
                               "calling NumCudaDevices() that might have already set an error? Error 802: system not "
                               "yet initialized")
        cuda._start(int(device.partition(":")[2] or 0))
    return _Tensor(device, tuple(size))
