"""Judge of fleet uniformity: a node runs what most nodes of its instance type run (driver, CUDA, kernel, EFA driver;
VBIOS on its own, as AWS host firmware is not the cluster owner's to change). Pure: versions per node in, a Verdict
out."""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from pytest_gpucluster.checks.verdict import Verdict
from pytest_gpucluster.parsers.nvidia_smi_model import SmiLog

SOFTWARE_KEYS = ("driver", "cuda", "kernel", "efa driver")
FIRMWARE_KEYS = ("vbios",)
UNIFORM_KEYS = SOFTWARE_KEYS + FIRMWARE_KEYS


def uniformity(subject: str, node: str, instance_type: str, versions: Mapping[str, Mapping[str, str]],
               keys: Sequence[str] = SOFTWARE_KEYS) -> Verdict:
    """`versions`: node -> {key: value} for every node of this instance type whose probe ran. The node fails when a
    value differs from the one most nodes of its type run. Not shown: a key the other nodes report and this node
    lacks (never "the same"), and a key with no majority (two versions on two nodes during an AMI roll-out: no node
    can be called the odd one)."""
    mine = versions.get(node)
    if not mine:
        return Verdict.not_shown(subject, "no versions read on this node (its health probe did not run or printed "
                                 "no nvidia-smi -q): see the node's other health checks")
    problems: list[str] = []
    unread: list[str] = []
    no_majority: list[str] = []
    facts: dict[str, Any] = {"nodes of the type compared": len(versions)}
    for key in keys:
        values = Counter(v[key] for v in versions.values() if v.get(key))
        if not values:
            continue                          # no node of the type reports it (e.g. no EFA driver on g types)
        if not mine.get(key):
            unread.append(f"{key} not read on {node} while {sum(values.values())} {instance_type} node(s) report it "
                          f"({', '.join(sorted(values))})")
            continue
        facts[key] = mine[key]
        if len(values) > 1:
            facts[f"{key} across {instance_type}"] = dict(values)
        (common, n), *rest = values.most_common()
        if rest and rest[0][1] == n:
            no_majority.append(f"{key}: " + ", ".join(f"{v} on {c} node(s)" for v, c in values.most_common())
                               + f" ({node} runs {mine[key]})")
        elif mine[key] != common:
            problems.append(f"{key} {mine[key]} on {node} where {n}/{sum(values.values())} {instance_type} "
                            f"nodes run {common}")
    what = ", ".join(keys)
    if not any(key in facts for key in keys) and not unread:
        return Verdict.not_shown(subject, f"none of {what} was read on any {instance_type} node", facts=facts)
    if problems:
        return Verdict.failed(
            subject, f"the same {what} as the other {instance_type} nodes", "; ".join(problems),
            "Mixed versions break NCCL jobs across nodes and make results irreproducible: replace the odd node (or roll "
            "the AMI / GPU Operator driver version so every node of the type runs the same one).",
            summary="Node differs from its fleet", facts=facts)
    if unread:
        return Verdict.not_shown(subject, "; ".join(unread), "the probe's raw output is attached: see why the value "
                                 "is missing on this node (nvidia-smi -q field, /sys/module/efa/version)", facts=facts)
    if no_majority:
        return Verdict.not_shown(subject, f"no majority among the {len(versions)} {instance_type} nodes, so no node "
                                 "can be called the odd one: " + "; ".join(no_majority),
                                 "finish the roll-out (every node of the type on one version), or add nodes; an AMI "
                                 "roll-out in progress is expected to show this", facts=facts)
    observed = (f"the only {instance_type} node whose versions were read" if len(versions) == 1
                else f"same as the other {len(versions) - 1} {instance_type} node(s)")
    return Verdict.passed(subject, f"the same {what} as the other {instance_type} nodes", observed, facts=facts)


def versions_of(health: SmiLog | None, host: str) -> dict[str, str]:
    """The values fleet uniformity compares, from `nvidia-smi -q` and the probe's host section."""
    out: dict[str, str] = {}
    if health is not None:
        out["driver"] = health.driver_version or ""
        out["cuda"] = health.cuda_version or ""
        out["vbios"] = ",".join(sorted({g.vbios for g in health.gpus if g.vbios}))
    for line in host.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("kernel", "efa driver") and value.strip():
            out[key.strip()] = value.strip()
    return {k: v for k, v in out.items() if v}
