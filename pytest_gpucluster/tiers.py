"""Severity per check: the profile's `tiers:` section (blocking or advisory, and why), read and validated here.

A blocking check that fails makes the verdict NOT ACCEPTED; an advisory one that fails is a WARN (shown in the grid,
the report and summary.json) that leaves the verdict and the exit code alone. Keys are `module.py::function` (the
function may be a glob); a check no key matches is blocking. An entry may name a different tier for multi-tenant
clusters (`when_multi_tenant`, chosen by `cluster.multi_tenant`). Format and defaults: profiles/default.yaml and
docs/report.md "Tiers".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Mapping, Protocol

BLOCKING, ADVISORY = "blocking", "advisory"
TIERS = (BLOCKING, ADVISORY)
ENTRY_KEYS = {"tier", "reason", "when_multi_tenant"}
KEY = re.compile(r"^test_\w+\.py::[\w*?\[\]!-]+$")
UNLISTED_REASON = "not listed in the profile's tiers: a failed check blocks acceptance"


class Validating(Protocol):
    """The parts of profile._Validator this module uses (file:line errors)."""

    def fail(self, where: tuple[str, ...], message: str) -> None: ...

    def keys(self, obj: Any, allowed: set[str], where: tuple[str, ...]) -> dict[str, Any]: ...


def validate_tiers(v: Validating, obj: Any, multi_tenant: Any = None) -> None:
    """`tiers: {module.py::function: {tier, reason, when_multi_tenant}}`, each tier blocking | advisory; and the
    `cluster.multi_tenant` switch (true / false) that picks `when_multi_tenant`."""
    if multi_tenant is not None and not isinstance(multi_tenant, bool):
        v.fail(("cluster", "multi_tenant"), f"expected true or false, got {multi_tenant!r}")
    for key, entry in v.keys(obj, set(map(str, obj or {})), ("tiers",)).items():
        where = ("tiers", str(key))
        if not KEY.match(str(key)):
            v.fail(where, "expected `test_module.py::test_function` (the function may be a glob)")
        entry = v.keys(entry, ENTRY_KEYS, where)
        for field in ("tier", "when_multi_tenant"):
            if field in entry and entry[field] not in TIERS:
                v.fail(where + (field,), f"expected {' or '.join(TIERS)}, got {entry[field]!r}")
        if "reason" in entry and not (isinstance(entry["reason"], str) and entry["reason"].strip()):
            v.fail(where + ("reason",), "expected a sentence saying why this tier")


def new_entries_without_reason(merged: Mapping[str, Any] | None, shipped: Mapping[str, Any] | None) -> list[str]:
    """Keys a user profile added without the tier or the reason every entry carries."""
    shipped = shipped or {}
    return [str(k) for k, e in (merged or {}).items()
            if k not in shipped and not (isinstance(e, dict) and e.get("tier") and e.get("reason"))]


@dataclass(frozen=True)
class Tier:
    """The tier a check has in this run, the shipped default and why."""

    check: str               # the key that matched (`module.py::function`), or the check itself when unlisted
    tier: str
    default: str             # the shipped profile's tier for this check in this cluster
    reason: str
    changed_by_profile: bool = False

    @property
    def advisory(self) -> bool:
        return self.tier == ADVISORY


class Tiers:
    """Looks up a check's tier: the first key (in profile order) whose module and function glob match."""

    def __init__(self, effective: Mapping[str, Any] | None, shipped: Mapping[str, Any] | None = None,
                 multi_tenant: bool = False) -> None:
        self.effective = {str(k): dict(v or {}) for k, v in (effective or {}).items()}
        self.shipped = {str(k): dict(v or {}) for k, v in (shipped if shipped is not None else effective or {}).items()}
        self.multi_tenant = multi_tenant

    def _pick(self, entry: Mapping[str, Any]) -> str:
        if self.multi_tenant and entry.get("when_multi_tenant"):
            return str(entry["when_multi_tenant"])
        return str(entry.get("tier") or BLOCKING)

    def of(self, module: str, function: str) -> Tier:
        """`module` as a file name (test_gpu_visibility.py), `function` without parameters."""
        for key in self.effective:
            mod, _, glob = key.partition("::")
            if mod == module and fnmatchcase(function, glob):
                return self.entry(key)
        return Tier(f"{module}::{function}", BLOCKING, BLOCKING, UNLISTED_REASON)

    def entry(self, key: str) -> Tier:
        """One entry of the section: its tier here, the shipped default, the reason."""
        entry, shipped = self.effective[key], self.shipped.get(key)
        tier = self._pick(entry)
        default = self._pick(shipped) if shipped is not None else BLOCKING
        return Tier(key, tier, default, str(entry.get("reason") or ""), shipped is None or tier != default)

    def rows(self) -> list[Tier]:
        """Every entry, in profile order (as `gpucluster profile show` prints them)."""
        return [self.entry(key) for key in self.effective]
