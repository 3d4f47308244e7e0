"""`gpucluster compare OLD.json NEW.json`: regressions between two summary.json files, for nightly trend gates."""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from pytest_gpucluster.report.summary import SummaryError, load_summary

# Units that say which direction is better; other measurements are only compared via their checks.
_BANDWIDTH = re.compile(r"(?:[kMGT]?B|[kMGT]?bit|[kMGT]?b)/s$|[kMGT]?bps$", re.IGNORECASE)
_SECONDS = {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "min": 60.0, "minutes": 60.0}
_BAD = {"failed", "error"}
_NOT_SHOWN = {"skipped", "xfailed"}     # no evidence: a check that passed last night and now shows nothing lost it


@dataclass
class Regression:
    kind: str      # "bandwidth" | "duration" | "flipped" | "lost" | "disappeared" | "required"
    check: str
    what: str
    old: str
    new: str
    change: str


def check_key(check: dict[str, Any]) -> str:
    """Identity of a check across nights: node names change (Karpenter), instance types do not.

    `test_x[ip-10-0-3-17/p5.48xlarge]` -> `test_x[*/p5.48xlarge]`; checks on several nodes of the same
    instance type fold into one key, judged by their worst node.
    """
    nodeid, node = str(check["nodeid"]), check.get("node")
    return nodeid.replace(str(node), "*") if node else nodeid


def _fold(doc: dict[str, Any]) -> tuple[dict[str, str], dict[tuple[str, str], tuple[float, str]]]:
    """Outcome per check key (worst wins) and per (key, measurement) the worst value with its unit."""
    outcomes: dict[str, str] = {}
    values: dict[tuple[str, str], tuple[float, str]] = {}
    # worst first; an advisory warning (warned) showed evidence, so it ranks above the checks that showed nothing
    rank = {"error": 0, "failed": 1, "xpassed": 2, "skipped": 3, "xfailed": 4, "warned": 5, "passed": 6}
    for check in doc["checks"]:
        key = check_key(check)
        outcome = check["outcome"]
        if key not in outcomes or rank.get(outcome, 0) < rank.get(outcomes[key], 0):
            outcomes[key] = outcome
        for m in check.get("measurements", []):
            unit = str(m.get("unit", ""))
            direction = _direction(unit)
            if direction is None or not isinstance(m.get("value"), (int, float)):
                continue
            mkey = (key, str(m["name"]))
            value = float(m["value"])
            if mkey not in values:
                values[mkey] = (value, unit)
            else:
                worst = min if direction == "higher" else max
                values[mkey] = (worst(values[mkey][0], value), unit)
    return outcomes, values


def _direction(unit: str) -> str | None:
    if _BANDWIDTH.search(unit.strip()):
        return "higher"
    if unit.strip() in _SECONDS:
        return "lower"
    return None


def compare(old: dict[str, Any], new: dict[str, Any], *, bandwidth_drop_pct: float = 5.0,
            duration_rise_pct: float = 20.0, duration_min_rise_s: float = 1.0) -> list[Regression]:
    """Regressions of NEW against OLD: bandwidth down, durations (e.g. provisioning phases) up,
    checks that went from passing to failing, checks that passed and now show nothing (skipped, a known failure),
    checks that disappeared, required evidence no longer shown.

    A duration must grow by more than `duration_rise_pct` percent AND more than `duration_min_rise_s`
    seconds: a 0.1 s phase becoming 0.2 s is jitter, not a regression."""
    old_out, old_vals = _fold(old)
    new_out, new_vals = _fold(new)
    found: list[Regression] = []
    for key, outcome in old_out.items():
        if key not in new_out:
            found.append(Regression("disappeared", key, "check", outcome, "absent", "not run any more"))
        elif outcome not in _BAD and new_out[key] in _BAD:
            found.append(Regression("flipped", key, "outcome", outcome, new_out[key], f"{outcome} -> {new_out[key]}"))
        elif outcome == "passed" and new_out[key] in _NOT_SHOWN:
            found.append(Regression("lost", key, "outcome", outcome, new_out[key],
                                    f"passed -> {new_out[key]}: not shown any more"))
    found.extend(required_regressions(old, new))
    for mkey, (old_v, unit) in sorted(old_vals.items()):
        if mkey not in new_vals or mkey[0] not in new_out:
            continue
        new_v = new_vals[mkey][0]
        if old_v == 0:
            continue
        pct = (new_v - old_v) / abs(old_v) * 100.0
        if _direction(unit) == "higher" and -pct > bandwidth_drop_pct:
            found.append(Regression("bandwidth", mkey[0], mkey[1], f"{old_v:.4g} {unit}", f"{new_v:.4g} {unit}",
                                    f"{pct:+.1f}% (limit -{bandwidth_drop_pct:g}%)"))
        elif (_direction(unit) == "lower" and pct > duration_rise_pct
              and (new_v - old_v) * _SECONDS[unit.strip()] > duration_min_rise_s):
            found.append(Regression("duration", mkey[0], mkey[1], f"{old_v:.4g} {unit}", f"{new_v:.4g} {unit}",
                                    f"{pct:+.1f}% (limit +{duration_rise_pct:g}%)"))
    return found


