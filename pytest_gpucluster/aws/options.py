"""Command-line options of the AWS checks (`--gpucluster-aws-profile`, `--gpucluster-region`) and reading them back."""
from __future__ import annotations

from typing import Any

import pytest

AWS_PROFILE_OPTION = "--gpucluster-aws-profile"
REGION_OPTION = "--gpucluster-region"


def add_aws_options(group: Any) -> None:
    """Called by plugin.py with the plugin's option group."""
    group.addoption(
        AWS_PROFILE_OPTION, action="store", default=None, dest="gpucluster_aws_profile", metavar="NAME",
        help="AWS profile for the aws checks (default: boto3's chain, AWS_PROFILE, or the kubeconfig's exec env)")
    group.addoption(
        REGION_OPTION, action="store", default=None, dest="gpucluster_region", metavar="REGION",
        help="AWS region of the cluster (default: from the kubeconfig or the nodes' providerIDs)")


def aws_profile(config: pytest.Config) -> str | None:
    value = config.getoption("gpucluster_aws_profile", default=None)
    return str(value) if value else None


def region(config: pytest.Config) -> str | None:
    value = config.getoption("gpucluster_region", default=None)
    if value and not _looks_like_region(str(value)):
        raise pytest.UsageError(f"{REGION_OPTION} must be an AWS region such as us-west-2, given: {value!r}")
    return str(value) if value else None


def _looks_like_region(value: str) -> bool:
    parts = value.split("-")
    return len(parts) >= 3 and parts[-1].isdigit() and len(parts[0]) == 2
