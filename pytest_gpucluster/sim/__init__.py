"""The simulated EKS GPU cluster: a Kubernetes API over HTTP backed by an in-memory store, controllers and fake tools."""
from __future__ import annotations
