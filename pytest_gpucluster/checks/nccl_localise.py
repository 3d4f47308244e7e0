"""Name the bad node, not the pair (pure): after the first round of multi-node groups, each node of a failed group is
re-tested with a partner from a passing group of its type and zone, disjoint pairs at once, for at most two extra
rounds; a failure is attributed to the node that fails with every partner it is tried with, and a node that passes
with a good partner is cleared. Where no group of the zone passed there is no good partner: the fault is not
attributable to one node (likely shared: a security group, a placement, the plugin), which is itself the finding.

Large training operators bisect a slow ring the same way; the suite (suites/test_nccl.py) runs the rounds and this
module plans them and reads the outcome."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from pytest_gpucluster.checks.nccl_nodes import ZONE_LABEL, NodeGroup
from pytest_gpucluster.checks.verdict import Verdict

if TYPE_CHECKING:
    from pytest_gpucluster.kube.discovery import NodeInfo

MAX_EXTRA_ROUNDS = 2
NOT_ATTRIBUTABLE = "not attributable to one node"


class Outcome(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    NOT_SHOWN = "not shown"      # nothing judged (no kernel for the GPU, a run that could not start): no evidence


@dataclass(frozen=True)
class Trial:
    """One multi-node run a node took part in: its round (1 = the first), the group, what it showed."""

    round: int
    group: NodeGroup
    outcome: Outcome
    figure: str                  # e.g. "peak 443.7 GB/s, transport efa" or the failure's headline

    def partners_of(self, node: str) -> list[str]:
        return [n.name for n in self.group.nodes if n.name != node]


@dataclass
class Localisation:
    """Every node's trials and the per-node conclusion; `rounds` run (1 + extra) and their cost per type."""

    trials: dict[str, list[Trial]] = field(default_factory=dict)      # node -> its trials, in order
    rounds: dict[str, int] = field(default_factory=dict)               # instance type -> rounds run
    node_minutes: dict[str, float] = field(default_factory=dict)       # instance type -> extra rounds' cost
    enabled: dict[str, bool] = field(default_factory=dict)             # instance type -> nccl.localise

    def add(self, trial: Trial) -> None:
        for node in trial.group.nodes:
            self.trials.setdefault(node.name, []).append(trial)


def zone_of(node: NodeInfo) -> str:
    return node.zone or node.labels.get(ZONE_LABEL) or ""


def _passed(node: str, trials: Sequence[Trial]) -> Trial | None:
    return next((t for t in trials if t.outcome is Outcome.PASS), None)


def suspects_and_partners(nodes: Iterable[NodeInfo], loc: Localisation
                          ) -> dict[tuple[str, str], tuple[list[NodeInfo], list[NodeInfo]]]:
    """Per (type, zone): nodes still to localise (failed and never passed) and good partners (passed with someone)."""
    out: dict[tuple[str, str], tuple[list[NodeInfo], list[NodeInfo]]] = {}
    for node in sorted(nodes, key=lambda n: n.name):
        trials = loc.trials.get(node.name, [])
        if not trials:
            continue
        key = (node.instance_type, zone_of(node))
        suspects, partners = out.setdefault(key, ([], []))
        if _passed(node.name, trials) is not None:
            partners.append(node)
        elif any(t.outcome is Outcome.FAIL for t in trials):
            suspects.append(node)
    return out


def next_round(suspects: Sequence[NodeInfo], partners: Sequence[NodeInfo], loc: Localisation) -> list[NodeGroup]:
    """Pairs for one extra round: each suspect with a good partner it has not been tried with; a partner serves one
    pair per round (disjoint pairs run at once); suspects left without a free partner wait for the next round."""
    free = list(partners)
    pairs: list[NodeGroup] = []
    for suspect in suspects:
        tried = {p for t in loc.trials.get(suspect.name, []) for p in t.partners_of(suspect.name)}
        partner = next((p for p in free if p.name not in tried), None)
        if partner is None:
            continue
        free.remove(partner)
        pairs.append(NodeGroup(suspect.instance_type, (suspect, partner)))
    return pairs


