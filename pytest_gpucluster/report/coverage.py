"""Required evidence: which items the profile requires (`required:`), and whether this run showed each one.

Pure functions of plain data (the profile's `required:` mapping, the cluster's nodes, the checks' outcomes); the
verdict (report/summary.py `verdict`) reads the result. Format and defaults: docs/report.md "Required evidence".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Iterable, Mapping, Sequence

from pytest_gpucluster.report.areas import split_nodeid

SHOWN, FAILED, MISSING, NOT_APPLICABLE = "shown", "failed", "missing", "not applicable"
SCOPES = ("node", "type", "group", "cluster")   # every node / every instance type / multi-node runs per type / once
POPULATIONS = ("gpu", "efa")                    # which nodes a node/type/group scope ranges over
CONDITIONS = ("multi-gpu", "floor-1", "floor-multi")   # conditions on the instance type (`only:`)
ITEM_KEYS = {"tests", "scope", "nodes", "only", "min_nodes", "how"}
_BAD = {"failed", "error", "xpassed"}
_GOOD = {"passed", "xfailed"}
NARROWED_HOW = "run the whole suite (no -m/-k), or pass --gpucluster-partial if the narrowing is intended"
UNSELECTED_HOW = "run without --gpucluster-sample/--gpucluster-nodes, or pass --gpucluster-partial if intended"


@dataclass(frozen=True)
class Requirement:
    """One `required:` item: these tests must pass on every subject of the scope."""

    name: str
    tests: tuple[str, ...]            # `module.py::function` (function may be a glob)
    scope: str = "node"
    nodes: str = "gpu"
    only: tuple[str, ...] = ()
    min_nodes: int = 1                # group scope: instance types with fewer nodes than this are not required
    how: str = ""

    @classmethod
    def from_profile(cls, name: str, item: Mapping[str, Any]) -> "Requirement":
        return cls(name=name, tests=tuple(str(t) for t in item.get("tests") or ()),
                   scope=str(item.get("scope") or "node"), nodes=str(item.get("nodes") or "gpu"),
                   only=tuple(str(c) for c in item.get("only") or ()), min_nodes=int(item.get("min_nodes") or 1),
                   how=str(item.get("how") or ""))


@dataclass(frozen=True)
class NodeFacts:
    """What the coverage needs to know about one node of the cluster (selected: in this run's node set)."""

    name: str
    instance_type: str
    gpu: bool = True
    efa: bool = False
    gpus: int = 0
    floors: tuple[int, ...] = ()      # node counts the profile has an NCCL floor for on this type
    selected: bool = True

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NodeFacts":
        return cls(name=str(d["name"]), instance_type=str(d.get("instance_type") or "unknown"),
                   gpu=bool(d.get("gpu", True)), efa=bool(d.get("efa", False)), gpus=int(d.get("gpus") or 0),
                   floors=tuple(int(n) for n in d.get("floors") or ()), selected=bool(d.get("selected", True)))


@dataclass(frozen=True)
class Outcome:
    """One check as the coverage sees it (CheckResult or a summary.json check)."""

    module: str
    function: str
    outcome: str
    instance_type: str | None = None
    nodes: tuple[str, ...] = ()
    reason: str | None = None

    @classmethod
    def of(cls, nodeid: str, outcome: str, instance_type: str | None, node: str | None,
           nodes: Sequence[str] = (), reason: str | None = None) -> "Outcome":
        module, function = split_nodeid(nodeid)
        names = tuple(nodes) or (tuple(node.split("+")) if node else ())
        return cls(module, function, outcome, instance_type, names, reason)


@dataclass
class Item:
    """The coverage of one requirement."""

    req: Requirement
    status: str = SHOWN
    subjects: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)   # {subject, test, reason, how}
    nodes: set[str] = field(default_factory=set)                 # nodes the passing checks covered
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.req.name, "scope": self.req.scope, "tests": list(self.req.tests), "status": self.status,
                "subjects": self.subjects, "failed": self.failed, "missing": self.missing,
                "nodes": sorted(self.nodes), **({"note": self.note} if self.note else {})}


def requirements(required: Mapping[str, Any] | None) -> list[Requirement]:
    """The profile's `required:` mapping as Requirements; an item set to null is not required."""
    return [Requirement.from_profile(str(name), item) for name, item in (required or {}).items() if item]


def _matches(pattern: str, o: Outcome) -> bool:
    module, _, function = pattern.partition("::")
    return o.module == module and fnmatchcase(o.function, function or "*")


def _conditions_hold(req: Requirement, node: NodeFacts) -> bool:
    for cond in req.only:
        if cond == "multi-gpu" and node.gpus < 2:
            return False
        if cond == "floor-1" and 1 not in node.floors:
            return False
        if cond == "floor-multi" and not any(n >= 2 for n in node.floors):
            return False
    return True


def _population(req: Requirement, nodes: Iterable[NodeFacts]) -> list[NodeFacts]:
    return [n for n in nodes if (n.efa if req.nodes == "efa" else n.gpu) and _conditions_hold(req, n)]


def _judge(outcomes: list[Outcome]) -> tuple[str, str | None]:
    """(status, why missing) of one test on one subject from the checks that speak about it."""
    if any(o.outcome in _BAD for o in outcomes):
        return FAILED, None
    skipped = [o for o in outcomes if o.outcome == "skipped"]
    if skipped:
        return MISSING, skipped[0].reason or "skipped"
    if any(o.outcome in _GOOD for o in outcomes):
        return SHOWN, None
    return MISSING, None


