"""`dcgmi diag -j` JSON (DCGM 3.x "DCGM GPU Diagnostic" and 4.x "DCGM Diagnostic" documents): one result per test
per GPU, with DCGM's own warning text and error ids."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ._text import ParseError

KIND = "dcgm-diag"
__all__ = ["DcgmDiagResult", "DcgmTestResult", "parse_dcgm_diag"]

# DCGM prints Pass/Fail/Warn/Skip (4.x), PASS/FAIL/SKIP (3.x), "Not Run" for tests it never started.
_STATUS = {"pass": "pass", "fail": "fail", "warn": "warn", "warning": "warn", "skip": "skip", "skipped": "skip",
           "not run": "not run", "notrun": "not run"}


@dataclass
class DcgmTestResult:
    """One test's result on one GPU (entity_id None: a result DCGM gave for the whole test)."""

    test: str
    category: str
    entity_id: int | None
    status: str                      # pass | fail | warn | skip | not run | unknown:<word>
    warnings: list[str] = field(default_factory=list)
    error_ids: list[int] = field(default_factory=list)
    info: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"test": self.test, "category": self.category, "gpu": self.entity_id, "status": self.status,
                "warnings": self.warnings, "error_ids": self.error_ids, "info": self.info}


@dataclass
class DcgmDiagResult:
    dcgm_version: str | None = None
    driver_version: str | None = None
    results: list[DcgmTestResult] = field(default_factory=list)
    gpus: dict[int, dict[str, str]] = field(default_factory=dict)     # entity id -> device_id, serial
    runtime_error: str | None = None

    def tests(self) -> list[str]:
        return list(dict.fromkeys(r.test for r in self.results))

    def with_status(self, *statuses: str) -> list[DcgmTestResult]:
        return [r for r in self.results if r.status in statuses or (r.status.startswith("unknown") and
                                                                     "unknown" in statuses)]

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "dcgm_version": self.dcgm_version, "driver_version": self.driver_version,
                "runtime_error": self.runtime_error, "gpus": {str(k): v for k, v in self.gpus.items()},
                "results": [r.to_json() for r in self.results]}


def _status(raw: Any) -> str:
    word = str(raw or "").strip().lower()
    return _STATUS.get(word, f"unknown:{word}" if word else "unknown:")


def _warnings(obj: dict[str, Any]) -> tuple[list[str], list[int]]:
    texts, ids = [], []
    for w in obj.get("warnings") or []:
        if isinstance(w, dict):
            if w.get("warning"):
                texts.append(str(w["warning"]))
            if isinstance(w.get("error_id"), int):
                ids.append(w["error_id"])
        elif w:
            texts.append(str(w))
    return texts, ids


def _entities(res: dict[str, Any]) -> list[int | None]:
    """entity_id (4.x), gpu_id / gpu_ids "0,1,2" (3.x)."""
    for key in ("entity_id", "gpu_id", "gpu_ids"):
        if key in res:
            value = res[key]
            if isinstance(value, int):
                return [value]
            parts = [p.strip() for p in str(value).split(",") if p.strip().isdigit()]
            return [int(p) for p in parts] or [None]
    return [None]


def parse_dcgm_diag(text: str) -> DcgmDiagResult:
    """Parse the JSON document dcgmi prints (a banner line before it, as 3.x prints, is skipped)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ParseError(KIND, "no JSON document")
    try:
        data = json.loads(text[start:end + 1])
    except json.JSONDecodeError as exc:
        raise ParseError(KIND, f"malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ParseError(KIND, "the JSON document is not an object")
    root = data.get("DCGM Diagnostic") or data.get("DCGM GPU Diagnostic")
    if not isinstance(root, dict):
        raise ParseError(KIND, "no 'DCGM Diagnostic' / 'DCGM GPU Diagnostic' object")
    meta = data.get("metadata") or {}
    out = DcgmDiagResult(
        dcgm_version=str(meta.get("version") or root.get("version") or "") or None,
        driver_version=str(meta.get("Driver Version Detected") or root.get("Driver Version Detected")
                           or root.get("driver_version_detected") or "") or None,
        runtime_error=str(root.get("runtime_error") or data.get("runtime_error") or "") or None)
    for group in data.get("entity_groups") or []:
        if isinstance(group, dict) and group.get("entity_group") == "GPU":
            for ent in group.get("entities") or []:
                if isinstance(ent, dict) and isinstance(ent.get("entity_id"), int):
                    out.gpus[ent["entity_id"]] = {"device_id": str(ent.get("device_id", "")),
                                                  "serial": str(ent.get("serial_num", ""))}
    for cat in root.get("test_categories") or []:
        if not isinstance(cat, dict):
            continue
        for test in cat.get("tests") or []:
            if not isinstance(test, dict):
                continue
            name, seen = str(test.get("name") or "?"), False
            for res in test.get("results") or []:
                if not isinstance(res, dict) or res.get("entity_group", "GPU") != "GPU":
                    continue
                warnings, ids = _warnings(res)
                info = [str(i) for i in res.get("info") or []]
                for ent in _entities(res):
                    out.results.append(DcgmTestResult(name, str(cat.get("category") or ""), ent,
                                                      _status(res.get("status")), warnings, ids, info))
                    seen = True
            summary = test.get("test_summary")
            if not seen and isinstance(summary, dict):    # a test with only a summary (no per-GPU result)
                warnings, ids = _warnings(summary)
                out.results.append(DcgmTestResult(name, str(cat.get("category") or ""), None,
                                                  _status(summary.get("status")), warnings, ids,
                                                  [str(i) for i in summary.get("info") or []]))
    if not out.results and out.runtime_error is None:
        raise ParseError(KIND, "a diagnostic document without any test result")
    return out
