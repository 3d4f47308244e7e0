"""Typed cluster errors: every ApiException / connection failure becomes one of these, raised `from` it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

RBAC_MANIFEST = "deploy/rbac.yaml"


@dataclass
class CallSite:
    """What we were doing when the call failed, so messages can say it."""

    verb: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    server: str | None = None

    def describe(self) -> str:
        target = self.resource + (f"/{self.name}" if self.name else "")
        where = f" in namespace {self.namespace}" if self.namespace else " (cluster-scoped)"
        return f"{self.verb} {target}{where}"


class ClusterError(Exception):
    """Base class for errors talking to the cluster."""

    transient = False
    status: int | None = None

    def __init__(self, message: str, *, site: CallSite | None = None, status: int | None = None,
                 reason: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.site = site
        self.status = status if status is not None else type(self).status
        self.reason = reason
        self.retry_after = retry_after


class Forbidden(ClusterError):
    status = 403


class Unauthorized(ClusterError):
    status = 401


class NotFound(ClusterError):
    status = 404


class Conflict(ClusterError):
    status = 409


class AlreadyExists(Conflict):
    pass


class Invalid(ClusterError):
    status = 422


class Gone(ClusterError):
    status = 410


class TooManyRequests(ClusterError):
    status = 429
    transient = True


class ServerError(ClusterError):
    transient = True


class Unreachable(ClusterError):
    """The API server could not be reached (DNS, refused, timeout, reset)."""

    transient = True


def _status_body(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.strip().startswith("{"):
        try:
            parsed = json.loads(body)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def from_api_exception(exc: Any, site: CallSite) -> ClusterError:
    """Map a kubernetes ApiException (duck-typed: .status, .reason, .body, .headers) to a typed error."""
    status = int(getattr(exc, "status", 0) or 0)
    body = _status_body(getattr(exc, "body", None))
    reason = body.get("reason") or getattr(exc, "reason", None)
    detail = body.get("message") or str(getattr(exc, "reason", "")) or "no message"
    what = site.describe()
    retry_after = _retry_after(getattr(exc, "headers", None))
    if status == 0:
        return Unreachable(f"cannot reach the Kubernetes API at {site.server or '?'} ({what}): {detail}",
                           site=site, reason=reason)
    if status == 403:
        return Forbidden(
            f"forbidden: {what} (verb={site.verb}, resource={site.resource}, "
            f"namespace={site.namespace or '-'}): {detail}. The suite's identity needs the permissions in "
            f"{RBAC_MANIFEST}; apply it with `kubectl apply -f {RBAC_MANIFEST}` and bind it to the identity.",
            site=site, reason=reason)
    if status == 401:
        return Unauthorized(
            f"unauthorized at {site.server or 'the API server'} ({what}): credentials expired or invalid "
            f"({detail}). Refresh them (e.g. `aws eks update-kubeconfig --name <cluster>`).",
            site=site, reason=reason)
    classes: dict[int, type[ClusterError]] = {404: NotFound, 410: Gone, 422: Invalid, 429: TooManyRequests}
    if status == 409:
        cls: type[ClusterError] = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif status >= 500:
        cls = ServerError
    else:
        cls = classes.get(status, ClusterError)
    return cls(f"{what}: HTTP {status} {reason or ''}: {detail}".replace("  ", " "),
               site=site, status=status, reason=reason, retry_after=retry_after)


def unreachable(exc: BaseException, site: CallSite) -> Unreachable:
    """A connection-level failure (urllib3 MaxRetryError, ProtocolError, timeouts, OSError)."""
    return Unreachable(f"cannot reach the Kubernetes API at {site.server or '?'} ({site.describe()}): "
                       f"{type(exc).__name__}: {exc}. Check the server URL in your kubeconfig, the network "
                       f"path (VPN, security groups) and that the endpoint is public or you are inside the VPC.",
                       site=site)
