"""Pure parsers for nvidia-smi, fi_info and nccl-tests output, with typed results and stable JSON."""
from __future__ import annotations

from typing import Any, Callable

from ._text import ParseError
from .fi_info import FiEntry, FiInfoResult, parse_fi_info
from .nccl import NcclCollective, NcclResult, NcclRow, parse_nccl
from .nvidia_smi import Gpu, NvidiaSmiResult, parse_nvidia_smi, product_key, product_matches

__all__ = [
    "ParseError", "parse", "detect_kind", "KINDS",
    "parse_nvidia_smi", "NvidiaSmiResult", "Gpu", "product_key", "product_matches",
    "parse_fi_info", "FiInfoResult", "FiEntry",
    "parse_nccl", "NcclResult", "NcclCollective", "NcclRow",
]

# CLI kind name -> parser
KINDS: dict[str, Callable[[str], Any]] = {
    "nvidia-smi": parse_nvidia_smi,
    "fi-info": parse_fi_info,
    "nccl": parse_nccl,
}


def parse(kind: str, text: str) -> NvidiaSmiResult | FiInfoResult | NcclResult:
    """Parse `text` as `kind` (nvidia-smi | fi-info | nccl); ParseError when it is not that output."""
    try:
        parser = KINDS[kind.replace("_", "-")]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}") from None
    result: NvidiaSmiResult | FiInfoResult | NcclResult = parser(text)
    return result


def detect_kind(text: str) -> str | None:
    """Which tool printed `text`: "nvidia-smi", "fi-info", "nccl" or None. Tries the strict parsers
    in an order where no output is mistaken for another (nccl last: it accepts bare NCCL logs)."""
    for kind in ("nvidia-smi", "fi-info", "nccl"):
        try:
            KINDS[kind](text)
        except ParseError:
            continue
        return kind
    return None