def _trials_text(node: str, trials: Sequence[Trial]) -> str:
    return "; ".join(f"round {t.round} with {', '.join(t.partners_of(node)) or '-'}: {t.outcome.value} ({t.figure})"
                     for t in trials)


def localised_node(node: NodeInfo, loc: Localisation, zone_nodes: Mapping[str, Sequence[str]]) -> Verdict:
    """The node's own multi-node result. PASS: it passed a run (first round, or with a good partner: cleared). FAIL:
    it failed with every partner, at least one of them good. NOT SHOWN: not attributable (no group of its zone
    passed), not re-tested (no free partner within the extra rounds, or localisation off), or never judged."""
    subject = f"{node.name}/{node.instance_type}"
    trials = loc.trials.get(node.name, [])
    facts = {"rounds": loc.rounds.get(node.instance_type, 1), "trials": _trials_text(node.name, trials) or "none",
             "extra rounds node-minutes": round(loc.node_minutes.get(node.instance_type, 0.0), 2)}
    if not trials:
        return Verdict.not_shown(subject, "the node took part in no multi-node run (see multi_node_coverage)",
                                 "add nodes of its type to its zone or see the group tests", facts=facts)
    passed = _passed(node.name, trials)
    if passed is not None:
        cleared = passed.round > 1
        text = (f"cleared: failed in round 1 with {', '.join(trials[0].partners_of(node.name))}, passed with the "
                f"good partner {', '.join(passed.partners_of(node.name))} in round {passed.round} ({passed.figure})"
                if cleared else f"passed with {', '.join(passed.partners_of(node.name))} ({passed.figure})")
        return Verdict.passed(subject, "a multi-node all-reduce with a good partner passes", text,
                              facts={**facts, "localisation": "cleared" if cleared else "passed"})
    if all(t.outcome is Outcome.NOT_SHOWN for t in trials):
        return Verdict.not_shown(subject, f"no multi-node run of this node was judged ({trials[0].figure})",
                                 "see the group tests", facts=facts)
    zone = zone_of(node) or "unknown"
    if not loc.enabled.get(node.instance_type, True):
        return Verdict.not_shown(subject, f"the group failed ({_trials_text(node.name, trials)}); nccl.localise is "
                                 "false for this type, so the fault is not narrowed to a node",
                                 f"set instances.{node.instance_type}.nccl.localise: true", facts=facts)
    good = [p for t in trials[1:] for p in t.partners_of(node.name)]
    if good and all(t.outcome is Outcome.FAIL for t in trials):
        return Verdict.failed(
            subject, "a multi-node all-reduce with a good partner passes",
            f"fails with every partner: {_trials_text(node.name, trials)}",
            "This node's network path is the fault: check its EFA devices (`fi_info -p efa`, "
            "`vpc.amazonaws.com/efa` allocatable), their link state and the node's placement, then replace or "
            "reboot it.", summary="NCCL fails with every partner of this node", facts={**facts, "localisation": "attributed"})
    if not zone_nodes.get(f"{node.instance_type}/{zone}"):
        return Verdict.not_shown(
            subject, f"{NOT_ATTRIBUTABLE}: every multi-node run of {node.instance_type} in zone {zone} failed, so no "
            f"node is known good to pair it with ({_trials_text(node.name, trials)}); the fault is likely shared: "
            "a security group without its self-referencing rules, a placement, the EFA plugin",
            "see the group tests' failures; check the security group (test_aws) and the EFA setup",
            facts={**facts, "localisation": NOT_ATTRIBUTABLE})
    return Verdict.not_shown(
        subject, f"not re-tested with a good partner within {MAX_EXTRA_ROUNDS} extra rounds "
        f"({_trials_text(node.name, trials)})", "re-run with fewer suspects per good node, or more nodes of the type",
        facts={**facts, "localisation": "not re-tested"})
