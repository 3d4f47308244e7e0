"""A fault kind as the module that makes it happen declares it (a module-level `FAULTS` tuple beside the code that
reads it): its parameters, whom it hits when a scenario names no node, and what the cluster then shows.

Plain data with no import outside this folder, because the fake tools import it too: they run as `fake.*` in an
isolated interpreter (sim/tools/__init__.py `wrapper_text`). pytest_gpucluster/sim/faults.py collects every
declaration for scenario validation and `gpucluster sim --faults`."""
from __future__ import annotations

from typing import NamedTuple

# Whom a fault hits when the scenario gives no `nodes` (sim/scenario.py `fault_nodes`)
FIRST_GPU_NODE = "first GPU node"
EVERY_NODE = "every node"
CLUSTER = "cluster"


class FaultKind(NamedTuple):
    kind: str
    params: dict[str, str]      # each parameter a scenario may give -> its default (or what it means), as users read it
    target: str                 # FIRST_GPU_NODE, EVERY_NODE or CLUSTER
    effect: str                 # what the cluster shows with it, and which component shows it
