"""Taint and toleration matching as Kubernetes does it (shared by the suites that judge taints)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping


def tolerates(tolerations: Iterable[Mapping[str, Any]] | None, taint: Mapping[str, Any]) -> bool:
    """Kubernetes toleration matching: empty key + Exists matches every taint; empty effect matches every effect."""
    for tol in tolerations or []:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        operator = tol.get("operator") or "Equal"
        if not tol.get("key"):
            if operator == "Exists":
                return True
            continue
        if tol["key"] == taint.get("key") and (operator == "Exists"
                                               or (tol.get("value") or "") == (taint.get("value") or "")):
            return True
    return False


def taint_text(taint: Mapping[str, Any]) -> str:
    """`key=value:Effect` as kubectl prints it (`key:Effect` without a value)."""
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint.get('key')}{value}:{taint.get('effect')}"
