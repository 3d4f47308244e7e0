"""AWS side of the cluster (marker aws): EFA support and security groups, Karpenter discovery tags and node role, GPU instances."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import pytest

from pytest_gpucluster.aws import AwsCallFailed, AwsUnavailable, ec2
from pytest_gpucluster.aws.gather import NodeRef, Snapshot, take_snapshot
from pytest_gpucluster.aws.session import (
    AwsSession, open_session, require_aws, target_from_kubeconfig, target_from_provider_ids,
)
from pytest_gpucluster.checks import aws as checks
from pytest_gpucluster.checks.aws import NodeClassRefs
from pytest_gpucluster.kube import errors, kubeconfig
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory
from pytest_gpucluster.kube.objects import NodeInfo
from pytest_gpucluster.session import SESSION_KEY, Session
from pytest_gpucluster.suite import enforce

pytestmark = pytest.mark.aws

NODECLASS_KINDS = ("ec2nodeclasses.karpenter.k8s.aws", "nodeclasses.eks.amazonaws.com")


def _nodeclasses(cluster: Cluster) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for kind in NODECLASS_KINDS:
        try:
            found += cluster.items(kind)
        except errors.NotFound:   # CRD not installed (no Karpenter, or no Auto Mode)
            continue
    return found


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `nodeclass` over the cluster's EC2NodeClasses / Auto Mode NodeClasses, ids = their names."""
    if "nodeclass" not in metafunc.fixturenames:
        return
    run: Session = metafunc.config.stash[SESSION_KEY]
    try:
        objects = _nodeclasses(run.connect())
    except (kubeconfig.KubeconfigError, errors.ClusterError) as exc:
        pytest.fail(f"gpucluster: cannot list node classes for {metafunc.function.__name__}: {exc}", pytrace=False)
    refs = [checks.nodeclass_refs(o) for o in objects]
    if refs:
        metafunc.parametrize("nodeclass", refs, ids=[r.name for r in refs])
    else:
        reason = "no EC2NodeClass or NodeClass in the cluster (Karpenter / EKS Auto Mode not installed)"
        metafunc.parametrize("nodeclass", [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
                             ids=["no-nodeclasses"])


@pytest.fixture(scope="module")
def aws(gpucluster_session: Session, cluster: Cluster, inventory: Inventory) -> AwsSession:
    """The AWS session for this cluster; every test of the module skips with the one reason if there is none."""
    paths = list(getattr(cluster.creds, "paths", []) or [])
    target = target_from_kubeconfig(paths[0] if paths else None, cluster.context).merged(
        target_from_provider_ids(n.provider_id or "" for n in inventory.all_nodes))
    sim_env = gpucluster_session.aws_env   # the simulated cluster's AWS account, from its hand-off folder
    try:
        if gpucluster_session.sim is not None and sim_env is None:
            raise AwsUnavailable("the simulated scenario has no AWS account (its aws: section is not enabled)")
        require_aws((n.provider_id or "" for n in inventory.all_nodes), target)
        return open_session(profile=gpucluster_session.options.aws_profile,
                            region=gpucluster_session.options.region, target=target, env=sim_env)
    except AwsUnavailable as exc:
        pytest.skip(f"AWS checks skipped: {exc.reason}")


@contextlib.contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """An AWS call that fails (AccessDenied, throttled past the retries, ...) fails the test in one line."""
    try:
        yield
    except AwsCallFailed as exc:
        pytest.fail(f"{what}: {exc} - check the IAM permissions of the identity running the suite "
                    f"(read-only EC2 Describe*, iam:GetRole / GetInstanceProfile)", pytrace=False)


def _ref(node: NodeInfo) -> NodeRef:
    # a node advertising EFA the profile does not know still needs an EFA-capable type
    return NodeRef(node.name, node.instance_type, node.provider_id, node.expected_efa or node.efa_allocatable)


@pytest.fixture(scope="module")
def snapshot(aws: AwsSession, inventory: Inventory) -> Snapshot:
    """Instances, instance types and security groups of the GPU and EFA nodes, read in batched calls."""
    nodes = {n.name: n for n in [*inventory.gpu_nodes, *inventory.efa_nodes]}
    with aws_errors("reading the GPU/EFA nodes' instances, instance types and security groups"):
        return take_snapshot(aws, [_ref(n) for n in nodes.values()])
    raise AssertionError("unreachable")   # pytest.fail above raises


def test_instance_type_supports_efa(efa_node: NodeInfo, snapshot: Snapshot, evidence: Any) -> None:
    """EC2 DescribeInstanceTypes says the type supports as many EFA interfaces as the profile expects."""
    ref = _ref(efa_node)
    enforce(checks.efa_support(ref, snapshot.instance_types.get(ref.instance_type)), evidence)


def test_efa_security_group_allows_itself(efa_node: NodeInfo, snapshot: Snapshot, evidence: Any) -> None:
    """One of the instance's security groups allows all traffic in from and out to itself."""
    ref = _ref(efa_node)
    instance = snapshot.instances.get(ref.instance_id or "")
    enforce(checks.efa_security_groups(ref, instance, snapshot.security_groups), evidence)


def test_gpu_instance_is_running(gpu_node: NodeInfo, snapshot: Snapshot, evidence: Any) -> None:
    """The GPU node's EC2 instance is running; its launch time goes to the provisioning timeline."""
    ref = _ref(gpu_node)
    enforce(checks.instance_running(ref, snapshot.instances.get(ref.instance_id or "")), evidence)


def test_subnet_selector_finds_tagged_subnets(nodeclass: NodeClassRefs, aws: AwsSession, evidence: Any) -> None:
    """Every subnetSelectorTerms term selects at least one subnet (the karpenter.sh/discovery tag is there)."""
    with aws_errors(f"resolving subnetSelectorTerms of {nodeclass.name}"):
        matches = ec2.resolve_selector_terms(aws, "subnet", nodeclass.subnet_terms)
    enforce(checks.selector_terms(nodeclass, "subnet", matches), evidence)


def test_security_group_selector_finds_tagged_groups(nodeclass: NodeClassRefs, aws: AwsSession,
                                                     evidence: Any) -> None:
    """Every securityGroupSelectorTerms term selects at least one security group."""
    with aws_errors(f"resolving securityGroupSelectorTerms of {nodeclass.name}"):
        matches = ec2.resolve_selector_terms(aws, "security-group", nodeclass.security_group_terms)
    enforce(checks.selector_terms(nodeclass, "security-group", matches), evidence)


def test_node_role_exists(nodeclass: NodeClassRefs, aws: AwsSession, evidence: Any) -> None:
    """The IAM role (or instance profile) the node class gives its nodes exists."""
    role = None
    with aws_errors(f"reading the node role of {nodeclass.name}"):
        if nodeclass.role:
            role = ec2.get_role(aws, nodeclass.role)
        elif nodeclass.instance_profile:
            role = ec2.get_instance_profile_role(aws, nodeclass.instance_profile)
    enforce(checks.node_role(nodeclass, role), evidence)
