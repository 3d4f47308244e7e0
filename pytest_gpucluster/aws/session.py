"""Which AWS account, region and EKS cluster a run talks to, and the boto3 session (with the shared retry policy) to do it."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import boto3
import botocore.exceptions
import botocore.session
import yaml
from botocore.config import Config

from .. import retry
from .errors import AwsCallFailed, AwsUnavailable, NoCredentials, NotOnAws

# When set, sees every session opened and every call made at this boundary: bundle/recording.py records them,
# bundle/replay.py answers them from a recording (`gpucluster judge`). Process-wide: one pytest session per process.
TAP: Any = None

_PROVIDER_ID = re.compile(r"^aws:///(?P<zone>[a-z0-9-]+)/(?P<instance>i-[0-9a-f]+)$")
_REGION = re.compile(r"^(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d+)")
_EKS_ARN = re.compile(r"^arn:aws[a-z-]*:eks:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):cluster/(?P<name>[^/]+)$")
_EKS_ENDPOINT = re.compile(r"\.(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d+)\.eks\.amazonaws\.com")


@dataclass(frozen=True)
class ClusterTarget:
    """The EKS cluster a run is about, as far as the kubeconfig and the nodes tell."""

    cluster_name: str | None = None
    region: str | None = None
    profile: str | None = None          # AWS_PROFILE from the kubeconfig's exec env, if any
    sources: tuple[str, ...] = ()       # how each value was found, for the report

    def merged(self, other: ClusterTarget) -> ClusterTarget:
        """Values of self win; other fills the gaps."""
        return ClusterTarget(self.cluster_name or other.cluster_name, self.region or other.region,
                             self.profile or other.profile, self.sources + other.sources)


def parse_provider_id(provider_id: str) -> tuple[str, str] | None:
    """`aws:///us-west-2a/i-0abc` -> ("us-west-2a", "i-0abc"); None for non-EC2 provider ids."""
    match = _PROVIDER_ID.match(provider_id or "")
    return (match["zone"], match["instance"]) if match else None


def region_of_zone(zone: str) -> str | None:
    """`us-west-2a` / `us-west-2-lax-1a` -> `us-west-2`; None when it is not an AWS zone name."""
    match = _REGION.match(zone)
    return match["region"] if match else None


def target_from_provider_ids(provider_ids: Iterable[str]) -> ClusterTarget:
    """The region of the nodes' availability zones (the most common one)."""
    regions: dict[str, int] = {}
    for pid in provider_ids:
        parsed = parse_provider_id(pid)
        region = region_of_zone(parsed[0]) if parsed else None
        if region:
            regions[region] = regions.get(region, 0) + 1
    if not regions:
        return ClusterTarget()
    region = max(regions, key=lambda r: regions[r])
    return ClusterTarget(region=region, sources=(f"region {region} from node providerIDs",))


def target_from_kubeconfig(path: str | os.PathLike[str] | None, context: str | None = None) -> ClusterTarget:
    """Cluster name / region from an EKS kubeconfig: exec args, cluster ARN or endpoint host."""
    config = _load_kubeconfig(path, context)
    if config is None:
        return ClusterTarget()
    ctx_name = context or config.get("current-context")
    ctx = _named(config.get("contexts"), ctx_name).get("context") or {}
    cluster_entry = _named(config.get("clusters"), ctx.get("cluster"))
    user = (_named(config.get("users"), ctx.get("user")).get("user") or {})
    name = region = profile = None
    sources: list[str] = []
    exec_spec = user.get("exec") or {}
    args = [str(a) for a in exec_spec.get("args") or []]
    name = _flag(args, "--cluster-name") or _flag(args, "--cluster-id") or _flag(args, "-i")
    region = _flag(args, "--region")
    if name or region:
        sources.append(f"kubeconfig user {ctx.get('user')!r} exec args")
    for item in exec_spec.get("env") or []:
        if isinstance(item, dict) and item.get("name") == "AWS_PROFILE":
            profile = str(item.get("value") or "") or None
    for candidate in (ctx.get("cluster"), cluster_entry.get("name")):
        arn = _EKS_ARN.match(str(candidate or ""))
        if arn:
            name, region = name or arn["name"], region or arn["region"]
            sources.append(f"cluster ARN {candidate}")
            break
    server = str((cluster_entry.get("cluster") or {}).get("server") or "")
    endpoint = _EKS_ENDPOINT.search(server)
    if endpoint and not region:
        region = endpoint["region"]
        sources.append(f"EKS endpoint {server}")
    return ClusterTarget(name, region, profile, tuple(sources))


