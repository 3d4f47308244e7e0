"""The report's read-only view of the per-run state (`session.Session` in config.stash), tolerant of a missing Session."""
from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_gpucluster.options import run_options
from pytest_gpucluster.tiers import Tiers


@dataclass
class RunInfo:
    """What the report needs to know about the run, whoever provides it."""

    run_id: str
    simulated: bool = False
    scenario: str | None = None
    namespace: str | None = None
    server_version: str | None = None
    inventory: dict[str, int] = field(default_factory=dict)       # instance type -> node count
    profile_path: str | None = None
    profile_sha256: str | None = None
    profile_values: dict[str, Any] = field(default_factory=dict)  # instance type -> criteria
    interrupted: bool = False
    extra: dict[str, str] = field(default_factory=dict)           # e.g. AMI, region, cluster name
    nodes: list[dict[str, Any]] = field(default_factory=list)     # every node: coverage.NodeFacts as plain data
    required: dict[str, Any] = field(default_factory=dict)        # the profile's `required:` section
    partial: bool = False                                         # --gpucluster-partial: a narrowed run is intended
    required_shipped: dict[str, Any] | None = None                # the shipped default's `required:` (None: unknown)
    required_from: list[str] = field(default_factory=list)        # profile layers that changed `required:`
    leftovers: list[str] = field(default_factory=list)            # objects the teardown could not delete
    tiers: Tiers | None = None                                    # each check's tier (None: every check blocks)
    in_transition: dict[str, str] = field(default_factory=dict)   # node -> why, at discovery or since (not shown)


def new_run_id(now: dt.datetime | None = None) -> str:
    """Same shape as session.Session's ids: YYYYmmdd-HHMMSS-<4 hex>."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def get_run(config: pytest.Config) -> Any | None:
    """The gpucluster plugin's Session, or None when its plugin is not active (e.g. plain pytester runs)."""
    try:
        from pytest_gpucluster.session import SESSION_KEY
    except ImportError:
        return None
    return config.stash.get(SESSION_KEY, None)


def run_info(config: pytest.Config, fallback_id: str) -> RunInfo:
    """Read the Session (if any) into a RunInfo; every field degrades to 'unknown' rather than failing."""
    run = get_run(config)
    if run is None:
        sim_opt = run_options(config).sim
        return RunInfo(run_id=fallback_id, simulated=bool(sim_opt),
                       scenario=sim_opt if isinstance(sim_opt, str) else None, partial=run_options(config).partial)
    info = RunInfo(run_id=str(getattr(run, "run_id", None) or fallback_id))
    scenario = getattr(run, "sim_scenario", None) or getattr(getattr(run, "sim", None), "scenario_name", None)
    if scenario is None and isinstance(getattr(run, "sim", None), str):
        scenario = run.sim
    info.scenario = scenario
    info.simulated = scenario is not None or bool(run_options(config).sim)
    info.namespace = getattr(run, "namespace", None)
    info.server_version = _str_or_none(_maybe_call(getattr(run, "server_version", None)))
    inventory = _maybe_call(getattr(run, "inventory", None))
    info.inventory = inventory_counts(inventory)
    profile = getattr(run, "profile", None)
    info.nodes = node_facts(inventory, profile)
    moving = getattr(inventory, "transition", None)      # TransitionWatch keeps it current during the run
    info.in_transition = {str(k): str(v) for k, v in moving.items()} if isinstance(moving, dict) else {}
    data = getattr(profile, "data", None)
    info.required = dict((data.get("required") if isinstance(data, dict) else None) or {})
    info.partial = run_options(config).partial
    shipped = getattr(profile, "shipped_required", None)
    info.required_shipped = dict(shipped) if isinstance(shipped, dict) else None
    info.required_from = [str(x) for x in getattr(profile, "required_from", None) or []]
    tiers = getattr(profile, "tiers", None)
    info.tiers = tiers if isinstance(tiers, Tiers) else None
    teardown = getattr(run, "teardown_report", None)
    info.leftovers = [str(x) for x in getattr(teardown, "leftovers", None) or []]
    info.profile_path = _str_or_none(getattr(run, "profile_path", None) or getattr(profile, "path", None))
    info.profile_sha256 = _str_or_none(getattr(run, "profile_sha256", None) or getattr(profile, "sha256", None))
    info.profile_values = profile_values(profile, info.inventory)
    info.interrupted = bool(getattr(run, "interrupted", False))
    return info


def inventory_counts(inventory: Any) -> dict[str, int]:
    """Nodes per instance type from an Inventory (`.by_name` of NodeInfo) or a ready-made mapping."""
    if inventory is None:
        return {}
    if isinstance(inventory, dict) and all(isinstance(v, int) for v in inventory.values()):
        return dict(sorted(inventory.items()))
    nodes = getattr(inventory, "by_name", None)
    if isinstance(nodes, dict):
        return dict(sorted(Counter(str(getattr(n, "instance_type", None) or "unknown")
                                   for n in nodes.values()).items()))
    return {}


def node_facts(inventory: Any, profile: Any) -> list[dict[str, Any]]:
    """Every node of the cluster as the coverage sees it (report/coverage.NodeFacts): GPU/EFA, GPUs, the node counts
    the profile has an NCCL floor for on its type, and whether this run's node selection/sample kept it."""
    everything = list(getattr(inventory, "all_nodes", None) or [])
    selected = {n.name for kind in ("gpu_nodes", "efa_nodes", "cpu_nodes")
                for n in getattr(inventory, kind, None) or []}
    out = []
    for n in everything:
        inst = profile.for_instance(n.instance_type) if callable(getattr(profile, "for_instance", None)) else None
        gpus = int(getattr(inst, "gpus", 0) or 0) or int(getattr(n, "gpus_allocatable", 0) or 0)
        floors = sorted(k for k, v in (getattr(inst, "nccl_floors", None) or {}).items() if v)
        out.append({"name": n.name, "instance_type": n.instance_type, "gpu": bool(getattr(n, "is_gpu", False)),
                    "efa": bool(getattr(n, "is_efa", False)), "gpus": gpus, "floors": floors,
                    "selected": n.name in selected, "nvlink": bool(getattr(inst, "nvlink", False))})
    return out


def profile_values(profile: Any, inventory: dict[str, int]) -> dict[str, Any]:
    """The criteria the profile applies to each instance type present in the cluster."""
    if profile is None:
        return {}
    for_instance = getattr(profile, "for_instance", None)
    values: dict[str, Any] = {}
    if callable(for_instance):
        for itype in inventory:
            ip = for_instance(itype)
            if ip is not None:
                values[itype] = _plain(ip)
    return values


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(obj).items()}
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return _plain(to_dict())
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def _maybe_call(value: Any) -> Any:
    return value() if callable(value) else value


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
