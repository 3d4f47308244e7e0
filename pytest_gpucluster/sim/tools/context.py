"""Builds the sim context JSON a pod's fake tools read (node hardware, allocation, faults, workers)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..scenario import NodeSpec, Scenario

FILENAME = ".sim-context.json"


def node_context(scenario: Scenario, node: NodeSpec, gpus: list[int], efa: list[str]) -> dict[str, Any]:
    """The per-node part: hardware, what this pod got, the faults on that node and tool overrides."""
    faults = [{"kind": f.kind, "params": dict(f.params)} for f in scenario.faults_on_node(node.name)]
    outputs, exits = node.group.outputs_of(node.name)
    return {
        "name": node.name,
        "private_ip": node.private_ip,
        "zone": node.zone,
        "hardware": node.hardware.to_dict(),
        "allocated": {"gpus": list(gpus), "efa": list(efa)},
        "faults": faults,
        "tool_output": outputs,
        "tool_exit": exits,
    }


def build_context(scenario: Scenario, pod: dict[str, Any], node: NodeSpec, gpus: list[int], efa: list[str],
                  workers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The whole context of one pod. `workers`: per-worker `node_context` dicts (+ `host`) for MPI."""
    meta = pod.get("metadata", {})
    here = node_context(scenario, node, gpus, efa)
    return {
        "pod": {"namespace": meta.get("namespace"), "name": meta.get("name"), "uid": meta.get("uid")},
        "node": {"name": here["name"], "private_ip": here["private_ip"], "zone": here["zone"],
                 "hardware": here["hardware"]},
        "allocated": here["allocated"],
        "faults": here["faults"],
        "tool_output": here["tool_output"],
        "tool_exit": here["tool_exit"],
        "nccl": dataclasses.asdict(scenario.nccl),
        "scenario": scenario.name,
        "workers": workers or [],
    }


def write_context(scratch: Path, context: dict[str, Any]) -> Path:
    path = scratch / FILENAME
    # compact: json's C encoder only serves indent=None (an indented dump ran the pure-Python encoder, 7% of the
    # simulated cluster's CPU in a healthy run, for a file only the fake tools read)
    path.write_text(json.dumps(context, separators=(",", ":")), encoding="utf-8")
    return path
