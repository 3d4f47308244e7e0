"""YAML reading with line marks and the strict dataclass builder behind scenario validation."""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class ScenarioError(ValueError):
    """An invalid scenario: names the file, the line (when known) and the key."""

    def __init__(self, source: str, line: int | None, key: str, message: str) -> None:
        self.source, self.line, self.key, self.message = source, line, key, message
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {key + ': ' if key else ''}{message}")


class MarkedDict(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers its file and the line of each key."""

    source: str = ""
    line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marks: dict[Any, tuple[str, int]] = {}

    def line_of(self, key: Any) -> int | None:
        mark = self.marks.get(key)
        return mark[1] if mark else self.line

    def source_of(self, key: Any) -> str:
        mark = self.marks.get(key)
        return mark[0] if mark else self.source


class MarkedList(list):  # type: ignore[type-arg]
    """A YAML sequence that remembers the line of each item."""

    source: str = ""
    line: int | None = None
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    source = ""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> MarkedDict:
    loader.flatten_mapping(node)
    out = MarkedDict()
    out.source, out.line = loader.source, node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ScenarioError(loader.source, key_node.start_mark.line + 1, str(key), "duplicate key")
        out[key] = loader.construct_object(value_node, deep=True)
        out.marks[key] = (loader.source, key_node.start_mark.line + 1)
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> MarkedList:
    out = MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    out.source, out.line = loader.source, node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def read_yaml(path: Path) -> MarkedDict:
    """One YAML mapping document with line marks; ScenarioError for syntax errors or a non-mapping."""
    text = path.read_text(encoding="utf-8")
    loader = _Loader(text)
    loader.source = str(path)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ScenarioError(str(path), line, "", f"YAML syntax error: {exc.problem}") from exc
    finally:
        loader.dispose()
    if not isinstance(data, MarkedDict):
        raise ScenarioError(str(path), 1, "", "a scenario file must be a YAML mapping")
    return data


class _Ctx:
    """Where a dataclass is being built from: lets `_check` hooks report errors at a key's line."""

    def __init__(self, data: MarkedDict | dict[str, Any], source: str, path: str, base_dir: Path) -> None:
        self.data, self.source, self.path, self.base_dir = data, source, path, base_dir

    def where(self, key: Any) -> tuple[str, int | None]:
        if isinstance(self.data, MarkedDict):
            return self.data.source_of(key), self.data.line_of(key)
        return self.source, None

    def error(self, key: str, message: str) -> typing.NoReturn:
        source, line = self.where(key)
        raise ScenarioError(source, line, f"{self.path}.{key}" if self.path else key, message)


def build(cls: type, data: Any, source: str, base_dir: Path, *, path: str = "",
          preset: dict[str, Any] | None = None) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types with file:line."""
    if not isinstance(data, dict):
        raise ScenarioError(source, getattr(data, "line", None), path or cls.__name__,
                            f"expected a mapping for {cls.__name__}, got {type(data).__name__}")
    ctx = _Ctx(data, getattr(data, "source", source) or source, path, base_dir)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    extra_into = getattr(cls, "_extra_into", None)
    kwargs: dict[str, Any] = dict(preset or {})
    extras: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields or key in (preset or {}):
            if extra_into and isinstance(key, str):
                extras[key] = value
                continue
            allowed = ", ".join(k for k in fields if k not in (preset or {}) and k != extra_into)
            ctx.error(str(key), f"unknown key {key!r} (allowed: {allowed})")
        kwargs[key] = _convert(hints[key], value, ctx, key, base_dir)
    if extra_into:
        kwargs[extra_into] = {**kwargs.get(extra_into, {}), **extras}
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        source_, line = ctx.source, getattr(data, "line", None)
        raise ScenarioError(source_, line, path or cls.__name__, f"missing required key {missing[0]!r}")
    obj = cls(**kwargs)
    check = getattr(obj, "_check", None)
    if check is not None:
        check(ctx)
    return obj


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, ctx: _Ctx, key: Any, base_dir: Path) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    sub = f"{ctx.path}.{key}" if ctx.path else str(key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, ctx, key, base_dir)
            except ScenarioError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        ctx.error(str(key), f"expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            ctx.error(str(key), f"expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            ctx.error(str(key), f"expected a list, got {type(value).__name__}")
        lines = getattr(value, "item_lines", [])
        out = []
        for i, item in enumerate(value):
            item_ctx = _Ctx({str(i): item}, ctx.source, sub, base_dir)
            if isinstance(value, MarkedList):
                md = MarkedDict({i: item})
                md.source, md.line = value.source, lines[i] if i < len(lines) else value.line
                item_ctx = _Ctx(md, value.source, sub, base_dir)
            out.append(_convert(args[0], item, item_ctx, i, base_dir))
        return out
    if origin is dict:
        if not isinstance(value, dict):
            ctx.error(str(key), f"expected a mapping, got {type(value).__name__}")
        inner = _Ctx(value, getattr(value, "source", ctx.source), sub, base_dir)
        return {str(k): _convert(args[1], v, inner, k, base_dir) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        source = getattr(value, "source", ctx.source) or ctx.source
        return build(tp, value, source, base_dir, path=sub)  # type: ignore[arg-type]
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            ctx.error(str(key), f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            ctx.error(str(key), f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            ctx.error(str(key), f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            ctx.error(str(key), f"expected a string, got {value!r} (quote it)")
        return str(value)
    raise TypeError(f"scenario schema uses an unsupported type {tp!r}")
