"""summary.json: the versioned, machine-readable result of a run (verdict, fingerprint, profile, checks)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pytest_gpucluster.report.areas import split_nodeid
from pytest_gpucluster.report.coverage import (FAILED, MISSING, Outcome, judge_coverage, missing_lines,
                                               requirement_changes)
from pytest_gpucluster.report.redact import redact_obj
from pytest_gpucluster.report.runinfo import RunInfo
from pytest_gpucluster.tiers import BLOCKING, Tiers

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("summary.schema.json")  # JSON Schema of this version (shipped)
ACCEPTED = "ACCEPTED"
NOT_ACCEPTED = "NOT ACCEPTED"
INCOMPLETE = "INCOMPLETE"         # nothing failed, but required evidence is missing (exit INCOMPLETE_EXIT)
INCOMPLETE_EXIT = 6               # pytest's own codes are 0-5; docs/report.md "Exit codes"
# warned: an advisory check (the profile's tiers:) that failed; shown as WARN, it does not change the verdict
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "warned")
WARNED = "warned"


class SummaryError(ValueError):
    """A summary.json that cannot be read or does not follow the schema."""


@dataclass
class CheckResult:
    """One test as the report sees it, assembled from its setup/call/teardown reports."""

    nodeid: str
    outcome: str = "passed"
    duration_s: float = 0.0
    node: str | None = None
    instance_type: str | None = None
    skip_reason: str | None = None
    message: str | None = None                 # first line of the failure, for tables
    evidence: dict[str, Any] = field(default_factory=dict)
    zone: str | None = None                    # availability zone of the node (of the first node of a group)
    nodes: list[str] = field(default_factory=list)        # every node of a multi-node check
    zones: dict[str, str] = field(default_factory=dict)   # node -> zone, for groups
    kept: bool = True                          # has a row in the HTML results table (else: grid + evidence file)
    tier: str = BLOCKING                       # the profile's tier of this check (tiers.py)
    tier_reason: str = ""
    headline: dict[str, Any] = field(default_factory=dict)  # what the summary plots draw (timeline SVGs: not in
                                                             # summary.json, which has the evidence's numbers)

    @property
    def module(self) -> str:
        return self.nodeid.split("::", 1)[0]

    @property
    def name(self) -> str:
        return self.nodeid.split("::")[-1]

    def to_dict(self) -> dict[str, Any]:
        ev = self.evidence
        return {
            "nodeid": self.nodeid,
            "module": self.module,
            "name": self.name,
            "node": self.node,
            "instance_type": self.instance_type,
            "zone": self.zone,
            "outcome": self.outcome,
            "tier": self.tier,
            "duration_s": round(self.duration_s, 3),
            "skip_reason": self.skip_reason,
            "message": self.message,
            "measurements": ev.get("measurements", []),
            "facts": ev.get("facts", {}),
            "versions": ev.get("versions", {}),
            **({"headline": ev["headline"]} if ev.get("headline") else {}),
        }


def count_outcomes(checks: list[CheckResult]) -> dict[str, int]:
    counts = {o: 0 for o in OUTCOMES}
    for c in checks:
        counts[c.outcome] = counts.get(c.outcome, 0) + 1
    counts["total"] = len(checks)
    return counts


def verdict(counts: dict[str, int], interrupted: bool, coverage: list[dict[str, Any]] | None = None,
            partial: bool = False, leftovers: Sequence[str] = ()) -> tuple[str, list[str]]:
    """NOT ACCEPTED: interrupted, a check failed/errored/xpassed, a required item failed, nothing passed, or the
    teardown left objects behind. INCOMPLETE: none of that, but a required item (`coverage`) was not shown, each
    named with why and how to get it. ACCEPTED: everything required was shown and passed; with `partial`
    (--gpucluster-partial) items the run left out on purpose (-m/-k, node selection, modules not selected) are
    allowed and listed as the reasons ("partial: ..."), while evidence the cluster did not give stays INCOMPLETE."""
    coverage = coverage or []
    reasons = []
    if interrupted:
        reasons.append("the run was interrupted: this report is partial")
    if counts.get("failed"):
        reasons.append(f"{counts['failed']} check(s) failed")
    if counts.get("error"):
        reasons.append(f"{counts['error']} check(s) errored")
    if counts.get("xpassed"):
        reasons.append(f"{counts['xpassed']} check(s) marked as known failures passed unexpectedly")
    failed = [i["name"] for i in coverage if i.get("status") == FAILED]
    if failed:
        reasons.append(f"required evidence failed: {', '.join(failed)}")
    if not counts.get("passed"):
        reasons.append("no check passed: nothing was verified")
    if leftovers:
        shown = ", ".join(list(leftovers)[:5]) + (f" and {len(leftovers) - 5} more" if len(leftovers) > 5 else "")
        reasons.append(f"the teardown left {len(leftovers)} object(s) on the cluster: {shown}; "
                       "run `gpucluster cleanup --older-than 0s`")
    if reasons:
        return NOT_ACCEPTED, reasons
    if not partial:
        missing = missing_lines(coverage)
        return (INCOMPLETE, missing) if missing else (ACCEPTED, [])
    unforgiven = missing_lines(coverage, narrowed=False)
    if unforgiven:      # --gpucluster-partial forgives what the run left out, not what the cluster did not show
        return INCOMPLETE, [*unforgiven, "--gpucluster-partial forgives only what the run left out on purpose "
                            "(-m/-k, --gpucluster-nodes/--gpucluster-sample, modules not selected), not evidence "
                            "the cluster did not give"]
    forgiven = missing_lines(coverage, how=False, narrowed=True)
    if forgiven:
        names = [i["name"] for i in coverage if i.get("status") == MISSING]
        return ACCEPTED, [f"partial run (--gpucluster-partial): {', '.join(names)} not shown", *forgiven]
    return ACCEPTED, []


def verdict_line(doc: dict[str, Any]) -> str:
    """How the verdict reads: `ACCEPTED`, `INCOMPLETE`, `ACCEPTED (partial: nccl-multi-node not shown)`,
    `ACCEPTED (2 advisory warnings)`."""
    notes = []
    partial = doc.get("partial") or []
    if doc.get("verdict") == ACCEPTED and partial:
        notes.append(f"partial: {', '.join(partial)} not shown")
    warned = int((doc.get("counts") or {}).get(WARNED) or 0)
    if warned:
        notes.append(f"{warned} advisory warning{'s' if warned > 1 else ''}")
    return f"{doc.get('verdict')} ({'; '.join(notes)})" if notes else str(doc.get("verdict"))


def apply_tier(check: CheckResult, tiers: Tiers | None) -> None:
    """The check's tier from the profile; an advisory check that failed becomes `warned` (idempotent)."""
    if tiers is None:
        return
    tier = tiers.of(*split_nodeid(check.nodeid))
    check.tier, check.tier_reason = tier.tier, tier.reason
    if tier.advisory and check.outcome == "failed":
        check.outcome = WARNED


