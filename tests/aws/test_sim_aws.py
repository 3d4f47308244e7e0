"""The simulated AWS account matches its seed, is isolated per cluster, and seeds each aws-* fault."""
from __future__ import annotations

from typing import Callable

import pytest

from pytest_gpucluster.sim.aws import DISCOVERY_TAG, AwsSeed, AwsSim, AwsSimError, seed_from_scenario, start_aws
from pytest_gpucluster.sim.scenario import load_scenario

from .conftest import CLUSTER, REGION, make_seed


def _instances(sim: AwsSim) -> dict[str, dict]:
    pages = sim.client("ec2").describe_instances()["Reservations"]
    return {i["InstanceId"]: i for r in pages for i in r["Instances"]}


def _efa_group(sim: AwsSim) -> str:
    return sim.security_group_ids[f"{CLUSTER}-efa"]


def _self_pairs(group: dict, direction: str) -> list[tuple[str, str]]:
    return [(p["IpProtocol"], g["GroupId"]) for p in group[direction] for g in p.get("UserIdGroupPairs", [])]


def _tags(obj: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in obj.get("Tags", [])}


def test_env_points_boto3_at_the_loopback_server(healthy: AwsSim) -> None:
    assert healthy.env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert healthy.env["AWS_DEFAULT_REGION"] == REGION
    assert healthy.env["AWS_ACCESS_KEY_ID"] and healthy.env["AWS_SECRET_ACCESS_KEY"]


def test_one_running_instance_per_node_with_its_type_and_zone(healthy: AwsSim) -> None:
    instances = _instances(healthy)
    assert sorted(healthy.instance_ids) == sorted(n.name for n in healthy.seed.nodes)
    for node in healthy.seed.nodes:
        inst = instances[healthy.instance_ids[node.name]]
        assert (inst["InstanceType"], inst["Placement"]["AvailabilityZone"], inst["State"]["Name"]) == \
            (node.instance_type, node.zone, "running")
        assert _tags(inst)["Name"] == node.name
        assert healthy.provider_id(node.name) == f"aws:///{node.zone}/{inst['InstanceId']}"


def test_subnets_and_security_groups_carry_the_discovery_tag(healthy: AwsSim) -> None:
    ec2 = healthy.client("ec2")
    subnets = ec2.describe_subnets(Filters=[{"Name": f"tag:{DISCOVERY_TAG}", "Values": [CLUSTER]}])["Subnets"]
    assert {s["AvailabilityZone"] for s in subnets} == {"us-west-2a", "us-west-2b"}
    groups = ec2.describe_security_groups(Filters=[{"Name": f"tag:{DISCOVERY_TAG}", "Values": [CLUSTER]}])
    assert {g["GroupId"] for g in groups["SecurityGroups"]} == set(healthy.security_group_ids.values())


def test_efa_group_allows_all_traffic_to_and_from_itself(healthy: AwsSim) -> None:
    group = healthy.client("ec2").describe_security_groups(GroupIds=[_efa_group(healthy)])["SecurityGroups"][0]
    for direction in ("IpPermissions", "IpPermissionsEgress"):
        assert _self_pairs(group, direction) == [("-1", _efa_group(healthy))]


def test_node_role_exists(healthy: AwsSim) -> None:
    role = healthy.client("iam").get_role(RoleName=f"KarpenterNodeRole-{CLUSTER}")["Role"]
    assert role["Arn"].endswith(f":role/KarpenterNodeRole-{CLUSTER}")
    assert healthy.account_id in role["Arn"]


def test_two_simulations_do_not_share_state(healthy: AwsSim) -> None:
    other = start_aws(AwsSeed(cluster="other", region=REGION))
    assert other is not None
    try:
        assert _instances(other) == {}
        assert other.account_id != healthy.account_id
        assert len(_instances(healthy)) == len(healthy.seed.nodes)
    finally:
        other.stop()


