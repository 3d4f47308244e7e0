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
POPULATIONS = ("gpu", "efa", "cpu")             # which nodes a node/type/group scope ranges over
CONDITIONS = ("multi-gpu", "floor-1", "floor-multi", "nvlink")   # conditions on the instance type (`only:`)
ITEM_KEYS = {"tests", "scope", "nodes", "only", "min_nodes", "how"}
_BAD = {"failed", "error", "xpassed"}
# a known failure (xfailed) shows nothing: it is missing, never a pass; an advisory check that failed (warned) showed
# its evidence (a WARN, the profile's tiers:), so it counts as shown
_GOOD = {"passed", "warned"}
XFAILED_REASON = "marked as a known failure (xfail): a known failure is not evidence that the check passes"
NARROWED_HOW = "run the whole suite (no -m/-k), or pass --gpucluster-partial if the narrowing is intended"
UNSELECTED_HOW = "run without --gpucluster-sample/--gpucluster-nodes, or pass --gpucluster-partial if intended"
DESELECTED = "deselected (-m/-k)"
NO_GPU_NODE = "no GPU node found in the cluster"
NO_GPU_HOW = ("check that the GPU nodes joined and are Ready (kubectl get nodes -L node.kubernetes.io/instance-type) "
              "and that the profile knows their instance type")


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
    nvlink: bool = False              # the profile expects NVLink on this type

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NodeFacts":
        return cls(name=str(d["name"]), instance_type=str(d.get("instance_type") or "unknown"),
                   gpu=bool(d.get("gpu", True)), efa=bool(d.get("efa", False)), gpus=int(d.get("gpus") or 0),
                   floors=tuple(int(n) for n in d.get("floors") or ()), selected=bool(d.get("selected", True)),
                   nvlink=bool(d.get("nvlink", False)))


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
    # {subject, test, reason, how, narrowed}: narrowed = left out on purpose (-m/-k, node selection, modules not
    # selected), which --gpucluster-partial forgives; anything the cluster caused (a skip) is not narrowed
    missing: list[dict[str, Any]] = field(default_factory=list)
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
        if cond == "nvlink" and not node.nvlink:
            return False
    return True


def _in_population(req: Requirement, node: NodeFacts) -> bool:
    return node.efa if req.nodes == "efa" else (not node.gpu) if req.nodes == "cpu" else node.gpu


def _population(req: Requirement, nodes: Iterable[NodeFacts]) -> list[NodeFacts]:
    return [n for n in nodes if _in_population(req, n) and _conditions_hold(req, n)]


def _judge(outcomes: list[Outcome]) -> tuple[str, str | None]:
    """(status, why missing) of one test on one subject from the checks that speak about it."""
    if any(o.outcome in _BAD for o in outcomes):
        return FAILED, None
    skipped = [o for o in outcomes if o.outcome == "skipped"]
    if skipped:
        return MISSING, skipped[0].reason or "skipped"
    xfailed = [o for o in outcomes if o.outcome == "xfailed"]
    if xfailed:
        return MISSING, XFAILED_REASON + (f": {xfailed[0].reason}" if xfailed[0].reason else "")
    if any(o.outcome in _GOOD for o in outcomes):
        return SHOWN, None
    return MISSING, None


def _missing(subject: str, test: str, reason: str, how: str, narrowed: bool = False) -> dict[str, Any]:
    return {"subject": subject, "test": test, "reason": reason, "how": how, "narrowed": narrowed}


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
    if not subjects and req.nodes == "gpu" and not any(n.gpu for n in nodes):
        # nothing to require is not the same as nothing there: a GPU acceptance of a cluster without GPUs shows
        # nothing, whatever passed
        item.status = MISSING
        item.missing.append(_missing("cluster", ", ".join(req.tests), NO_GPU_NODE, NO_GPU_HOW))
        return item
    if not subjects:
        item.status = NOT_APPLICABLE
        item.note = f"no {req.nodes.upper()} node{' type' if req.scope != 'node' else ''} in the cluster matches"
        return item
    present = {o.module for o in outcomes} | {m for m, _ in deselected}
    for subject, members in subjects:
        item.subjects.append(subject)
        names = {n.name for n in members}
        for test in req.tests:
            mine = [o for o in outcomes if _matches(test, o)]
            item.missing += _deselected_beside(test, subject, mine, deselected)
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
            if why is not None:
                item.missing.append(_missing(subject, test, why, req.how))
            else:
                item.missing.append(_why_not_run(test, subject, req, members, mine, deselected, present))
    item.status = FAILED if item.failed else MISSING if item.missing else SHOWN
    return item


def _deselected_beside(test: str, subject: str, mine: list[Outcome],
                       deselected: frozenset[tuple[str, str]]) -> list[dict[str, Any]]:
    """Tests a glob (`test_aws.py::*`) names that -m/-k deselected while others it names ran: each is missing (the
    ones that ran do not stand in for it)."""
    module, _, function = test.partition("::")
    ran = {o.function for o in mine}
    if not ran:
        return []       # nothing ran: _why_not_run says why
    gone = sorted({f for m, f in deselected if m == module and fnmatchcase(f, function or "*")} - ran)
    return [_missing(subject, f"{module}::{f}", DESELECTED, NARROWED_HOW, narrowed=True) for f in gone]


