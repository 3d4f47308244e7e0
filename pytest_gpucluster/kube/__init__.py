"""Cluster access layer: the only package that imports `kubernetes` (client, errors, probes, fleets, discovery)."""
from __future__ import annotations

from .client import Cluster
from .errors import (AlreadyExists, ClusterError, Conflict, Forbidden, Gone, Invalid, NotFound, ServerError,
                     TooManyRequests, Unauthorized, Unreachable)
from .kubeconfig import KubeconfigError
from .probes import ProbeContext, ProbeResult, ProbeSpec

__all__ = ["AlreadyExists", "Cluster", "ClusterError", "Conflict", "Forbidden", "Gone", "Invalid",
           "KubeconfigError", "NotFound", "ProbeContext", "ProbeResult", "ProbeSpec", "ServerError",
           "TooManyRequests", "Unauthorized", "Unreachable"]
