"""Kubernetes resource quantities (`8`, `128Mi`, `1.5Gi`, `500m`): the one parser every module uses."""
from __future__ import annotations

import re
from typing import Any

_UNITS = {"": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          "Ki": 1024.0, "Mi": 1024.0 ** 2, "Gi": 1024.0 ** 3, "Ti": 1024.0 ** 4, "Pi": 1024.0 ** 5, "Ei": 1024.0 ** 6}
# k8s.io/apimachinery/pkg/api/resource/quantity.go: <signedNumber><suffix>, suffix binary, decimal SI or exponent.
_QUANTITY = re.compile(r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)"
                       r"|[eE](?P<exp>[+-]?\d+))?")


def parse_quantity(value: Any) -> float:
    """The quantity's value in base units; ValueError names the bad text."""
    match = _QUANTITY.fullmatch(str(value).strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    number = float(match["num"])
    if match["exp"] is not None:
        return number * 10.0 ** int(match["exp"])
    return number * _UNITS[match["suffix"] or ""]


def quantity_or(value: Any, default: float = 0.0) -> float:
    """parse_quantity, or `default` for a missing or malformed value (absent resources read as 0)."""
    if value is None:
        return default
    try:
        return parse_quantity(value)
    except ValueError:
        return default


def count(value: Any) -> int:
    """A countable resource (`nvidia.com/gpu`, `vpc.amazonaws.com/efa`): 0 when absent or malformed."""
    return int(quantity_or(value))


def mebibytes(value: Any) -> float:
    """A memory-like quantity in MiB (0 when absent or malformed)."""
    return quantity_or(value) / (1 << 20)


def allocatable(node: dict[str, Any], resource: str) -> int:
    """A countable resource of a Node object's `.status.allocatable`."""
    return count(((node.get("status") or {}).get("allocatable") or {}).get(resource))