def warnings_of(checks: list[CheckResult], limit: int = 20) -> list[dict[str, Any]]:
    """summary.json `warnings`: one entry per advisory check that warned (its nodes, the tier's reason, a message)."""
    groups: dict[str, dict[str, Any]] = {}
    for c in checks:
        if c.outcome != WARNED:
            continue
        name = c.nodeid.split("[", 1)[0]
        group = groups.setdefault(name, {"check": name, "tier": c.tier, "reason": c.tier_reason, "count": 0,
                                         "nodeids": [], "message": c.message})
        group["count"] += 1
        if len(group["nodeids"]) < limit:
            group["nodeids"].append(c.nodeid)
    return list(groups.values())


def outcomes_of(checks: list[CheckResult]) -> list[Outcome]:
    return [Outcome.of(c.nodeid, c.outcome, c.instance_type, c.node, c.nodes, c.skip_reason) for c in checks]


def fingerprint(run: RunInfo, checks: list[CheckResult]) -> dict[str, Any]:
    """What this cluster is: API version, nodes, component versions seen by the checks, profile."""
    components: dict[str, list[str]] = {}
    for c in checks:
        for comp, version in c.evidence.get("versions", {}).items():
            seen = components.setdefault(comp, [])
            if version not in seen:
                seen.append(version)
    return {
        "server_version": run.server_version,
        "inventory": dict(run.inventory),
        "components": {k: sorted(v) for k, v in sorted(components.items())},
        "profile": {"path": run.profile_path, "sha256": run.profile_sha256},
        "simulated": run.simulated,
        "scenario": run.scenario,
        **({"extra": dict(run.extra)} if run.extra else {}),
        # nodes cordoned, disrupted, NotReady or not initialised at discovery or during the run: their checks are
        # not shown (kube/objects.transition_of)
        **({"in_transition": dict(sorted(run.in_transition.items()))} if run.in_transition else {}),
    }


