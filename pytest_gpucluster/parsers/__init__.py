"""Pure parsers for nvidia-smi, fi_info and nccl-tests output, with typed results and stable JSON."""
from __future__ import annotations

from typing import Any, Callable

from ._text import ParseError
from .fi_info import FiEntry, FiInfoResult, parse_fi_info
from .dcgm_diag import DcgmDiagResult, DcgmTestResult, parse_dcgm_diag
from .dcgm_diag_text import parse_dcgm_diag_output, parse_dcgm_diag_text
from .nccl import NcclCollective, NcclResult, NcclRow, parse_nccl
from .nvidia_smi import Gpu, NvidiaSmiResult, parse_nvidia_smi, product_key, product_matches
from .nvidia_smi_model import SmiGpu, SmiLog
from .nvidia_smi_q import parse_smi_log
from .nvlink import NvlinkGpu, NvlinkResult, parse_nvlink
from .topo import TopoMatrix, parse_topo
from .xid import XidEvent, XidLog, parse_xid

__all__ = [
    "ParseError", "parse", "detect_kind", "KINDS",
    "parse_nvidia_smi", "NvidiaSmiResult", "Gpu", "product_key", "product_matches",
    "parse_fi_info", "FiInfoResult", "FiEntry",
    "parse_nccl", "NcclResult", "NcclCollective", "NcclRow",
    "parse_dcgm_diag", "parse_dcgm_diag_text", "parse_dcgm_diag_output", "DcgmDiagResult", "DcgmTestResult",
    "parse_xid", "XidLog", "XidEvent",
    "parse_nvlink", "NvlinkResult", "NvlinkGpu", "parse_topo", "TopoMatrix", "parse_smi_log", "SmiLog", "SmiGpu",
]

# CLI kind name -> parser
KINDS: dict[str, Callable[[str], Any]] = {
    "nvidia-smi": parse_nvidia_smi,
    "fi-info": parse_fi_info,
    "nccl": parse_nccl,
    "dcgm-diag": parse_dcgm_diag_output,     # the text table or the -j JSON document
    "xid": parse_xid,
    "nvlink": parse_nvlink,
    "topo": parse_topo,
}


def parse(kind: str, text: str) -> Any:
    """Parse `text` as `kind` (nvidia-smi | fi-info | nccl | dcgm-diag | xid | nvlink | topo); ParseError when it is
    not that output (xid and nvlink never raise: a log without Xids and empty nvlink output are real answers)."""
    try:
        parser = KINDS[kind.replace("_", "-")]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}") from None
    return parser(text)


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
