"""Errors of the AWS side: why AWS checks cannot run (one clear reason each) and failed AWS calls."""
from __future__ import annotations


class AwsUnavailable(Exception):
    """AWS checks cannot run here; `reason` is one sentence fit for a skip message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoCredentials(AwsUnavailable):
    """boto3's credential chain found nothing (or the profile named does not exist)."""


class NotOnAws(AwsUnavailable):
    """The cluster does not look like EKS / EC2 (no aws:/// providerIDs, no EKS kubeconfig)."""


class AwsCallFailed(Exception):
    """An AWS API call failed after the shared retry policy gave up; says which call and why."""

    def __init__(self, operation: str, code: str, message: str, *, unreachable: bool = False) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message
        self.unreachable = unreachable   # no answer at all (connection/timeout), not an AWS error