def test_launch_instance_for_karpenter() -> None:
    sim = start_aws(make_seed())   # its own account: this test adds an instance
    assert sim is not None
    try:
        instance_id, launched = sim.launch_instance("p5.48xlarge", "us-west-2b", {"karpenter.sh/nodepool": "gpu"})
        inst = _instances(sim)[instance_id]
        assert inst["InstanceType"] == "p5.48xlarge" and launched.tzinfo is not None
        assert _tags(inst)["karpenter.sh/nodepool"] == "gpu"
        assert {g["GroupId"] for g in inst["SecurityGroups"]} == set(sim.security_group_ids.values())
        with pytest.raises(AwsSimError, match="no simulated subnet in zone"):
            sim.launch_instance("p5.48xlarge", "eu-west-1a")
    finally:
        sim.stop()


def test_fault_sg_no_self_rule_removes_both_rules(start_sim: Callable[..., AwsSim]) -> None:
    sim = start_sim({"aws-sg-no-self-rule": {}})
    group = sim.client("ec2").describe_security_groups(GroupIds=[_efa_group(sim)])["SecurityGroups"][0]
    assert _self_pairs(group, "IpPermissions") == [] and _self_pairs(group, "IpPermissionsEgress") == []


def test_fault_no_efa_support_hides_efa_for_this_account_only(start_sim: Callable[..., AwsSim],
                                                              healthy: AwsSim) -> None:
    sim = start_sim({"aws-no-efa-support": {"instance_types": ["p5.48xlarge"]}})
    def efa(s: AwsSim) -> dict[str, bool]:
        types = s.client("ec2").describe_instance_types(InstanceTypes=["p5.48xlarge", "p4d.24xlarge"])
        return {t["InstanceType"]: t["NetworkInfo"]["EfaSupported"] for t in types["InstanceTypes"]}
    assert efa(sim) == {"p5.48xlarge": False, "p4d.24xlarge": True}
    assert efa(healthy) == {"p5.48xlarge": True, "p4d.24xlarge": True}


def test_fault_missing_discovery_tags(start_sim: Callable[..., AwsSim]) -> None:
    sim = start_sim({"aws-missing-discovery-tags": {"resources": "subnets"}})
    ec2 = sim.client("ec2")
    tagged = [{"Name": f"tag:{DISCOVERY_TAG}", "Values": [CLUSTER]}]
    assert ec2.describe_subnets(Filters=tagged)["Subnets"] == []
    assert len(ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]) == 2


def test_bad_fault_params_are_rejected() -> None:
    with pytest.raises(AwsSimError, match="direction must be ingress, egress or both"):
        start_aws(AwsSeed(cluster="bad", region=REGION, faults={"aws-sg-no-self-rule": {"direction": "up"}}))


@pytest.mark.parametrize("name", ["healthy", "aws-sg-no-self-rule", "aws-missing-discovery-tags"])
def test_seed_from_shipped_scenarios(name: str) -> None:
    scenario = load_scenario(name)
    seed = seed_from_scenario(scenario)
    assert seed is not None
    assert [n.name for n in seed.nodes] == [n.name for n in scenario.expand_nodes()]
    assert seed.role_names() == [f"KarpenterNodeRole-{scenario.cluster.name}"]
    assert [g.name for g in seed.group_seeds()] == [g.name for g in scenario.aws.security_groups]
    assert set(seed.faults) == {f.kind for f in scenario.faults if f.kind.startswith("aws-")}


def test_scenario_instances_keep_the_scenario_provider_ids() -> None:
    scenario = load_scenario("healthy")
    sim = start_aws(scenario)
    assert sim is not None
    try:
        assert sim.instance_ids == {n.name: n.instance_id for n in scenario.expand_nodes()}
        assert all(sim.provider_id(n.name) == n.provider_id for n in scenario.expand_nodes())
        assert set(_instances(sim)) == set(sim.instance_ids.values())
    finally:
        sim.stop()