def required_regressions(old: dict[str, Any], new: dict[str, Any]) -> list[Regression]:
    """Required evidence (summary.json `coverage`) shown in OLD and missing or failed in NEW: a narrowed or broken
    nightly must not look like an improvement. A run without a coverage section (older tool) is not compared."""
    if "coverage" not in new:
        return []
    now = {str(i["name"]): i for i in new.get("coverage") or []}
    found = []
    for item in old.get("coverage") or []:
        if item.get("status") != "shown":
            continue
        cur = now.get(str(item["name"]))
        if cur is None:
            found.append(Regression("required", str(item["name"]), "required evidence", "shown", "absent",
                                    "no longer required or not judged"))
        elif cur.get("status") in ("missing", "failed"):
            why = (cur.get("missing") or [{}])[0].get("reason") or ", ".join(cur.get("failed") or [])
            found.append(Regression("required", str(item["name"]), "required evidence", "shown", str(cur["status"]),
                                    f"{cur['status']}: {why}"[:160]))
    return found


def format_table(rows: list[Regression]) -> str:
    headers = ("kind", "check", "what", "old", "new", "change")
    cells = [headers] + [(r.kind, r.check, r.what, r.old, r.new, r.change) for r in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD.json", help="summary.json of the reference run (e.g. last night)")
    parser.add_argument("new", metavar="NEW.json", help="summary.json of the run to judge")
    parser.add_argument("--bandwidth-drop", type=float, default=5.0, metavar="PCT",
                        help="flag a bandwidth measurement (GB/s, Gbps, ...) that fell by more than PCT%% (default 5)")
    parser.add_argument("--duration-rise", type=float, default=20.0, metavar="PCT",
                        help="flag a duration (s, ms; e.g. a Karpenter provisioning phase) that grew by more "
                             "than PCT%% (default 20)")
    parser.add_argument("--duration-min-rise", type=float, default=1.0, metavar="SECONDS",
                        help="...and by more than SECONDS in absolute terms (default 1; ignores jitter of short phases)")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Exit 0: no regression; 1: regressions (table printed); 2: unreadable or invalid input."""
    out = out or sys.stdout
    err = err or sys.stderr
    for flag, value in (("--bandwidth-drop", args.bandwidth_drop), ("--duration-rise", args.duration_rise),
                        ("--duration-min-rise", args.duration_min_rise)):
        if value < 0:
            print(f"gpucluster compare: {flag} must be >= 0, given {value:g}", file=err)
            return 2
    try:
        old, new = load_summary(args.old), load_summary(args.new)
    except SummaryError as exc:
        print(f"gpucluster compare: {exc}", file=err)
        return 2
    rows = compare(old, new, bandwidth_drop_pct=args.bandwidth_drop, duration_rise_pct=args.duration_rise,
                   duration_min_rise_s=args.duration_min_rise)
    label = f"{old['run_id']} ({old['verdict']}) -> {new['run_id']} ({new['verdict']})"
    if not rows:
        print(f"no regressions: {label}", file=out)
        return 0
    print(f"{len(rows)} regression(s): {label}\n", file=out)
    print(format_table(rows), file=out)
    return 1
