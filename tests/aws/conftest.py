"""Fixtures of the AWS tests: simulated AWS accounts (moto on loopback) seeded from hand-written seeds."""
from __future__ import annotations

from typing import Callable, Iterator

import pytest

from pytest_gpucluster import retry
from pytest_gpucluster.aws.gather import NodeRef
from pytest_gpucluster.aws.session import AwsSession, open_session
from pytest_gpucluster.sim.aws import AwsNodeSeed, AwsSeed, AwsSim, SecurityGroupSeed, start_aws

CLUSTER = "gpu-sim"
REGION = "us-west-2"
# instance type -> EFA devices the acceptance profile expects
EXPECTED_EFA = {"p5.48xlarge": 32, "p4d.24xlarge": 4, "m5.large": 0}


def make_seed(faults: dict[str, dict] | None = None) -> AwsSeed:
    return AwsSeed(cluster=CLUSTER, region=REGION, faults=faults or {}, security_groups=[
        SecurityGroupSeed(f"{CLUSTER}-node", "EKS nodes", self_rule=False),
        SecurityGroupSeed(f"{CLUSTER}-efa", "EFA: all traffic to and from itself", self_rule=True),
    ], nodes=[
        AwsNodeSeed("gpu-p5-0", "p5.48xlarge", "us-west-2a", nodepool="gpu"),
        AwsNodeSeed("gpu-p5-1", "p5.48xlarge", "us-west-2a", nodepool="gpu"),
        AwsNodeSeed("gpu-p4d-0", "p4d.24xlarge", "us-west-2b", nodepool="gpu"),
        AwsNodeSeed("system-0", "m5.large", "us-west-2b"),
    ])


def node_refs(sim: AwsSim) -> list[NodeRef]:
    return [NodeRef(n.name, n.instance_type, sim.provider_id(n.name), EXPECTED_EFA[n.instance_type])
            for n in sim.seed.nodes]


@pytest.fixture(autouse=True, scope="session")
def _no_retry_waits() -> Iterator[None]:
    retry.set_test_mode(True)
    yield
    retry.set_test_mode(False)


@pytest.fixture(scope="session")
def start_sim() -> Iterator[Callable[[dict[str, dict] | None], AwsSim]]:
    """Factory: one started simulated account per fault set, shared by the whole session."""
    sims: dict[str, AwsSim] = {}

    def start(faults: dict[str, dict] | None = None) -> AwsSim:
        key = repr(sorted((faults or {}).items()))
        if key not in sims:
            sim = start_aws(make_seed(faults))
            assert sim is not None
            sims[key] = sim
        return sims[key]

    yield start
    for sim in sims.values():
        sim.stop()


@pytest.fixture(scope="session")
def healthy(start_sim: Callable[..., AwsSim]) -> AwsSim:
    return start_sim(None)


def session_for(sim: AwsSim) -> AwsSession:
    return open_session(env=sim.env)
