"""The acceptance profile: load the default and a user profile, deep-merge, validate (file:line errors), query."""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, cast

import pytest

from .profile_yaml import deep_merge, read_yaml
from .tiers import Tiers, new_entries_without_reason, validate_tiers

DEFAULT_PROFILE = Path(__file__).resolve().parent / "profiles" / "default.yaml"
TOP_KEYS = {"cluster", "probes", "defaults", "families", "instances", "required", "tiers"}
# `required:` items (what a run must show to be ACCEPTED; report/coverage.py judges them, docs/report.md documents them)
REQUIRED_KEYS = {"tests", "scope", "nodes", "only", "min_nodes", "how"}
REQUIRED_SCOPES = ("node", "type", "group", "cluster")
REQUIRED_NODES = ("gpu", "efa", "cpu")
REQUIRED_ONLY = ("multi-gpu", "floor-1", "floor-multi", "nvlink")
PROBE_KEYS = {"unschedulable_grace_s", "smoke_image_cuda", "cuda_min_driver"}
DEFAULT_UNSCHEDULABLE_GRACE_S = 45.0
CLUSTER_KEYS = {"gpu_taints", "name", "flavours", "multi_tenant"}
# Cluster flavours with their own GPU-taint convention (a node's flavour: its labels, see checks/taints.flavour_of).
FLAVOURS = {"standard", "auto-mode"}
FLAVOUR_KEYS = {"gpu_taints", "gpu_taint_from_nodepool"}
TAINT_KEYS = {"key", "value", "effect"}
TAINT_EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}
NCCL_KEYS = {"all_reduce_busbw_floor_gbs", "busbw_ceiling_gbs", "multi_node_coverage", "image", "localise"}
COVERAGE = ("all", "sample")          # nccl.multi_node_coverage: every EFA node in a multi-node run, or the first pair
BUDGET_KEYS = {"launched", "registered", "initialized", "total"}
INSTANCE_KEYS = {"gpus", "gpu_product", "gpu_memory_mib", "gpu_memory_tolerance_pct", "efa", "gdrdma", "nvlink",
                 "nvlink_gbs", "nvlink_sharp", "network_gbps", "taint", "nccl", "sources", "provisioning_budget_s", "ecc_required", "health",
                 "driver_min", "efa_required"}
# Node health (suites/test_node_health.py): expectations per instance type; see profiles/default.yaml for sources.
HEALTH_KEYS = {"dcgm_level", "xid_window_h", "nvlink_links", "nvlink_link_gbs", "gpu_gpu_link", "pcie_gen", "pcie_width",
               "power_limit_w", "load", "load_start_s"}
HEALTH_LOADS = ("dcgmproftester", "pytorch")      # the CUDA loads of the node-health probe (gather/node_health.loads)
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """nccl-tests sizes: `2G` = 2 GiB (nccl-tests uses powers of 1024), `512M`, `8`, `1GiB`."""
    match = _SIZE.match(str(value).strip())
    if not match:
        raise ValueError(f"not a message size: {value!r} (examples: 8, 512M, 2G)")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


@dataclass
class InstanceProfile:
    """What one instance type must show. Absent keys are None (no expectation)."""

    instance_type: str
    gpus: int = 0
    gpu_product: str | None = None
    gpu_memory_mib: int | None = None
    gpu_memory_tolerance_pct: float = 3.0
    ecc_required: bool = False           # nvidia-smi must show ECC mode Enabled on every GPU
    efa: int = 0                         # EFA interfaces the type has (judged where they are attached)
    efa_required: bool = False           # a node of the type must have its EFA attached (training types)
    gdrdma: bool = False
    nvlink: bool = False
    nvlink_gbs: float | None = None
    nvlink_sharp: bool = False           # NVSwitch reduces in the switch (NVLS: H100 and later); see docs/nccl.md
    network_gbps: float | None = None
    taint: dict[str, str] | None = None
    nccl_floors: dict[int, dict[int, float]] = field(default_factory=dict)   # nodes -> bytes -> GB/s
    busbw_ceiling_gbs: float | None = None
    provisioning_budget_s: dict[str, float] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)    # HEALTH_KEYS: node-health expectations
    multi_node_coverage: str = "all"     # nccl.multi_node_coverage
    nccl_image: str | None = None        # nccl.image: the nccl-tests image for this type (None: --gpucluster-nccl-image)
    nccl_localise: bool = True           # nccl.localise: re-test a failed group's nodes with good partners
    driver_min: str | None = None        # lowest NVIDIA driver the GPU needs (e.g. "570.133.20" for B200)
    sources: dict[str, str] = field(default_factory=dict)   # key -> where its value comes from (profile show)

    def nccl_floor(self, nodes: int, size_bytes: int) -> float | None:
        return self.nccl_floors.get(nodes, {}).get(size_bytes)

    def gpu_memory_ok(self, observed_mib: float) -> bool:
        if self.gpu_memory_mib is None:
            return True
        return abs(observed_mib - self.gpu_memory_mib) <= self.gpu_memory_mib * self.gpu_memory_tolerance_pct / 100


