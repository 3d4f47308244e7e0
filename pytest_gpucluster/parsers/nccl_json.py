"""nccl-tests `-J FILE` JSON reports (JSON_FILE_VERSION 2 of nccl-tests' src/util.cu)."""
from __future__ import annotations

import json
import os
import re
from typing import Any

from ._text import ParseError
from .nccl_model import KIND, NcclCollective, NcclHalf, NcclResult, NcclRow

__all__ = ["parse_nccl_json", "nccl_version_from_code"]


def nccl_version_from_code(code: int) -> str:
    """NCCL_VERSION_CODE -> dotted version: 22703 -> 2.27.3 (>= 2.9), 2804 -> 2.8.4 (older scheme)."""
    if code >= 10000:
        return f"{code // 10000}.{code % 10000 // 100}.{code % 100}"
    return f"{code // 1000}.{code % 1000 // 100}.{code % 100}"


def _documents(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    docs: list[dict[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        try:
            doc, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ParseError(KIND, f"unreadable -J JSON at offset {exc.pos} ({exc.msg}); was the run killed?") from exc
        if not isinstance(doc, dict):
            raise ParseError(KIND, "-J JSON document is not an object")
        docs.append(doc)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return docs


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None  # "nan" is written as a string


def _half(obj: Any) -> NcclHalf | None:
    if not isinstance(obj, dict):
        return None
    t = _num(obj.get("time", obj.get("cpu_time")))
    alg, bus = _num(obj.get("alg_bw")), _num(obj.get("bus_bw"))
    if t is None or alg is None or bus is None:
        return None
    wrong_f = _num(obj.get("nwrong"))
    wrong: float | int | None = int(wrong_f) if wrong_f is not None and wrong_f.is_integer() else wrong_f
    return NcclHalf(time_us=t, algbw=alg, busbw=bus, wrong=wrong)


def _name(doc: dict[str, Any]) -> str | None:
    args = doc.get("args") or []
    if args and isinstance(args[0], str):
        base = os.path.basename(args[0])
        m = re.match(r"^(\w+?)_perf(?:_mpi)?$", base)
        if m:
            return m.group(1)
    names = {r.get("experiment_name") for r in doc.get("results") or [] if isinstance(r, dict)}
    names.discard("")
    names.discard(None)
    return names.pop() if len(names) == 1 else None


def parse_nccl_json(text: str) -> NcclResult:
    result = NcclResult(format="json")
    for doc in _documents(text):
        if "results" not in doc:
            raise ParseError(KIND, "JSON without a `results` list is not an nccl-tests -J report")
        code = doc.get("nccl_version")
        if isinstance(code, int) and result.log.nccl_version is None:
            result.log.nccl_version = nccl_version_from_code(code)
        raw_config = doc.get("config")
        config: dict[str, Any] = raw_config if isinstance(raw_config, dict) else {}
        devices = config.get("devices") if isinstance(config.get("devices"), list) else None
        coll = NcclCollective(name=_name(doc), ranks=len(devices) if devices else None)
        validation = config.get("validation")
        coll.validation = None if validation is None else bool(validation)
        for rec in doc.get("results") or []:
            if not isinstance(rec, dict):
                continue
            root = str(rec.get("root", "")).strip()
            coll.rows.append(NcclRow(
                size=int(rec.get("size", 0)), count=int(rec.get("count", 0)), type=str(rec.get("type", "")),
                redop=rec.get("redop"), root=int(root) if re.match(r"^-?\d+$", root) else None,
                out_of_place=_half(rec.get("out_of_place")), in_place=_half(rec.get("in_place"))))
        oob = doc.get("out_of_bounds")
        if isinstance(oob, dict) and isinstance(oob.get("count"), int):
            coll.out_of_bounds = oob["count"]
        avg = doc.get("average_bus_bandwidth")
        if isinstance(avg, dict):
            coll.avg_busbw = _num(avg.get("bandwidth"))
        result.collectives.append(coll)
        for err in doc.get("errors") or []:
            if isinstance(err, str) and err and err not in result.errors:
                result.errors.append(err)
    return result