def _why_not_run(test: str, subject: str, req: Requirement, members: list[NodeFacts], mine: list[Outcome],
                 deselected: frozenset[tuple[str, str]], present: set[str]) -> dict[str, Any]:
    """Why a test has no outcome on a subject, how to get it, and whether the run left it out on purpose."""
    module, _, function = test.partition("::")
    if req.scope == "group" and len(members) < 2:
        return _missing(subject, test, f"only {len(members)} {subject} node: a multi-node run needs at least 2 EFA "
                        "nodes of one type (in one zone)", f"add a {subject} node, or relax `required: {req.name}` "
                        "in your profile (`min_nodes: 2`, or null)")
    unselected = [n.name for n in members if not n.selected]
    if unselected and len(unselected) == len(members):
        return _missing(subject, test, "not among this run's nodes (--gpucluster-sample / --gpucluster-nodes)",
                        UNSELECTED_HOW, narrowed=True)
    if any(m == module and fnmatchcase(f, function or "*") for m, f in deselected):
        return _missing(subject, test, DESELECTED, NARROWED_HOW, narrowed=True)
    unjudged = [o for o in mine if not o.nodes and not o.instance_type and o.outcome == "skipped"]
    if unjudged:     # a test parametrized with a single skipped case (e.g. no EFA node group)
        return _missing(subject, test, unjudged[0].reason or "skipped", req.how)
    if mine:
        return _missing(subject, test, f"the test did not run on {subject}", req.how)
    if module not in present:
        return _missing(subject, test, f"not run ({module} was not part of the run)", NARROWED_HOW, narrowed=True)
    return _missing(subject, test, f"not run: no test of {module} is called {function!r}",
                    "name the test as the suite does in the profile's `required:` (gpucluster profile show)")


def judge_coverage(required: Mapping[str, Any] | None, nodes: Sequence[Mapping[str, Any]],
                   outcomes: Sequence[Outcome], deselected: Iterable[tuple[str, str]] = ()) -> list[dict[str, Any]]:
    """summary.json's `coverage`: one entry per required item (see docs/report.md)."""
    facts = [NodeFacts.from_dict(n) for n in nodes]
    gone = frozenset(deselected)
    return [judge_item(req, facts, outcomes, gone).to_dict() for req in requirements(required)]


def missing_lines(coverage: Sequence[Mapping[str, Any]], limit: int = 4, how: bool = True,
                  narrowed: bool | None = None) -> list[str]:
    """One line per missing item and reason: `nccl-multi-node not shown on p5.48xlarge: <why>; <how>`
    (`narrowed`: only the entries left out on purpose, True, or the others, False)."""
    lines = []
    for item in coverage:
        if item.get("status") != MISSING:
            continue
        by_reason: dict[tuple[str, str], list[str]] = {}
        for m in item.get("missing") or ():
            if narrowed is not None and bool(m.get("narrowed")) != narrowed:
                continue
            subjects = by_reason.setdefault((m.get("reason") or "", m.get("how") or ""), [])
            if m["subject"] not in subjects:
                subjects.append(m["subject"])
        for (why, fix), subjects in by_reason.items():
            more = f" and {len(subjects) - limit} more" if len(subjects) > limit else ""
            where = ", ".join(subjects[:limit]) + more
            lines.append(f"{item['name']} not shown on {where}: {why}" + (f"; {fix}" if fix and how else ""))
    return lines


def forgivable(item: Mapping[str, Any]) -> bool:
    """A missing item whose every missing entry was left out on purpose (what --gpucluster-partial forgives)."""
    return item.get("status") == MISSING and all(m.get("narrowed") for m in item.get("missing") or ())


def nodes_missing(coverage: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """Nodes with a required per-node item missing (the grid marks them incomplete)."""
    return frozenset(m["subject"] for item in coverage if item.get("scope") == "node" and item.get("status") == MISSING
                     for m in item.get("missing") or ())


def requirement_changes(shipped: Mapping[str, Any] | None, effective: Mapping[str, Any] | None,
                        changed_by: Sequence[str] = ()) -> dict[str, Any]:
    """How the run's `required:` differs from the shipped default (summary.json `requirements`): an empty or relaxed
    requirement set accepts more, so the report says so and names the profile layers that changed it."""
    old = {str(k): v for k, v in (shipped or {}).items() if v}
    new = {str(k): v for k, v in (effective or {}).items() if v}
    removed, added = sorted(set(old) - set(new)), sorted(set(new) - set(old))
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    altered = shipped is not None and bool(removed or added or changed)
    return {"altered": altered, "empty": not new, "removed": removed, "added": added, "changed": changed,
            "changed_by": list(changed_by)}


def requirement_line(changes: Mapping[str, Any] | None) -> str | None:
    """The banner's line about an empty or altered requirement set (None when it is the shipped one)."""
    if not changes or not (changes.get("altered") or changes.get("empty")):
        return None
    by = ", ".join(changes.get("changed_by") or ()) or "the profile"
    if changes.get("empty"):
        return (f"nothing is required: the `required:` section is empty ({by}), so this verdict only says that "
                "nothing failed")
    parts = [f"{word} {', '.join(changes[key])}" for key, word in
             (("removed", "removed"), ("changed", "changed"), ("added", "added")) if changes.get(key)]
    return f"required evidence differs from the shipped default ({by}): {'; '.join(parts)}"