class Profile:
    """The effective (merged, validated) profile."""

    def __init__(self, data: dict[str, Any], sources: list[Path], shipped_required: dict[str, Any] | None = None,
                 required_from: Sequence[str] = (), shipped_tiers: dict[str, Any] | None = None) -> None:
        self.data = data
        self.sources = sources
        # the shipped default's `required:` and `tiers:`, and the layers that changed `required:` (a report names them)
        self.shipped_required = copy.deepcopy(shipped_required if shipped_required is not None
                                              else data.get("required") or {})
        self.required_from = list(required_from)
        self.shipped_tiers = copy.deepcopy(shipped_tiers if shipped_tiers is not None else data.get("tiers") or {})
        files = [p for p in sources if p.suffix.lower() in (".yaml", ".yml")]   # overlays are labels, not files
        self.path = str(files[-1]) if files else None
        canonical = json.dumps(data, sort_keys=True, default=str).encode()
        self.sha256 = hashlib.sha256(canonical).hexdigest()

    @property
    def tiers(self) -> Tiers:
        """Each check's tier (blocking / advisory) in this cluster (tiers.py; cluster.multi_tenant picks the column)."""
        multi_tenant = bool((self.data.get("cluster") or {}).get("multi_tenant"))
        return Tiers(self.data.get("tiers"), self.shipped_tiers, multi_tenant)

    @property
    def gpu_taints(self) -> list[dict[str, str]]:
        return list(self.data.get("cluster", {}).get("gpu_taints") or [])

    @property
    def unschedulable_grace_s(self) -> float:
        """How long a pinned probe the scheduler refuses for good may wait before it fails (kube/schedulability)."""
        return float((self.data.get("probes") or {}).get("unschedulable_grace_s", DEFAULT_UNSCHEDULABLE_GRACE_S))

    def smoke_driver_minimum(self, image: str) -> tuple[str, int] | None:
        """(CUDA version, minimum driver major) the smoke image needs (probes.smoke_image_cuda x cuda_min_driver),
        None when the profile does not know the image."""
        probes = self.data.get("probes") or {}
        cuda = next((str(v) for k, v in (probes.get("smoke_image_cuda") or {}).items()
                     if fnmatch.fnmatchcase(image, str(k))), None)
        minimum = (probes.get("cuda_min_driver") or {}).get(cuda.split(".")[0]) if cuda else None
        return (cuda, int(minimum)) if cuda and minimum is not None else None

    def instance_types(self) -> list[str]:
        return sorted(self.data.get("instances", {}))

    def for_instance(self, instance_type: str) -> InstanceProfile | None:
        """Merged defaults <- family <- instance; None when the instance type is unknown to the profile."""
        instances = self.data.get("instances", {})
        if instance_type not in instances:
            return None
        merged: dict[str, Any] = copy.deepcopy(self.data.get("defaults", {}))
        merged = deep_merge(merged, self.data.get("families", {}).get(instance_type.split(".")[0], {}) or {})
        merged = deep_merge(merged, instances[instance_type] or {})
        nccl = merged.pop("nccl", {}) or {}
        floors = {int(n): {parse_size(s): float(v) for s, v in (sizes or {}).items()}
                  for n, sizes in (nccl.get("all_reduce_busbw_floor_gbs") or {}).items()}
        merged["provisioning_budget_s"] = {k: float(v) for k, v in (merged.get("provisioning_budget_s") or {}).items()}
        return InstanceProfile(instance_type=instance_type, nccl_floors=floors,
                               busbw_ceiling_gbs=nccl.get("busbw_ceiling_gbs"),
                               multi_node_coverage=str(nccl.get("multi_node_coverage") or "all"),
                               nccl_image=nccl.get("image"), nccl_localise=nccl.get("localise", True) is not False,
                               **merged)

    def flavour(self, name: str) -> dict[str, Any]:
        return dict((self.data.get("cluster", {}).get("flavours") or {}).get(name) or {})

    def expected_taints(self, instance_type: str, flavour: str = "standard") -> list[dict[str, str]]:
        """The instance's own `taint`, else the flavour's `gpu_taints`, else cluster.gpu_taints."""
        inst = self.for_instance(instance_type)
        if inst is not None and inst.taint:
            return [inst.taint]
        own = self.flavour(flavour).get("gpu_taints")
        return list(own) if own is not None else self.gpu_taints

    def gpu_taint_from_nodepool(self, flavour: str) -> bool:
        """Whether a node of this flavour may carry the taint its NodePool declares as its GPU taint."""
        return bool(self.flavour(flavour).get("gpu_taint_from_nodepool"))

    def gpu_tolerations(self) -> list[dict[str, str]]:
        """Tolerations for every GPU taint the profile expects anywhere (cluster-wide and per instance)."""
        taints = list(self.gpu_taints)
        for flavour in sorted(self.data.get("cluster", {}).get("flavours") or {}):
            taints += [t for t in self.flavour(flavour).get("gpu_taints") or [] if t not in taints]
        for itype in self.instance_types():
            taint = (self.data["instances"][itype] or {}).get("taint")
            if taint and taint not in taints:
                taints.append(taint)
        out = []
        for taint in taints:
            tol = {"key": taint["key"], "operator": "Exists"}
            if taint.get("effect"):
                tol["effect"] = taint["effect"]
            out.append(tol)
        return out

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)


