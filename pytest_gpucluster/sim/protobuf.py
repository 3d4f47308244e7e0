"""Decoding of `application/vnd.kubernetes.protobuf` request bodies into the JSON objects the store keeps.

Why the simulator needs it: since client-go 1.32 every generated typed client for a built-in kind sends its bodies
as protobuf, without consulting discovery or OpenAPI (kubernetes/kubernetes c2ae465355b5 "Use protobuf for core
clients": client-go gentype/type.go `PrefersProtobuf`, rest/request.go `UseProtobufAsDefault`). kubectl >= 1.32
builds `create namespace|configmap|secret|service|serviceaccount|job|role|rolebinding|clusterrole|...`, `drain`'s
evictions and pod deletes on those clients (`run`, `apply`, `create -f` and `delete` send JSON: they go through
unstructured objects). There is no JSON fallback to provoke: client-go reacts to HTTP 415 only for CBOR bodies
(rest/client.go `requestClientContentConfigProvider.UnsupportedMediaType`: "all generated clients accessing built-in
kube resources are forced to protobuf, so those will not degrade to JSON"), and a real kube-apiserver decodes
protobuf for every built-in kind. Responses stay JSON: those requests accept
`application/vnd.kubernetes.protobuf,application/json` and client-go decodes by the response's Content-Type.

The JSON a body turns into is what encoding/json makes of the Go struct upstream decodes it into, which is what
kubectl <= 1.31 sent for the same command, except that a zero metav1.Time is left out instead of written as null.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import struct
from collections.abc import Iterator
from typing import Any

from .protobuf_schema import KINDS, MESSAGES

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"  # apimachinery pkg/runtime/serializer/protobuf/protobuf.go: protoEncodingPrefix
REPEATED, POINTER, OMITEMPTY, INLINE = 1, 2, 4, 8
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_OMIT = object()  # what a zero metav1.Time or an empty RawExtension decodes to: the field is left out


class ProtobufError(ValueError):
    """The body is not a runtime.Unknown envelope around a kind this simulator knows."""


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body (magic prefix + runtime.Unknown) as the JSON object a JSON client would send."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the k8s protobuf prefix")
    envelope: dict[int, Any] = {}
    for number, _, value in _fields(memoryview(body)[len(MAGIC):]):
        envelope[number] = value
    type_meta = {n: bytes(v).decode() for n, _, v in _fields(envelope.get(1, b""))}
    api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
    if bytes(envelope.get(3, b"")):
        raise ProtobufError(f"contentEncoding {bytes(envelope[3]).decode()!r} is not supported")
    message = KINDS.get(f"{api_version} {kind}") or KINDS.get(f"* {kind}")
    if message is None:
        raise ProtobufError(f'no kind "{kind}" is registered for version "{api_version}" in the simulated cluster')
    obj: dict[str, Any] = {"kind": kind, "apiVersion": api_version}
    obj.update(_message(envelope.get(2, b""), message))
    return obj


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")


def _fields(buf: memoryview | bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value): an int for varints and fixed widths, a memoryview for length-delimited."""
    buf = memoryview(buf)
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = bytes(buf[pos:pos + 8]), pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = bytes(buf[pos:pos + 4]), pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire} for field {number}")
        if pos > len(buf):
            raise ProtobufError(f"field {number} runs past the end of its message")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(kind: str, wire: int, value: Any) -> Any:
    if kind == "string":
        return bytes(value).decode()
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode()
    if kind == "int":
        return _signed(value)
    if kind == "bool":
        return bool(value)
    if kind == "double":
        return struct.unpack("<d", value)[0]
    if kind == "float":
        return struct.unpack("<f", value)[0]
    raise ProtobufError(f"unknown scalar kind {kind}")


def _scalars(kind: str, wire: int, value: Any) -> list[Any]:
    """One occurrence of a repeated scalar: a single value, or a packed run of varints / fixed widths."""
    if wire != 2 or kind in ("string", "bytes"):
        return [_scalar(kind, wire, value)]
    buf, out, pos = memoryview(value), [], 0
    width = {"double": 8, "float": 4}.get(kind)
    while pos < len(buf):
        if width:
            out.append(_scalar(kind, 1, bytes(buf[pos:pos + width])))
            pos += width
        else:
            item, pos = _varint(buf, pos)
            out.append(_scalar(kind, 0, item))
    return out


def _zero(value: Any) -> bool:
    """What encoding/json's omitempty leaves out of a scalar: "", 0, 0.0, false."""
    return value == "" or (not isinstance(value, str) and value == 0)


def _zero_of(kind: str, ref: Any) -> Any:
    if kind == "message":
        return _message(b"", ref)
    return {"string": "", "bytes": "", "bool": False}.get(kind, 0)


