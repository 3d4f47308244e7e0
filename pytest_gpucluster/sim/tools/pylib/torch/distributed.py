"""torch.distributed of the fake torch: availability only (no process groups)."""
from __future__ import annotations


def is_available() -> bool:
    return True


def is_nccl_available() -> bool:
    return True