def _non_negative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _non_negative_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


class _Validator:
    def __init__(self, path: Path, lines: dict[tuple[str, ...], int]) -> None:
        self.path, self.lines = path, lines

    def fail(self, where: tuple[str, ...], message: str) -> None:
        line = next((self.lines[where[:i]] for i in range(len(where), -1, -1) if where[:i] in self.lines), 1)
        dotted = ".".join(where) or "<top>"
        raise pytest.UsageError(f"{self.path}:{line}: {dotted}: {message}")

    def keys(self, obj: Any, allowed: set[str], where: tuple[str, ...]) -> dict[str, Any]:
        if obj is None:
            return {}
        if not isinstance(obj, dict):
            self.fail(where, f"expected a mapping, got {type(obj).__name__}")
        for key in obj:
            if str(key) not in allowed:
                self.fail(where + (str(key),), f"unknown key {key!r} (known: {', '.join(sorted(allowed))})")
        return cast(dict[str, Any], obj)

    def typed(self, obj: dict[str, Any], key: str, check: Callable[[Any], bool], want: str, where: tuple[str, ...]) -> None:
        if key in obj and obj[key] is not None and not check(obj[key]):
            self.fail(where + (key,), f"expected {want}, got {obj[key]!r}")

    def taint(self, obj: Any, where: tuple[str, ...]) -> None:
        taint = self.keys(obj, TAINT_KEYS, where)
        if obj is not None and "key" not in taint:
            self.fail(where, "a taint needs a `key`")
        if taint.get("effect") is not None and taint["effect"] not in TAINT_EFFECTS:
            self.fail(where + ("effect",), f"effect must be one of {sorted(TAINT_EFFECTS)}")

    def instance(self, obj: Any, where: tuple[str, ...]) -> None:
        inst = self.keys(obj, INSTANCE_KEYS, where)
        is_int, is_num = _non_negative_int, _non_negative_number
        for key in ("gpus", "efa", "gpu_memory_mib"):
            self.typed(inst, key, is_int, "a non-negative integer", where)
        for key in ("gpu_memory_tolerance_pct", "nvlink_gbs", "network_gbps"):
            self.typed(inst, key, is_num, "a non-negative number", where)
        for key in ("gdrdma", "nvlink", "nvlink_sharp", "ecc_required", "efa_required"):
            self.typed(inst, key, lambda v: isinstance(v, bool), "true or false", where)
        self.typed(inst, "gpu_product", lambda v: isinstance(v, str), "a string", where)
        self.typed(inst, "driver_min", lambda v: isinstance(v, str) and bool(re.match(r"^\d+(\.\d+)*$", v)),
                   "a quoted driver version (\"570.133.20\")", where)
        if inst.get("taint") is not None:
            self.taint(inst["taint"], where + ("taint",))
        nccl = self.keys(inst.get("nccl"), NCCL_KEYS, where + ("nccl",))
        self.typed(nccl, "busbw_ceiling_gbs", is_num, "a number (GB/s)", where + ("nccl",))
        self.typed(nccl, "multi_node_coverage", lambda v: v in COVERAGE, "all or sample", where + ("nccl",))
        self.typed(nccl, "image", lambda v: isinstance(v, str) and bool(v.strip()), "an image reference",
                   where + ("nccl",))
        self.typed(nccl, "localise", lambda v: isinstance(v, bool), "true or false", where + ("nccl",))
        self.typed(inst, "sources", lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
                   "a mapping of key -> source text", where)
        floors = self.keys(nccl.get("all_reduce_busbw_floor_gbs"), set(map(str, nccl.get("all_reduce_busbw_floor_gbs") or {})),
                           where + ("nccl", "all_reduce_busbw_floor_gbs"))
        for nodes, sizes in floors.items():
            fwhere = where + ("nccl", "all_reduce_busbw_floor_gbs", str(nodes))
            if not is_int(nodes) or int(nodes) < 1:
                self.fail(fwhere, "node count keys must be positive integers")
            for size, value in (sizes or {}).items():
                try:
                    parse_size(size)
                except ValueError as exc:
                    self.fail(fwhere + (str(size),), str(exc))
                if not is_num(value):
                    self.fail(fwhere + (str(size),), f"expected a bus bandwidth in GB/s, got {value!r}")
        budget = self.keys(inst.get("provisioning_budget_s"), BUDGET_KEYS, where + ("provisioning_budget_s",))
        for key in budget:
            self.typed(budget, key, is_num, "seconds", where + ("provisioning_budget_s",))
        health = self.keys(inst.get("health"), HEALTH_KEYS, where + ("health",))
        for key in ("nvlink_links", "pcie_gen", "pcie_width", "load_start_s"):
            self.typed(health, key, is_int, "a non-negative integer", where + ("health",))
        self.typed(health, "load", lambda v: v in HEALTH_LOADS, " or ".join(HEALTH_LOADS), where + ("health",))
        for key in ("nvlink_link_gbs", "power_limit_w"):
            self.typed(health, key, is_num, "a non-negative number", where + ("health",))
        self.typed(health, "dcgm_level", lambda v: v in (1, 2, 3, 4), "1, 2, 3 or 4 (dcgmi diag -r)", where + ("health",))
        self.typed(health, "xid_window_h", lambda v: v is None or is_num(v), "hours (null: since boot)",
                   where + ("health",))
        self.typed(health, "gpu_gpu_link", lambda v: isinstance(v, str) and bool(re.match(r"^(NV\d+|PIX|PXB|PHB|NODE|SYS)$", v)),
                   "a topo -m code (NV18, NV12, PIX, PXB, PHB, NODE, SYS)", where + ("health",))

    def required(self, obj: Any) -> None:
        """`required: {name: {tests, scope, nodes, only, min_nodes, how} | null}` (null: not required)."""
        for name, item in self.keys(obj, set(map(str, obj or {})), ("required",)).items():
            where = ("required", str(name))
            if item is None:
                continue
            item = self.keys(item, REQUIRED_KEYS, where)
            tests = item.get("tests")
            if "tests" in item and (not isinstance(tests, list) or not tests
                                    or not all(isinstance(t, str) and ".py" in t for t in tests)):
                self.fail(where + ("tests",), "expected a list of `test_module.py::test_function` (function may be "
                                              "a glob)")
            self.typed(item, "scope", lambda v: v in REQUIRED_SCOPES, " | ".join(REQUIRED_SCOPES), where)
            self.typed(item, "nodes", lambda v: v in REQUIRED_NODES, " | ".join(REQUIRED_NODES), where)
            self.typed(item, "only", lambda v: isinstance(v, list) and all(c in REQUIRED_ONLY for c in v),
                       f"a list of {', '.join(REQUIRED_ONLY)}", where)
            self.typed(item, "min_nodes", lambda v: _non_negative_int(v) and v >= 1, "a positive integer", where)
            self.typed(item, "how", lambda v: isinstance(v, str), "a string", where)

    def document(self, data: dict[str, Any]) -> None:
        self.keys(data, TOP_KEYS, ())
        cluster = self.keys(data.get("cluster"), CLUSTER_KEYS, ("cluster",))
        validate_tiers(self, data.get("tiers"), cluster.get("multi_tenant"))
        taints = cluster.get("gpu_taints")
        if taints is not None and not isinstance(taints, list):
            self.fail(("cluster", "gpu_taints"), "expected a list of taints")
        for i, taint in enumerate(taints or []):
            self.taint(taint, ("cluster", "gpu_taints", str(i)))
        for name, flavour in self.keys(cluster.get("flavours"), FLAVOURS, ("cluster", "flavours")).items():
            where = ("cluster", "flavours", str(name))
            flavour = self.keys(flavour, FLAVOUR_KEYS, where)
            self.typed(flavour, "gpu_taint_from_nodepool", lambda v: isinstance(v, bool), "true or false", where)
            if flavour.get("gpu_taints") is not None and not isinstance(flavour["gpu_taints"], list):
                self.fail(where + ("gpu_taints",), "expected a list of taints")
            for i, taint in enumerate(flavour.get("gpu_taints") or []):
                self.taint(taint, where + ("gpu_taints", str(i)))
        probes = self.keys(data.get("probes"), PROBE_KEYS, ("probes",))
        for key in ("smoke_image_cuda", "cuda_min_driver"):
            self.typed(probes, key, lambda v: isinstance(v, dict), "a mapping", ("probes",))
        self.typed(probes, "unschedulable_grace_s",
                   lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0, "seconds (>= 0)",
                   ("probes",))
        self.instance(data.get("defaults"), ("defaults",))
        self.required(data.get("required"))
        for name, fam in self.keys(data.get("families"), set(map(str, data.get("families") or {})), ("families",)).items():
            self.instance(fam, ("families", str(name)))
        for name, inst in self.keys(data.get("instances"), set(map(str, data.get("instances") or {})), ("instances",)).items():
            self.instance(inst, ("instances", str(name)))


