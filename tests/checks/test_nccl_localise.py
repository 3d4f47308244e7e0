"""Naming the bad node, not the pair (checks/nccl_localise.py) on plain data: the plan of the extra rounds and each
node's own multi-node verdict (cleared, attributed, not attributable, not re-tested, localisation off)."""
from __future__ import annotations

from pytest_gpucluster.checks import Status
from pytest_gpucluster.checks.nccl_localise import (
    NOT_ATTRIBUTABLE, Localisation, Outcome, Trial, localised_node, next_round, suspects_and_partners,
)
from pytest_gpucluster.checks.nccl_nodes import NodeGroup
from pytest_gpucluster.kube.discovery import NodeInfo


def node(name: str, zone: str = "az1") -> NodeInfo:
    return NodeInfo(name=name, instance_type="p5.48xlarge", labels={}, taints=[], allocatable={}, capacity={},
                    gpus_allocatable=8, efa_allocatable=32, nodepool=None, provider_id=None, conditions={},
                    ready=True, unschedulable=False, zone=zone, expected_gpus=8, expected_efa=32)


N = {n: node(n) for n in "abcdefgh"}


def pair(x: str, y: str) -> NodeGroup:
    return NodeGroup("p5.48xlarge", (N[x], N[y]))


def first_round(failing: set[str]) -> Localisation:
    loc = Localisation()
    for x, y in ("ab", "cd", "ef", "gh"):
        bad = bool({x, y} & failing)
        loc.add(Trial(1, pair(x, y), Outcome.FAIL if bad else Outcome.PASS, "peak 130 GB/s" if bad else "peak 440"))
    loc.rounds["p5.48xlarge"], loc.enabled["p5.48xlarge"] = 1, True
    return loc


def good_of(loc: Localisation) -> dict[str, list[str]]:
    return {f"{t}/{z}": [n.name for n in partners]
            for (t, z), (_, partners) in suspects_and_partners(N.values(), loc).items()}


def test_each_node_of_a_failed_pair_gets_its_own_good_partner_and_pairs_are_disjoint() -> None:
    loc = first_round({"h"})
    (suspects, partners), = suspects_and_partners(N.values(), loc).values()
    assert [n.name for n in suspects] == ["g", "h"] and [n.name for n in partners] == list("abcdef")
    plan = next_round(suspects, partners, loc)
    assert [g.id for g in plan] == ["g+a/p5.48xlarge", "h+b/p5.48xlarge"]
    loc.add(Trial(2, plan[0], Outcome.PASS, "peak 445"))
    loc.add(Trial(2, plan[1], Outcome.FAIL, "peak 131"))
    (suspects, partners), = suspects_and_partners(N.values(), loc).values()
    assert [n.name for n in suspects] == ["h"]
    assert [g.id for g in next_round(suspects, partners, loc)] == ["h+a/p5.48xlarge"]     # not b again


def test_the_node_that_fails_with_every_partner_is_named_and_its_first_partner_cleared() -> None:
    loc = first_round({"h"})
    loc.add(Trial(2, pair("g", "a"), Outcome.PASS, "peak 445"))
    loc.add(Trial(2, pair("h", "b"), Outcome.FAIL, "peak 131"))
    loc.add(Trial(3, pair("h", "a"), Outcome.FAIL, "peak 132"))
    loc.rounds["p5.48xlarge"] = 3
    bad = localised_node(N["h"], loc, good_of(loc))
    assert bad.status is Status.FAIL and bad.summary == "NCCL fails with every partner of this node"
    assert "round 1 with g: fail" in bad.observed and "round 3 with a: fail (peak 132)" in bad.observed
    assert bad.facts["rounds"] == 3 and bad.facts["localisation"] == "attributed"
    cleared = localised_node(N["g"], loc, good_of(loc))
    assert cleared.status is Status.PASS and cleared.facts["localisation"] == "cleared"
    assert cleared.observed.startswith("cleared: failed in round 1 with h, passed with the good partner a in round 2")
    assert localised_node(N["c"], loc, good_of(loc)).status is Status.PASS


def test_a_zone_where_every_pair_failed_is_not_attributable_to_one_node() -> None:
    loc = first_round(set("abcdefgh"))
    assert all(not next_round(s, p, loc) for s, p in suspects_and_partners(N.values(), loc).values())
    verdict = localised_node(N["a"], loc, good_of(loc))
    assert verdict.status is Status.NOT_SHOWN and NOT_ATTRIBUTABLE in verdict.message
    assert "likely shared: a security group" in verdict.message


def test_localisation_off_or_no_free_partner_is_not_shown_never_failed() -> None:
    loc = first_round({"h"})
    loc.enabled["p5.48xlarge"] = False
    off = localised_node(N["h"], loc, good_of(loc))
    assert off.status is Status.NOT_SHOWN and "nccl.localise is false" in off.message
    loc.enabled["p5.48xlarge"] = True
    waiting = localised_node(N["h"], loc, good_of(loc))
    assert waiting.status is Status.NOT_SHOWN and "not re-tested with a good partner" in waiting.message


def test_the_profile_keys_nccl_localise_and_nccl_image_are_per_type_and_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from pytest_gpucluster.profile import load_profile
    assert load_profile().for_instance("p5.48xlarge").nccl_localise is True          # type: ignore[union-attr]
    user = tmp_path / "p.yaml"
    user.write_text("families:\n  p5:\n    nccl: {localise: false, image: 'reg/nccl:sm90'}\n")
    p5 = load_profile(user).for_instance("p5.48xlarge")
    assert p5 is not None and p5.nccl_localise is False and p5.nccl_image == "reg/nccl:sm90"
    user.write_text("defaults:\n  nccl: {localise: 'no'}\n")
    with pytest.raises(pytest.UsageError, match="localise"):
        load_profile(user)
