"""The simulated cluster's AWS account: moto as a real HTTP server on loopback, seeded from the scenario, with the aws-* faults."""
from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from moto.server import ThreadedMotoServer


class _PathList(list[str]):
    """A loader's search paths where appending a path already there does nothing (boto3 appends its own data folder
    for every Session it makes)."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


_LOADERS: dict[str | None, botocore.loaders.Loader] = {}
_LOADERS_LOCK = threading.Lock()
_create_loader = botocore.loaders.create_loader


def _shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
    """One botocore data loader per search path for the whole simulated-cluster process. Every boto3/botocore Session
    makes a new one, and moto makes Sessions freely (importing moto.ec2 alone makes three to list regions): each
    decoded the endpoint and service-model JSON again, ~20% of the healthy scenario's CPU in this process. The files
    never change while it runs."""
    with _LOADERS_LOCK:
        if search_path_string not in _LOADERS:
            loader = _create_loader(search_path_string)
            loader._search_paths = _PathList(loader.search_paths)   # noqa: SLF001 - see _PathList
            _LOADERS[search_path_string] = loader
        return _LOADERS[search_path_string]


botocore.session.create_loader = _shared_loader   # the name botocore.session.Session's data loader is made with

DISCOVERY_TAG = "karpenter.sh/discovery"
AWS_FAULTS = ("aws-sg-no-self-rule", "aws-no-efa-support", "aws-missing-discovery-tags")
# moto keeps its state per account: every simulated cluster gets its own account so that two
# simulations in one process (tests, xdist-free runs) never see each other's instances.
_ACCOUNT_IDS = itertools.count(100000000001)
_ACCOUNT_LOCK = threading.Lock()


class AwsSimError(RuntimeError):
    """The simulated AWS account could not be started or seeded."""


@dataclass
class AwsNodeSeed:
    """One simulated node that needs a running EC2 instance."""

    name: str
    instance_type: str
    zone: str
    nodepool: str | None = None
    instance_id: str | None = None   # the scenario's deterministic id (its providerID); None: moto picks


@dataclass
class SubnetSeed:
    zone: str
    cidr: str
    public: bool = False
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class SecurityGroupSeed:
    name: str
    description: str = ""
    self_rule: bool = True          # all traffic to and from itself (what EFA needs)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class AwsSeed:
    """What the simulated account holds, derived from a scenario (or written by hand in tests).

    Empty lists get defaults: one private subnet per zone used, one `<cluster>-node` group with the
    self rule, the role `KarpenterNodeRole-<cluster>`.
    """

    cluster: str
    region: str
    nodes: list[AwsNodeSeed] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    subnets: list[SubnetSeed] = field(default_factory=list)
    security_groups: list[SecurityGroupSeed] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)   # aws-* fault name -> params
    discovery_tag_key: str = DISCOVERY_TAG
    vpc_cidr: str = "10.0.0.0/16"

    def all_zones(self) -> list[str]:
        zones = list(dict.fromkeys([*self.zones, *(s.zone for s in self.subnets), *(n.zone for n in self.nodes)]))
        return zones or [f"{self.region}a", f"{self.region}b"]

    def subnet_seeds(self) -> list[SubnetSeed]:
        return self.subnets or [SubnetSeed(zone, f"10.0.{i * 16}.0/20") for i, zone in enumerate(self.all_zones())]

    def group_seeds(self) -> list[SecurityGroupSeed]:
        return self.security_groups or [SecurityGroupSeed(f"{self.cluster}-node", "EKS nodes (EFA-ready)")]

    def role_names(self) -> list[str]:
        return self.roles or [f"KarpenterNodeRole-{self.cluster}"]


def _boto_config() -> Config:
    return Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)


class AwsSim:
    """A running moto server holding one simulated cluster's AWS account."""

    def __init__(self, seed: AwsSeed) -> None:
        self.seed = seed
        self.account_id = _next_account_id()
        self.instance_ids: dict[str, str] = {}   # node name -> instance id
        self.vpc_id = ""
        self.subnet_ids: dict[str, str] = {}     # zone -> subnet id (the first private one)
        self.security_group_ids: dict[str, str] = {}   # group name -> id
        self.env: dict[str, str] = {}
        self._server: ThreadedMotoServer | None = None
        self._endpoint = ""
        self._session: boto3.Session | None = None
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> AwsSim:
        """Start moto on 127.0.0.1 (free port), create this account's credentials, seed it."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self._endpoint = f"http://{host}:{port}"
        key_id, secret = self._create_account_credentials()
        self.env = {
            "AWS_ENDPOINT_URL": self._endpoint,
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": self.seed.region,
        }
        self._session = boto3.Session(aws_access_key_id=key_id, aws_secret_access_key=secret,
                                      region_name=self.seed.region)
        try:
            self._seed()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the moto server (idempotent). The account's state is dropped with it."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            _forget_account(self.account_id)

    def client(self, service: str) -> Any:
        """A boto3 client for this account (the sim's own seeding and tests), one per service: creating a client
        builds its class from the service model (~50 ms), which seeding paid once per node (8% of the simulated
        cluster's CPU at 200 nodes). boto3 clients are safe to share between threads (Karpenter's launches)."""
        if self._session is None:
            raise AwsSimError("the simulated AWS account is not started")
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = self._session.client(service, endpoint_url=self._endpoint,
                                                              config=_boto_config())
            return self._clients[service]

    # -- for the simulated Karpenter -------------------------------------------------------
    def launch_instance(self, instance_type: str, zone: str, tags: Mapping[str, str] | None = None, *,
                        instance_id: str | None = None) -> tuple[str, datetime]:
        """Run one instance in the zone's subnet with the cluster's node security groups.

        Returns (instance id, launch time as an aware UTC datetime). `instance_id` asks for that id
        (the scenario's deterministic one). Blocking: call it from the event loop with `asyncio.to_thread`.
        """
        if zone not in self.subnet_ids:
            raise AwsSimError(f"no simulated subnet in zone {zone!r}; zones: {sorted(self.subnet_ids)}")
        all_tags = {"eks:cluster-name": self.seed.cluster,
                    f"kubernetes.io/cluster/{self.seed.cluster}": "owned", **(tags or {})}
        ec2 = self.client("ec2")
        with _requested_instance_id(instance_id):
            resp = ec2.run_instances(
                ImageId=_AMI_ID, InstanceType=instance_type, MinCount=1, MaxCount=1,
                SubnetId=self.subnet_ids[zone], SecurityGroupIds=self._sgs_for(),
                TagSpecifications=[{"ResourceType": "instance", "Tags": _tag_list(all_tags)}],
            )
        inst = resp["Instances"][0]
        if instance_id and inst["InstanceId"] != instance_id:
            raise AwsSimError(f"moto gave {inst['InstanceId']} instead of the requested {instance_id}")
        launched: datetime = inst["LaunchTime"]
        if launched.tzinfo is None:
            launched = launched.replace(tzinfo=timezone.utc)
        return inst["InstanceId"], launched.astimezone(timezone.utc)

    def terminate_instance(self, instance_id: str) -> None:
        """Terminate an instance (Karpenter deleting a NodeClaim)."""
        self.client("ec2").terminate_instances(InstanceIds=[instance_id])

    def provider_id(self, node_name: str) -> str:
        """`aws:///<az>/<instance-id>` for a seeded node, as the kubelet would report it."""
        zone = next(n.zone for n in self.seed.nodes if n.name == node_name)
        return f"aws:///{zone}/{self.instance_ids[node_name]}"

    # -- seeding ---------------------------------------------------------------------------
    def _create_account_credentials(self) -> tuple[str, str]:
        account = self.account_id
        bootstrap = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                  region_name=self.seed.region)
        iam = bootstrap.client("iam", endpoint_url=self._endpoint, config=_boto_config())

        def to_account(request: Any, **_: Any) -> None:
            request.headers["x-moto-account-id"] = account

        iam.meta.events.register("before-sign.iam.*", to_account)
        iam.create_user(UserName="gpucluster-sim")
        key = iam.create_access_key(UserName="gpucluster-sim")["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def _seed(self) -> None:
        seed, ec2 = self.seed, self.client("ec2")
        faults = seed.faults
        hide = faults.get("aws-missing-discovery-tags")
        hidden = set() if hide is None else _missing_tag_targets(hide)
        drop = set() if "aws-sg-no-self-rule" not in faults else _fault_directions(faults["aws-sg-no-self-rule"])
        discovery = {seed.discovery_tag_key: seed.cluster}
        self.vpc_id = ec2.create_vpc(
            CidrBlock=seed.vpc_cidr,
            TagSpecifications=[{"ResourceType": "vpc", "Tags": _tag_list({"Name": f"{seed.cluster}-vpc"})}],
        )["Vpc"]["VpcId"]
        first: dict[bool, dict[str, str]] = {True: {}, False: {}}   # public? -> zone -> first subnet id
        for subnet in seed.subnet_seeds():
            kind = "public" if subnet.public else "private"
            tags = {"Name": f"{seed.cluster}-{kind}-{subnet.zone}",
                    f"kubernetes.io/role/{'elb' if subnet.public else 'internal-elb'}": "1",
                    **discovery, **subnet.tags}
            if "subnets" in hidden:
                tags.pop(seed.discovery_tag_key)
            subnet_id = ec2.create_subnet(
                VpcId=self.vpc_id, CidrBlock=subnet.cidr, AvailabilityZone=subnet.zone,
                TagSpecifications=[{"ResourceType": "subnet", "Tags": _tag_list(tags)}],
            )["Subnet"]["SubnetId"]
            first[subnet.public].setdefault(subnet.zone, subnet_id)
        self.subnet_ids = {**first[True], **first[False]}   # nodes go to private subnets when there are
        for group in seed.group_seeds():
            tags = {"Name": group.name, **discovery, **group.tags}
            if "security-groups" in hidden:
                tags.pop(seed.discovery_tag_key)
            group_id = str(ec2.create_security_group(
                GroupName=group.name, Description=group.description or group.name, VpcId=self.vpc_id,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": _tag_list(tags)}],
            )["GroupId"])
            self.security_group_ids[group.name] = group_id
            if group.self_rule:
                self._self_rules(ec2, group_id, drop)
        for role in seed.role_names():
            self._seed_role(role)
        for node in seed.nodes:
            instance_id, _ = self.launch_instance(
                node.instance_type, node.zone,
                {"Name": node.name, "gpucluster.io/node": node.name,
                 **({"karpenter.sh/nodepool": node.nodepool} if node.nodepool else {})},
                instance_id=node.instance_id)
            self.instance_ids[node.name] = instance_id
        if "aws-no-efa-support" in faults:
            self._hide_efa(faults["aws-no-efa-support"])

    def _self_rules(self, ec2: Any, group_id: str, drop: set[str]) -> None:
        """Inbound and outbound 'All traffic' to/from the group itself (minus the faulted directions)."""
        itself = [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id}]}]
        if "ingress" not in drop:
            ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=itself)
        if "egress" not in drop:
            ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=itself)

    def _seed_role(self, role: str) -> None:
        trust = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":'
                 '{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
        # (AWS managed policies are not attached: moto only knows them with MOTO_LOAD_AWS_MANAGED_POLICIES)
        self.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=trust,
                                       Tags=[{"Key": self.seed.discovery_tag_key, "Value": self.seed.cluster}])

    def _sgs_for(self) -> list[str]:
        return list(self.security_group_ids.values())

    def _hide_efa(self, params: Mapping[str, Any]) -> None:
        """Make this account's DescribeInstanceTypes report EfaSupported=false for some types.

        moto answers DescribeInstanceTypes from AWS's real catalogue (p5.48xlarge: 32 EFA), so a GPU
        type "without EFA" is simulated by wrapping this account+region's backend only.
        """
        types = params.get("instance_types")
        if isinstance(types, str):
            types = [types]
        if not types:   # default: every node type that really supports EFA
            known = sorted({n.instance_type for n in self.seed.nodes})
            listed = self.client("ec2").describe_instance_types(InstanceTypes=known)["InstanceTypes"] if known else []
            types = [t["InstanceType"] for t in listed if t.get("NetworkInfo", {}).get("EfaSupported")]
        _patch_instance_types(self.account_id, self.seed.region, set(types))


# -- helpers -------------------------------------------------------------------------------
_AMI_ID = "ami-12c6146b"   # one of the AMIs moto ships (no AMI lookup needed for run_instances)


# moto 5 cannot be told an instance's id, but makes it with moto.ec2.models.instances.random_instance_id:
# that name is wrapped once to hand out a requested id to the one run_instances call that asked for it.
# Every launch of this module holds _ID_LOCK, so no other simulated cluster takes it meanwhile.
_ID_LOCK = threading.Lock()
_REQUESTED_IDS: list[str] = []


@contextlib.contextmanager
def _requested_instance_id(instance_id: str | None) -> Iterator[None]:
    with _ID_LOCK:
        if instance_id is None:
            yield
            return
        _install_id_hook()
        _REQUESTED_IDS.append(instance_id)
        try:
            yield
        finally:
            _REQUESTED_IDS.clear()


def _install_id_hook() -> None:
    from moto.ec2.models import instances
    original = instances.random_instance_id
    if getattr(original, "gpucluster_hook", False):
        return

    def random_instance_id() -> str:
        return _REQUESTED_IDS.pop(0) if _REQUESTED_IDS else original()

    random_instance_id.gpucluster_hook = True   # type: ignore[attr-defined]
    instances.random_instance_id = random_instance_id


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _next_account_id() -> str:
    with _ACCOUNT_LOCK:
        return f"{next(_ACCOUNT_IDS):012d}"


def _forget_account(account_id: str) -> None:
    """Drop an account's moto state so long test sessions do not accumulate it."""
    from moto.backends import get_backend
    for service in ("ec2", "iam", "s3", "sts"):
        backends = get_backend(service)   # type: ignore[call-overload]
        if account_id in backends:
            del backends[account_id]


def _fault_directions(params: Mapping[str, Any]) -> set[str]:
    direction = str(params.get("direction", "both"))
    if direction not in ("ingress", "egress", "both"):
        raise AwsSimError(f"aws-sg-no-self-rule: direction must be ingress, egress or both, given {direction!r}")
    return {"ingress", "egress"} if direction == "both" else {direction}


def _missing_tag_targets(params: Mapping[str, Any]) -> set[str]:
    resources = str(params.get("resources", "both"))
    if resources not in ("subnets", "security-groups", "both"):
        raise AwsSimError("aws-missing-discovery-tags: resources must be subnets, security-groups or both, "
                          f"given {resources!r}")
    return {"subnets", "security-groups"} if resources == "both" else {resources}


def _patch_instance_types(account_id: str, region: str, no_efa: set[str]) -> None:
    from moto.ec2.models import ec2_backends
    backend = ec2_backends[account_id][region]
    original: Callable[..., list[Any]] = backend.describe_instance_types

    def describe_instance_types(instance_types: list[str] | None = None, filters: Any = None) -> list[Any]:
        result = []
        for item in original(instance_types, filters):
            if item.get("InstanceType") in no_efa:
                item = copy.deepcopy(item)   # moto's catalogue entries are shared by all accounts
                network = dict(item.get("NetworkInfo", {}))
                network["EfaSupported"] = False
                network.pop("EfaInfo", None)
                item["NetworkInfo"] = network
            result.append(item)
        return result

    # an instance attribute shadows the method for this account+region's backend only
    setattr(backend, "describe_instance_types", describe_instance_types)


def aws_env_keys() -> tuple[str, ...]:
    """The environment variables `AwsSim.env` sets (for callers that scrub an environment)."""
    return ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def start_aws(scenario: Any) -> AwsSim | None:
    """Start and seed the simulated AWS account for a scenario; None when it has no `aws:` section.

    `scenario` is a `sim.scenario.Scenario` or an `AwsSeed` built by hand.
    """
    seed = scenario if isinstance(scenario, AwsSeed) else seed_from_scenario(scenario)
    if seed is None:
        return None
    return AwsSim(seed).start()


def seed_from_scenario(scenario: Any) -> AwsSeed | None:
    """The AwsSeed of a `sim.scenario.Scenario`; None when its `aws:` section is not enabled."""
    aws = scenario.aws
    if not aws.enabled:
        return None
    cluster = aws.cluster_name or scenario.cluster.name
    roles = [nc.manifest(scenario.cluster)["spec"]["role"] for nc in scenario.nodeclasses]
    if aws.node_role:
        roles.append(aws.node_role)
    faults: dict[str, dict[str, Any]] = {}
    for fault in scenario.faults:
        if fault.kind.startswith("aws-"):
            if fault.kind not in AWS_FAULTS:
                raise AwsSimError(f"unknown AWS fault {fault.kind!r}; known: {', '.join(AWS_FAULTS)}")
            faults[fault.kind] = dict(fault.params)
    return AwsSeed(
        cluster=cluster, region=aws.region or scenario.cluster.region,
        nodes=[AwsNodeSeed(n.name, n.group.instance_type, n.zone, n.nodepool, n.instance_id)
               for n in scenario.expand_nodes()],
        zones=list(scenario.cluster.zones),
        subnets=[SubnetSeed(s.zone, s.cidr, s.public, dict(s.tags)) for s in aws.subnets],
        security_groups=[SecurityGroupSeed(g.name, g.description, g.self_rule, dict(g.tags))
                         for g in aws.security_groups],
        roles=list(dict.fromkeys(roles)), faults=faults, discovery_tag_key=aws.discovery_tag_key,
        vpc_cidr=aws.vpc_cidr)