def load_profile(user_path: str | Path | None = None, *, default_path: Path = DEFAULT_PROFILE,
                 overlays: Sequence[tuple[str, dict[str, Any]]] = ()) -> Profile:
    """Default profile <- overlays (e.g. a simulated scenario's `profile:` section, labelled) <- the user's
    profile, each deep-merged over the last. UsageError names file, line and key."""
    data, lines = read_yaml(default_path)
    _Validator(default_path, lines).document(data)
    sources = [default_path]
    shipped_required, required_from = copy.deepcopy(data.get("required") or {}), []
    shipped_tiers = copy.deepcopy(data.get("tiers") or {})
    for label, overlay in overlays:
        _Validator(Path(label), {}).document(overlay)
        data = deep_merge(data, overlay)
        sources.append(Path(label))
        if "required" in overlay:
            required_from.append(label)
    if user_path:
        path = Path(user_path).expanduser()
        if path.is_dir() or path.suffix.lower() not in (".yaml", ".yml"):
            raise pytest.UsageError(f"--gpucluster-profile must be a YAML file (.yaml/.yml), given: {user_path}")
        user, user_lines = read_yaml(path)
        _Validator(path, user_lines).document(user)
        data = deep_merge(data, user)
        sources.append(path)
        if "required" in user:
            required_from.append(str(path))
    for name, item in (data.get("required") or {}).items():   # a user's partial override needs a default to merge on
        if item is not None and "tests" not in item:
            raise pytest.UsageError(f"{sources[-1]}: required.{name}: a new required item needs `tests` "
                                    "(`test_module.py::test_function`, ...)")
    if unexplained := new_entries_without_reason(data.get("tiers"), shipped_tiers):
        raise pytest.UsageError(f"{sources[-1]}: tiers: a new entry needs `tier` and `reason`: {', '.join(unexplained)}")
    return Profile(data, sources, shipped_required, required_from, shipped_tiers)
