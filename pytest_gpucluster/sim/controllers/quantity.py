"""Kubernetes resource quantities: parse `100m`, `16Gi`, `1e3` exactly and format them back."""
from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Mapping

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value: Any) -> Fraction:
    """`"100m"` -> 1/10, `"16Gi"` -> 17179869184, ints and floats pass through exactly."""
    if isinstance(value, bool):
        raise QuantityError(f"quantities must be numbers or strings, given {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise QuantityError(f"quantities must match the regular expression "
                            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$', given {value!r}")
    number, exponent, suffix = match.groups()
    base = Fraction(number)
    if exponent:
        return base * Fraction(10) ** int(exponent[1:])
    return base * _SUFFIXES[suffix or ""]


def format_quantity(amount: Fraction, resource: str = "") -> str:
    """Canonical-looking text: cpu in millicores when fractional, bytes as Ki/Mi/Gi when exact."""
    if amount.denominator != 1:
        milli = amount * 1000
        if milli.denominator == 1:
            return f"{milli.numerator}m"
        return str(float(amount))
    n = amount.numerator
    if resource in ("memory", "ephemeral-storage") or resource.startswith("hugepages-"):
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            unit = _SUFFIXES[suffix].numerator
            if n and n % unit == 0:
                return f"{n // unit}{suffix}"
    return str(n)


def resource_list(values: Mapping[str, Any] | None) -> dict[str, Fraction]:
    """A `{name: quantity}` mapping (requests, allocatable) parsed to exact numbers."""
    return {name: parse_quantity(q) for name, q in (values or {}).items()}


_REQUESTS_CACHE: dict[tuple[str, str], dict[str, Fraction]] = {}
_REQUESTS_CACHE_SIZE = 20000


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Fraction]:
    """Effective requests of a pod as kube-scheduler computes them (a fresh dict the caller may edit).

    Sum over containers, max with each init container, plus overhead. A container that sets a
    limit but no request for a resource requests its limit (API defaulting). Stored pods (with a uid
    and resourceVersion) are parsed once per version: the scheduler asks for them on every pass.
    """
    meta = pod.get("metadata") or {}
    key = (str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))
    if not key[0] or not key[1]:
        return _pod_requests(pod)
    cached = _REQUESTS_CACHE.get(key)
    if cached is None:
        cached = _pod_requests(pod)     # QuantityError propagates and is not cached
        if len(_REQUESTS_CACHE) >= _REQUESTS_CACHE_SIZE:
            _REQUESTS_CACHE.clear()
        _REQUESTS_CACHE[key] = cached
    return dict(cached)


def _pod_requests(pod: Mapping[str, Any]) -> dict[str, Fraction]:
    spec = pod.get("spec") or {}

    def container_requests(container: Mapping[str, Any]) -> dict[str, Fraction]:
        resources = container.get("resources") or {}
        merged = dict(resource_list(resources.get("limits")))
        merged.update(resource_list(resources.get("requests")))
        return merged

    total: dict[str, Fraction] = {}
    for container in spec.get("containers") or []:
        for name, amount in container_requests(container).items():
            total[name] = total.get(name, Fraction(0)) + amount
    for container in spec.get("initContainers") or []:
        for name, amount in container_requests(container).items():
            if amount > total.get(name, Fraction(0)):
                total[name] = amount
    for name, amount in resource_list(spec.get("overhead")).items():
        total[name] = total.get(name, Fraction(0)) + amount
    return total