def judge_item(req: Requirement, nodes: Sequence[NodeFacts], outcomes: Sequence[Outcome],
               deselected: frozenset[tuple[str, str]] = frozenset()) -> Item:
    """Whether the run showed `req`: every test on every subject of its scope passed (failed: one failed;
    missing: one was skipped or did not run, with the skip reason or why it did not run)."""
    item = Item(req)
    population = _population(req, nodes)
    by_type: dict[str, list[NodeFacts]] = {}
    for n in population:
        by_type.setdefault(n.instance_type, []).append(n)
    subjects: list[tuple[str, list[NodeFacts]]]
    if req.scope == "cluster":
        subjects = [("cluster", list(nodes))]
    elif req.scope == "node":
        subjects = [(n.name, [n]) for n in population]
    else:
        subjects = [(t, ns) for t, ns in sorted(by_type.items()) if req.scope != "group" or len(ns) >= req.min_nodes]
    if not subjects:
        item.status = NOT_APPLICABLE
        item.note = f"no {req.nodes.upper()} node{' type' if req.scope != 'node' else ''} in the cluster matches"
        return item
    for subject, members in subjects:
        item.subjects.append(subject)
        names = {n.name for n in members}
        for test in req.tests:
            mine = [o for o in outcomes if _matches(test, o)]
            if req.scope == "node":
                about = [o for o in mine if subject in o.nodes]
            elif req.scope in ("type", "group"):
                about = [o for o in mine if o.instance_type == subject]
            else:
                about = mine
            status, why = _judge(about)
            if status == SHOWN:
                item.nodes.update(x for o in about if o.outcome in _GOOD for x in o.nodes if x in names)
                continue
            if status == FAILED:
                if subject not in item.failed:
                    item.failed.append(subject)
                continue
            how = req.how
            if why is None:
                why, how = _why_not_run(test, subject, req, members, mine, deselected)
            item.missing.append({"subject": subject, "test": test, "reason": why, "how": how})
    item.status = FAILED if item.failed else MISSING if item.missing else SHOWN
    return item


def _why_not_run(test: str, subject: str, req: Requirement, members: list[NodeFacts], mine: list[Outcome],
                 deselected: frozenset[tuple[str, str]]) -> tuple[str, str]:
    """Why a test has no outcome on a subject, and how to get it."""
    module, _, function = test.partition("::")
    if req.scope == "group" and len(members) < 2:
        return (f"only {len(members)} {subject} node: a multi-node run needs at least 2 EFA nodes of one type "
                "(in one zone)", f"add a {subject} node, or relax `required: {req.name}` in your profile "
                "(`min_nodes: 2`, or null)")
    unselected = [n.name for n in members if not n.selected]
    if unselected and len(unselected) == len(members):
        return "not among this run's nodes (--gpucluster-sample / --gpucluster-nodes)", UNSELECTED_HOW
    if any(m == module and fnmatchcase(f, function or "*") for m, f in deselected):
        return "deselected (-m/-k)", NARROWED_HOW
    unjudged = [o for o in mine if not o.nodes and not o.instance_type and o.outcome == "skipped"]
    if unjudged:     # a test parametrized with a single skipped case (e.g. no EFA node group)
        return unjudged[0].reason or "skipped", req.how
    if mine:
        return f"the test did not run on {subject}", req.how or NARROWED_HOW
    return f"not run ({module} was not part of the run, or the test was deselected)", NARROWED_HOW


def judge_coverage(required: Mapping[str, Any] | None, nodes: Sequence[Mapping[str, Any]],
                   outcomes: Sequence[Outcome], deselected: Iterable[tuple[str, str]] = ()) -> list[dict[str, Any]]:
    """summary.json's `coverage`: one entry per required item (see docs/report.md)."""
    facts = [NodeFacts.from_dict(n) for n in nodes]
    gone = frozenset(deselected)
    return [judge_item(req, facts, outcomes, gone).to_dict() for req in requirements(required)]


def missing_lines(coverage: Sequence[Mapping[str, Any]], limit: int = 4, how: bool = True) -> list[str]:
    """One line per missing item and reason: `nccl-multi-node not shown on p5.48xlarge: <why>; <how>`."""
    lines = []
    for item in coverage:
        if item.get("status") != MISSING:
            continue
        by_reason: dict[tuple[str, str], list[str]] = {}
        for m in item.get("missing") or ():
            subjects = by_reason.setdefault((m.get("reason") or "", m.get("how") or ""), [])
            if m["subject"] not in subjects:
                subjects.append(m["subject"])
        for (why, fix), subjects in by_reason.items():
            more = f" and {len(subjects) - limit} more" if len(subjects) > limit else ""
            where = ", ".join(subjects[:limit]) + more
            lines.append(f"{item['name']} not shown on {where}: {why}" + (f"; {fix}" if fix and how else ""))
    return lines


def nodes_missing(coverage: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """Nodes with a required per-node item missing (the grid marks them incomplete)."""
    return frozenset(m["subject"] for item in coverage if item.get("scope") == "node" and item.get("status") == MISSING
                     for m in item.get("missing") or ())
