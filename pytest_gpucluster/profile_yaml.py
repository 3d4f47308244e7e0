"""Reading an acceptance profile file: its YAML mapping with the line of every key (usage errors say file:line), and
the deep merge that layers profiles over the shipped default."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Override wins per key; mappings merge recursively; lists and scalars replace."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _line_map(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (str(key_node.value),)
            out[path + key] = key_node.start_mark.line + 1
            _line_map(value_node, path + key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, path + (str(i),), out)


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """The profile file's mapping, and the line of every key path in it (for file:line usage errors)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise pytest.UsageError(f"--gpucluster-profile must be a readable YAML file, given: {path} ({exc})") from exc
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        column = f", column {mark.column + 1}" if mark else ""
        raise pytest.UsageError(f"{where}: invalid YAML in acceptance profile: {problem}{column}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise pytest.UsageError(f"{path}:1: an acceptance profile is a YAML mapping (cluster/defaults/families/instances)")
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _line_map(node, (), lines)
    return data, lines
