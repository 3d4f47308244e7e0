"""Where the parser tests find the real outputs copied from shared/samples."""
from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"


def sample(kind: str, name: str) -> str:
    """Text of tests/data/<kind>/<name> (kind: nvidia-smi | fi_info | nccl-tests)."""
    return (DATA / kind / name).read_text(encoding="utf-8")
