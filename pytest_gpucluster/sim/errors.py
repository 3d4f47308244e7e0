"""API errors of the simulated cluster: one exception per Kubernetes Status reason, turned into Status bodies by the server."""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A Kubernetes API failure with its HTTP code, Status reason and message."""

    code: int = 500
    reason: str = "InternalError"

    def __init__(self, message: str, *, code: int | None = None, reason: str | None = None,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason
        self.details = details or {}
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        """The `Status` body the real apiserver returns for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(kind: str | None, name: str | None, group: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    return details


class NotFound(ApiError):
    code = 404
    reason = "NotFound"

    @classmethod
    def of(cls, plural: str, group: str, name: str) -> "NotFound":
        what = f"{plural}.{group}" if group else plural
        return cls(f'{what} "{name}" not found', details=_details(plural, name, group))


class AlreadyExists(ApiError):
    code = 409
    reason = "AlreadyExists"

    @classmethod
    def of(cls, plural: str, group: str, name: str) -> "AlreadyExists":
        what = f"{plural}.{group}" if group else plural
        return cls(f'{what} "{name}" already exists', details=_details(plural, name, group))


class Conflict(ApiError):
    code = 409
    reason = "Conflict"

    @classmethod
    def stale(cls, plural: str, group: str, name: str) -> "Conflict":
        what = f"{plural}.{group}" if group else plural
        return cls(f'Operation cannot be fulfilled on {what} "{name}": the object has been modified; '
                   "please apply your changes to the latest version and try again",
                   details=_details(plural, name, group))


class Invalid(ApiError):
    code = 422
    reason = "Invalid"

    @classmethod
    def of(cls, kind: str, name: str, causes: list[tuple[str, str]], group: str = "") -> "Invalid":
        """`causes` is a list of (field, message), e.g. ("metadata.name", "Required value: name is required")."""
        text = "; ".join(f"{field}: {msg}" for field, msg in causes)
        details = _details(kind, name, group)
        details["causes"] = [{"reason": "FieldValueInvalid", "message": msg, "field": field}
                             for field, msg in causes]
        shown = name or "<unknown>"
        return cls(f'{kind} "{shown}" is invalid: {text}', details=details)


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class Forbidden(ApiError):
    code = 403
    reason = "Forbidden"


class Unauthorized(ApiError):
    code = 401
    reason = "Unauthorized"


class Gone(ApiError):
    code = 410
    reason = "Expired"


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


class TooManyRequests(ApiError):
    code = 429
    reason = "TooManyRequests"


class ServiceUnavailable(ApiError):
    code = 503
    reason = "ServiceUnavailable"
