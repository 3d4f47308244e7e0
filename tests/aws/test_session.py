"""Targeting (kubeconfig, providerIDs) and sessions: no credentials and no region give one clear reason."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pytest_gpucluster.aws.errors import AwsUnavailable, NoCredentials, NotOnAws
from pytest_gpucluster.aws.session import (
    ClusterTarget, open_session, parse_provider_id, region_of_zone, require_aws, target_from_kubeconfig,
    target_from_provider_ids,
)
from pytest_gpucluster.sim_contract.handoff import AwsSettings
from pytest_gpucluster.sim.aws import AwsSim

from .conftest import REGION


def _kubeconfig(tmp_path: Path, cluster_name: str, server: str, user: dict) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": cluster_name, "cluster": {"server": server}}],
        "contexts": [{"name": "ctx", "context": {"cluster": cluster_name, "user": "u"}}],
        "users": [{"name": "u", "user": user}]}))
    return path


def test_eks_exec_kubeconfig_names_cluster_region_and_profile(tmp_path: Path) -> None:
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
                     "args": ["--region", "eu-central-1", "eks", "get-token", "--cluster-name", "train-prod",
                              "--output", "json"],
                     "env": [{"name": "AWS_PROFILE", "value": "ml-admin"}]}}
    path = _kubeconfig(tmp_path, "train-prod.eu-central-1.eksctl.io",
                       "https://ABCDEF.gr7.eu-central-1.eks.amazonaws.com", user)
    target = target_from_kubeconfig(path)
    assert (target.cluster_name, target.region, target.profile) == ("train-prod", "eu-central-1", "ml-admin")


def test_cluster_arn_kubeconfig(tmp_path: Path) -> None:
    arn = "arn:aws:eks:ap-northeast-2:123456789012:cluster/gpu-lab"
    path = _kubeconfig(tmp_path, arn, "https://X.yl4.ap-northeast-2.eks.amazonaws.com", {"token": "t"})
    target = target_from_kubeconfig(path)
    assert (target.cluster_name, target.region) == ("gpu-lab", "ap-northeast-2")
    assert any("cluster ARN" in s for s in target.sources)


def test_plain_kubeconfig_names_nothing(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path, "kind", "https://127.0.0.1:6443", {"token": "t"})
    assert target_from_kubeconfig(path) == ClusterTarget()
    assert target_from_kubeconfig(tmp_path / "missing") == ClusterTarget()


@pytest.mark.parametrize("provider_id, expected", [
    ("aws:///us-west-2a/i-0abc123def4567890", ("us-west-2a", "i-0abc123def4567890")),
    ("aws:///us-west-2-lax-1a/i-0abc", ("us-west-2-lax-1a", "i-0abc")),
    ("kind://docker/kind/kind-control-plane", None),
    ("", None),
])
def test_parse_provider_id(provider_id: str, expected: tuple[str, str] | None) -> None:
    assert parse_provider_id(provider_id) == expected


def test_region_from_zones() -> None:
    assert region_of_zone("us-west-2-lax-1a") == "us-west-2"
    assert region_of_zone("us-gov-west-1b") == "us-gov-west-1"
    target = target_from_provider_ids(["aws:///eu-west-1a/i-1", "aws:///eu-west-1b/i-2", "aws:///us-east-1a/i-3"])
    assert target.region == "eu-west-1"


def test_not_on_aws() -> None:
    with pytest.raises(NotOnAws, match="no node has an aws:/// providerID"):
        require_aws(["kind://docker/x/y"], ClusterTarget())
    require_aws(["aws:///us-west-2a/i-1"], ClusterTarget())


@pytest.fixture
def empty_credential_chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("empty_credential_chain")
def test_no_credentials_is_one_clear_reason() -> None:
    with pytest.raises(NoCredentials) as info:
        open_session(region="us-west-2")
    assert info.value.reason.startswith("no AWS credentials: boto3's chain")
    assert "--gpucluster-aws-profile" in info.value.reason


@pytest.mark.usefixtures("empty_credential_chain")
def test_unknown_profile_and_no_region(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NoCredentials, match="AWS profile 'nope' is not in ~/.aws/config"):
        open_session(profile="nope", region="us-west-2")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(AwsUnavailable, match="no AWS region"):
        open_session()


def test_region_precedence_and_account(healthy: AwsSim) -> None:
    session = open_session(env=healthy.env, target=ClusterTarget(region="eu-west-1"))
    assert session.region == "eu-west-1" and session.account_id == healthy.account_id
    assert open_session(env=healthy.env, region="us-east-2", target=ClusterTarget(region="eu-west-1")).region \
        == "us-east-2"
    assert open_session(env=healthy.env).region == REGION


def test_unreachable_endpoint_is_unavailable_not_a_traceback(healthy: AwsSim) -> None:
    env = {**healthy.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    with pytest.raises(AwsUnavailable, match="cannot reach AWS STS in us-west-2 .http://127.0.0.1:9"):
        open_session(env=env)


def test_the_sim_handoff_settings_are_used_explicitly_not_from_os_environ(healthy: AwsSim,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Run.aws_env (the hand-off's aws.json as AWS_* names) reaches boto3 as arguments: stray AWS_* variables
    in the process environment neither help nor hurt."""
    settings = AwsSettings.from_env(healthy.env)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASTRAY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stray")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    session = open_session(env=settings.as_env())
    assert (session.endpoint_url, session.region, session.account_id) == (
        settings.endpoint_url, settings.region, healthy.account_id)