def _value(kind: str, ref: Any, wire: int, value: Any) -> Any:
    if kind == "message":
        return _message(value, ref)
    if kind == "map":
        key_kind, value_kind, value_ref = ref
        entry = {n: (w, v) for n, w, v in _fields(value)}  # a map entry: key = 1, value = 2, absent = zero
        key = _scalar(key_kind, *entry[1]) if 1 in entry else _zero_of(key_kind, None)
        item = _value(value_kind, value_ref, *entry[2]) if 2 in entry else _zero_of(value_kind, value_ref)
        return key, item
    return _scalar(kind, wire, value)


def _message(buf: memoryview | bytes, name: str) -> Any:
    special = _SPECIAL.get(name)
    if special is not None:
        return special({n: (w, v) for n, w, v in _fields(buf)})
    schema = {f[0]: f for f in MESSAGES[name]}
    out: dict[str, Any] = {}
    for number, wire, value in _fields(buf):
        spec = schema.get(number)
        if spec is None:
            continue  # a field from a newer release: upstream's generated Unmarshal skips unknown fields too
        _, json_name, kind, ref, flags = spec
        if kind == "map":
            key, item = _value(kind, ref, wire, value)
            out.setdefault(json_name, {})[key] = item
        elif flags & REPEATED:
            items = _scalars(kind, wire, value) if kind != "message" else [_message(value, ref)]
            out.setdefault(json_name, []).extend(items)
        elif flags & INLINE:
            out.update(_message(value, ref))
        else:
            decoded = _value(kind, ref, wire, value)
            if decoded is _OMIT or (flags & OMITEMPTY and not flags & POINTER and kind != "message" and _zero(decoded)):
                out.pop(json_name, None)
            else:
                out[json_name] = decoded
    return out



def _time(fields: dict[int, tuple[int, Any]]) -> Any:
    """metav1.Time: whole seconds (time_proto.go drops nanos), RFC 3339 in UTC; a zero Time is left out."""
    if not fields:
        return _OMIT
    seconds = _signed(fields[1][1]) if 1 in fields else 0
    return (_EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(fields: dict[int, tuple[int, Any]]) -> Any:
    """metav1.MicroTime: RFC3339Micro ("2006-01-02T15:04:05.000000Z07:00") in UTC."""
    if not fields:
        return _OMIT
    seconds = _signed(fields[1][1]) if 1 in fields else 0
    nanos = fields[2][1] if 2 in fields else 0
    return (_EPOCH + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _duration(fields: dict[int, tuple[int, Any]]) -> str:
    """metav1.Duration: int64 nanoseconds on the wire, Go's time.Duration.String() in JSON."""
    return go_duration(_signed(fields[1][1]) if 1 in fields else 0)


def go_duration(nanos: int) -> str:
    """time.Duration.String(): 1h2m3.5s, 1.5ms, 0s."""
    if nanos == 0:
        return "0s"
    sign, nanos = ("-", -nanos) if nanos < 0 else ("", nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _fraction(nanos, size) + unit
    hours, rest = divmod(nanos, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = f"{hours}h{minutes}m" if hours else f"{minutes}m" if minutes else ""
    return sign + text + _fraction(rest, 10**9) + "s"


def _fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0") if unit > 1 else ""
    return f"{whole}.{digits}" if digits else str(whole)


def _quantity(fields: dict[int, tuple[int, Any]]) -> str:
    return bytes(fields[1][1]).decode() if 1 in fields else "0"


def _int_or_string(fields: dict[int, tuple[int, Any]]) -> int | str:
    """intstr.IntOrString: type 0 is an int (intVal), 1 a string (strVal)."""
    if 1 in fields and fields[1][1] == 1:
        return bytes(fields[3][1]).decode() if 3 in fields else ""
    return _signed(fields[2][1]) if 2 in fields else 0


def _raw_json(fields: dict[int, tuple[int, Any]]) -> Any:
    """runtime.RawExtension and metav1.FieldsV1 carry their JSON as bytes."""
    raw = bytes(fields[1][1]) if 1 in fields else b""
    if not raw:
        return _OMIT
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ProtobufError(f"embedded raw object is not JSON: {exc}") from exc


# Messages with their own JSON form upstream (MarshalJSON), by the names protobuf_schema.py gives them.
_SPECIAL = {"meta/v1.Time": _time, "meta/v1.MicroTime": _micro_time, "meta/v1.Duration": _duration,
            "resource.Quantity": _quantity, "intstr.IntOrString": _int_or_string,
            "runtime.RawExtension": _raw_json, "meta/v1.FieldsV1": _raw_json}
