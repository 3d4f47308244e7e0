"""The AWS side of the cluster (the only plugin-side importer of boto3): session, read-only checks, S3 upload."""
from __future__ import annotations

from .errors import AwsCallFailed, AwsUnavailable, NoCredentials, NotOnAws

__all__ = ["AwsCallFailed", "AwsUnavailable", "NoCredentials", "NotOnAws"]