def _load_kubeconfig(path: str | os.PathLike[str] | None, context: str | None) -> dict[str, Any] | None:
    candidates = [Path(path)] if path else [
        Path(p) for p in os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config")).split(os.pathsep) if p]
    for candidate in candidates:
        try:
            loaded = yaml.safe_load(candidate.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(loaded, dict) and (context is None or _named(loaded.get("contexts"), context)):
            return loaded
    return None


def _named(items: Any, name: Any) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    return {}


def _flag(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _boto_config() -> Config:
    # botocore's own retries are off: the shared policy in retry.py is the one retry layer.
    return Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60)


@dataclass
class AwsSession:
    """A boto3 session bound to one region (and, in simulation, the moto endpoint)."""

    boto: boto3.Session
    region: str
    endpoint_url: str | None = None
    target: ClusterTarget = field(default_factory=ClusterTarget)
    account_id: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.boto.client(
                service, region_name=self.region, endpoint_url=self.endpoint_url, config=_boto_config())
        return self._clients[service]

    def call(self, service: str, operation: str, *, _policy: retry.Policy | None = None,
             **params: Any) -> dict[str, Any]:
        """One API call under the shared AWS retry policy (reads: retry.AWS_READ; pass `_policy` for
        idempotent writes); failures become AwsCallFailed / NoCredentials."""
        if TAP is not None:
            return dict(TAP.aws_call(service, operation, params, lambda: self._call(service, operation, _policy,
                                                                                   **params)))
        return self._call(service, operation, _policy, **params)

    def _call(self, service: str, operation: str, _policy: retry.Policy | None, **params: Any) -> dict[str, Any]:
        method = getattr(self.client(service), operation)
        try:
            result: dict[str, Any] = (_policy.call(method, **params) if _policy is not None
                                      else retry.aws_call(method, **params))
        except botocore.exceptions.NoCredentialsError as exc:
            raise NoCredentials(f"no AWS credentials for {service}:{operation}: {exc}") from exc
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            raise AwsCallFailed(f"{service}:{operation}", str(error.get("Code", "?")),
                                str(error.get("Message", exc))) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise AwsCallFailed(f"{service}:{operation}", type(exc).__name__, str(exc),
                                unreachable=isinstance(exc, _UNREACHABLE)) from exc
        return result

    def collect(self, service: str, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """All items under `key` across pages (NextToken / Marker), each page under the retry policy."""
        items: list[dict[str, Any]] = []
        token_in, token_out = _PAGE_TOKENS.get(operation, ("NextToken", "NextToken"))
        while True:
            page = self.call(service, operation, **params)
            items.extend(page.get(key, []))
            token = page.get(token_out)
            if not token:
                return items
            params = {**params, token_in: token}


_UNREACHABLE = (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError)
_PAGE_TOKENS = {"list_objects_v2": ("ContinuationToken", "NextContinuationToken")}


_LOADER: Any = None     # botocore's service-model loader, shared by every session of this process


def _boto_session(**kwargs: Any) -> boto3.Session:
    """A boto3 session whose service-model loader is shared by every session this process opens: each new session
    read and decoded the EC2 and STS models again (megabytes of JSON that never change during a run)."""
    global _LOADER
    core = botocore.session.Session()
    if _LOADER is None:
        _LOADER = core.get_component("data_loader")
    else:
        core.register_component("data_loader", _LOADER)
    session = boto3.Session(botocore_session=core, **kwargs)
    _LOADER.search_paths[:] = list(dict.fromkeys(_LOADER.search_paths))   # boto3 adds its folder per session
    core.get_scoped_config()   # reads the profile now: an unknown one raises ProfileNotFound, as boto3.Session does
    return session


def open_session(*, profile: str | None = None, region: str | None = None,
                 target: ClusterTarget | None = None, env: Mapping[str, str] | None = None,
                 verify: bool = True) -> AwsSession:
    """A session from boto3's standard chain, or, when `env` is given, with the endpoint, region and credentials
    it names (AWS_* keys: the simulated cluster's hand-off, `Session.aws_env`), passed explicitly, not via os.environ.

    Region: `region` (--gpucluster-region) > the cluster's region > the profile/env default.
    Raises NoCredentials / AwsUnavailable with one sentence saying why.
    """
    if TAP is not None:
        opened: AwsSession = TAP.open_session(lambda: _open_session(profile=profile, region=region, target=target,
                                                                   env=env, verify=verify))
        return opened
    return _open_session(profile=profile, region=region, target=target, env=env, verify=verify)


def _open_session(*, profile: str | None, region: str | None, target: ClusterTarget | None,
                  env: Mapping[str, str] | None, verify: bool) -> AwsSession:
    target = target or ClusterTarget()
    endpoint = None
    try:
        if env:
            boto = _boto_session(aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                                 aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
                                 aws_session_token=env.get("AWS_SESSION_TOKEN"),
                                 region_name=env.get("AWS_DEFAULT_REGION"))
            endpoint = env.get("AWS_ENDPOINT_URL")
        else:
            boto = _boto_session(profile_name=profile or target.profile)
    except botocore.exceptions.ProfileNotFound as exc:
        raise NoCredentials(f"AWS profile {profile or target.profile!r} is not in ~/.aws/config or "
                            "~/.aws/credentials; fix --gpucluster-aws-profile / AWS_PROFILE") from exc
    chosen = region or target.region or boto.region_name
    if not chosen:
        raise AwsUnavailable("no AWS region: the kubeconfig and node providerIDs do not name one; "
                             "pass --gpucluster-region or set AWS_REGION")
    try:
        credentials = boto.get_credentials()
    except botocore.exceptions.BotoCoreError as exc:
        raise NoCredentials(f"AWS credentials could not be loaded: {exc}") from exc
    if credentials is None:
        raise NoCredentials("no AWS credentials: boto3's chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws, "
                            "SSO, instance/pod role) found none; pass --gpucluster-aws-profile or run with a role")
    session = AwsSession(boto, chosen, endpoint, target)
    if verify:
        try:
            session.account_id = session.call("sts", "get_caller_identity").get("Account")
        except AwsCallFailed as exc:
            if exc.unreachable:
                raise AwsUnavailable(f"cannot reach AWS STS in {chosen} ({endpoint or 'default endpoint'}): "
                                     f"{exc.message}") from exc
            raise NoCredentials(f"AWS rejected the credentials (sts:GetCallerIdentity in {chosen}): "
                                f"{exc.code}: {exc.message}") from exc
    return session


def require_aws(provider_ids: Iterable[str], target: ClusterTarget) -> None:
    """Raise NotOnAws unless some node runs on EC2 or the kubeconfig is an EKS one."""
    if any(parse_provider_id(p) for p in provider_ids) or target.cluster_name:
        return
    raise NotOnAws("the cluster is not on AWS: no node has an aws:/// providerID and the kubeconfig "
                   "names no EKS cluster")