def build_summary(run: RunInfo, checks: list[CheckResult], *, started: str, finished: str,
                  duration_s: float, tool_version: str, judge_required: bool = True,
                  deselected: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The summary.json document (already redacted). `judge_required`: the run included the acceptance suites, so
    the profile's required evidence is judged (a plugin test or a user's own suite is not held to it)."""
    for check in checks:
        apply_tier(check, run.tiers)
    counts = count_outcomes(checks)
    coverage = judge_coverage(run.required, run.nodes, outcomes_of(checks), deselected or ()) if judge_required else []
    result, reasons = verdict(counts, run.interrupted, coverage, run.partial, run.leftovers)
    partial = [i["name"] for i in coverage if i["status"] == MISSING] if result == ACCEPTED else []
    requirements = (requirement_changes(run.required_shipped, run.required, run.required_from) if judge_required
                    else None)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "pytest-gpucluster", "version": tool_version},
        "run_id": run.run_id,
        "started": started,
        "finished": finished,
        "duration_s": round(duration_s, 3),
        "simulated": run.simulated,
        "scenario": run.scenario,
        "interrupted": run.interrupted,
        "verdict": result,
        "verdict_reasons": reasons,
        "partial": partial,
        "coverage": coverage,
        **({"requirements": requirements} if requirements is not None else {}),
        "teardown_leftovers": list(run.leftovers),
        "warnings": warnings_of(checks),
        "counts": counts,
        "skips": [{"nodeid": c.nodeid, "reason": c.skip_reason} for c in checks if c.outcome == "skipped"],
        "fingerprint": fingerprint(run, checks),
        "profile": {"path": run.profile_path, "sha256": run.profile_sha256, "values": run.profile_values},
        "checks": [c.to_dict() for c in checks],
    }
    clean: dict[str, Any] = redact_obj(doc)
    return clean


# An array of numbers only, as json.dumps(indent=2) spreads it over one line per number. A JSON string holds no raw
# newline, so the pattern cannot match inside one.
_NUMBER_ARRAY = re.compile(r"\[\n\s+(-?[0-9.eE+-]+(?:,\n\s+-?[0-9.eE+-]+)*)\n\s+\]")


def write_summary(path: Path, doc: dict[str, Any]) -> Path:
    """Indented for people, with each array of numbers on one line: a bus-bandwidth curve's [size, GB/s] points
    would otherwise take four lines each (a third of a 2-node run's summary.json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _NUMBER_ARRAY.sub(lambda m: "[" + ", ".join(n.strip() for n in m.group(1).split(",")) + "]",
                             json.dumps(doc, indent=2, sort_keys=False))
    path.write_text(text + "\n", encoding="utf-8")
    return path


_REQUIRED = {"schema_version": int, "run_id": str, "verdict": str, "counts": dict, "checks": list}
_CHECK_REQUIRED = {"nodeid": str, "outcome": str, "measurements": list}


def load_summary(path: str | Path) -> dict[str, Any]:
    """Read and check a summary.json; raises SummaryError saying what is wrong and where."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SummaryError(f"{p}: no such file (expected a summary.json written by pytest-gpucluster)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SummaryError(f"{p}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SummaryError(f"{p}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    if not isinstance(doc, dict):
        raise SummaryError(f"{p}: expected a JSON object at top level, found {type(doc).__name__}")
    for key, typ in _REQUIRED.items():
        if not isinstance(doc.get(key), typ):
            raise SummaryError(f"{p}: missing or invalid {key!r} (expected {typ.__name__}); is this a summary.json?")
    if doc["schema_version"] > SCHEMA_VERSION:
        raise SummaryError(f"{p}: schema_version {doc['schema_version']} is newer than this tool understands "
                           f"({SCHEMA_VERSION}); upgrade pytest-gpucluster")
    for i, check in enumerate(doc["checks"]):
        bad = [k for k, t in _CHECK_REQUIRED.items() if not isinstance(check, dict) or not isinstance(check.get(k), t)]
        if bad:
            raise SummaryError(f"{p}: checks[{i}] missing or invalid {bad}")
    return doc
