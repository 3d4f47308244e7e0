"""Every fault kind a scenario may name, collected from the modules that make them happen: each declares its kinds in
a module-level `FAULTS` tuple of `FaultKind` (sim/tools/fake/fault.py) beside the code that reads them, so a new
fault kind is written in one module. Read by scenario validation (sim/scenario_schema.py), the default target of a
fault (sim/scenario.py) and `gpucluster sim --faults`. Kinds starting with `aws-` belong to sim/aws.py (moto), which
reads them with any parameter."""
from __future__ import annotations

import functools
import importlib

from .tools.fake.fault import FIRST_GPU_NODE, FaultKind

AWS_PREFIX = "aws-"
# The modules that declare fault kinds (imported on first use: several of them import the scenario model, which
# validates faults against this list). tests/sim/test_faults.py fails when a module declares FAULTS and is not here.
DECLARED_IN = (
    "pytest_gpucluster.sim.tools.fake.ctx",
    "pytest_gpucluster.sim.tools.fake.nvidia_smi",
    "pytest_gpucluster.sim.tools.fake.health",
    "pytest_gpucluster.sim.tools.fake.nccl",
    "pytest_gpucluster.sim.controllers.deviceplugins",
    "pytest_gpucluster.sim.controllers.karpenter_lifecycle",
    "pytest_gpucluster.sim.controllers.karpenter_disruption",
    "pytest_gpucluster.sim.kubelet",
    "pytest_gpucluster.sim.seed",
)


@functools.cache
def fault_kinds() -> dict[str, FaultKind]:
    """kind -> its declaration, in the order of DECLARED_IN. A kind declared twice is a programming error."""
    kinds: dict[str, FaultKind] = {}
    for name in DECLARED_IN:
        for fault in importlib.import_module(name).FAULTS:
            if fault.kind in kinds:
                raise RuntimeError(f"fault kind {fault.kind!r} is declared twice (again in {name})")
            kinds[fault.kind] = fault
    return kinds


def first_gpu_node_kinds() -> frozenset[str]:
    """The kinds that hit the first GPU node when a scenario names no node (the others: every node, or the cluster)."""
    return frozenset(k for k, fault in fault_kinds().items() if fault.target == FIRST_GPU_NODE)


def problems(kind: str, params: set[str]) -> list[tuple[str, str]]:
    """What is wrong with a fault of `kind` given these parameters: (key, message) pairs, [] when nothing is."""
    if kind.startswith(AWS_PREFIX):
        return []
    known = fault_kinds()
    if kind not in known:
        return [("kind", f"unknown fault kind {kind!r}; known: {', '.join(sorted(known))}, {AWS_PREFIX}* "
                         "(`gpucluster sim --faults` lists them)")]
    unknown = sorted(params - set(known[kind].params))
    if unknown:
        allowed = ", ".join(sorted(known[kind].params)) or "none"
        return [(unknown[0], f"fault {kind!r} has no parameter {unknown[0]!r} (allowed: {allowed})")]
    return []


def table() -> str:
    """The fault kinds as a Markdown table (`gpucluster sim --faults`)."""
    lines = ["| kind | parameters (default) | without `nodes` | what the cluster shows |", "| --- | --- | --- | --- |"]
    for fault in fault_kinds().values():
        params = ", ".join(f"`{p}` ({d})" if d else f"`{p}`" for p, d in fault.params.items()) or "-"
        lines.append(f"| `{fault.kind}` | {params} | {fault.target} | {fault.effect.replace('|', '/')} |")
    lines.append(f"| `{AWS_PREFIX}*` | any | cluster | the AWS side (sim/aws.py, docs/aws.md) |")
    return "\n".join(lines) + "\n"
