"""Retry policies retry only transient failures of idempotent calls; API errors map to typed errors."""
from __future__ import annotations

from typing import Iterator

import pytest
from kubernetes.client.exceptions import ApiException

from pytest_gpucluster import retry
from pytest_gpucluster.kube import errors


def api_exception(status: int, reason: str = "", message: str = "boom", headers: dict | None = None) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = ('{"kind":"Status","apiVersion":"v1","status":"Failure","message":"%s","reason":"%s","code":%d}'
                % (message, reason, status))
    exc.headers = headers or {}
    return exc


SITE = errors.CallSite("create", "pods", "gpucluster-1", "gc-probe", "https://10.0.0.1:443")


class Flaky:
    """Fails with the given errors in order, then returns 'ok'."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures: Iterator[BaseException] = iter(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        failure = next(self.failures, None)
        if failure is not None:
            raise failure
        return "ok"


@pytest.fixture
def real_waits() -> Iterator[list[float]]:
    """Turn the zero-wait test mode off and record the waits instead of sleeping."""
    retry.set_test_mode(False)
    slept: list[float] = []
    yield slept
    retry.set_test_mode(True)


def test_forbidden_names_verb_resource_namespace_and_the_rbac_manifest() -> None:
    err = errors.from_api_exception(api_exception(403, "Forbidden", "pods is forbidden"), SITE)
    assert isinstance(err, errors.Forbidden) and not err.transient
    text = str(err)
    assert "verb=create" in text and "resource=pods" in text and "namespace=gpucluster-1" in text
    assert "deploy/rbac.yaml" in text


def test_unauthorized_means_expired_credentials() -> None:
    err = errors.from_api_exception(api_exception(401, "Unauthorized"), SITE)
    assert isinstance(err, errors.Unauthorized)
    assert "expired" in str(err) and "https://10.0.0.1:443" in str(err)


@pytest.mark.parametrize("status, reason, cls, transient", [
    (404, "NotFound", errors.NotFound, False),
    (409, "AlreadyExists", errors.AlreadyExists, False),
    (409, "Conflict", errors.Conflict, False),
    (410, "Expired", errors.Gone, False),
    (422, "Invalid", errors.Invalid, False),
    (429, "TooManyRequests", errors.TooManyRequests, True),
    (500, "InternalError", errors.ServerError, True),
    (503, "ServiceUnavailable", errors.ServerError, True),
])
def test_status_codes_map_to_typed_errors(status: int, reason: str, cls: type, transient: bool) -> None:
    err = errors.from_api_exception(api_exception(status, reason), SITE)
    assert type(err) is cls and err.transient is transient and err.status == status


def test_retry_after_header_is_kept() -> None:
    err = errors.from_api_exception(api_exception(429, "TooManyRequests", headers={"Retry-After": "3"}), SITE)
    assert err.retry_after == 3.0


def test_transient_errors_are_retried_then_succeed() -> None:
    call = Flaky(errors.ServerError("503"), errors.TooManyRequests("429"), errors.Unreachable("reset"))
    assert retry.IDEMPOTENT_READ.call(call) == "ok"
    assert call.calls == 4


def test_permanent_errors_are_not_retried() -> None:
    call = Flaky(errors.Forbidden("no"))
    with pytest.raises(errors.Forbidden):
        retry.IDEMPOTENT_WRITE.call(call)
    assert call.calls == 1


def test_never_policy_does_not_retry_even_transient_errors() -> None:
    call = Flaky(errors.ServerError("503"))
    with pytest.raises(errors.ServerError):
        retry.NEVER.call(call)
    assert call.calls == 1


def test_attempts_are_bounded_and_the_last_error_is_reraised() -> None:
    call = Flaky(*[errors.ServerError(f"503 #{i}") for i in range(10)])
    with pytest.raises(errors.ServerError, match="503 #4"):
        retry.IDEMPOTENT_READ.call(call)
    assert call.calls == retry.IDEMPOTENT_READ.attempts == 5


def test_retry_after_is_honoured_and_backoff_grows(real_waits: list[float]) -> None:
    policy = retry.Policy("t", attempts=4, max_delay_s=100, base_wait_s=0.5, max_wait_s=8, sleep=real_waits.append)
    policy.call(Flaky(errors.TooManyRequests("429", retry_after=3.0), errors.ServerError("500"),
                      errors.ServerError("500")))
    assert real_waits[0] == 3.0
    assert 0.5 <= real_waits[1] <= 1.0 and 1.0 <= real_waits[2] <= 2.0


def test_test_mode_keeps_attempts_but_never_waits() -> None:
    slept: list[float] = []
    policy = retry.Policy("t", attempts=3, max_delay_s=100, sleep=slept.append)
    policy.call(Flaky(errors.TooManyRequests("429", retry_after=30.0), errors.ServerError("500")))
    assert slept == [0.0, 0.0]


class FakeClientError(Exception):
    """Shaped like botocore.exceptions.ClientError (duck-typed: no botocore import needed)."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


class EndpointConnectionError(Exception):
    pass


@pytest.mark.parametrize("exc, transient", [
    (FakeClientError("Throttling", 400), True),
    (FakeClientError("ThrottlingException", 400), True),
    (FakeClientError("RequestLimitExceeded", 503), True),
    (FakeClientError("InternalError", 500), True),
    (FakeClientError("UnauthorizedOperation", 403), False),
    (FakeClientError("InvalidParameterValue", 400), False),
    (EndpointConnectionError("no route"), True),
    (ValueError("bug"), False),
])
def test_aws_errors_are_classified_by_duck_typing(exc: Exception, transient: bool) -> None:
    assert retry.is_transient(exc) is transient


def test_aws_call_retries_throttling() -> None:
    call = Flaky(FakeClientError("Throttling", 400), FakeClientError("RequestLimitExceeded", 503))
    assert retry.aws_call(call) == "ok" and call.calls == 3


def test_policy_as_decorator() -> None:
    call = Flaky(errors.ServerError("500"))

    @retry.IDEMPOTENT_READ
    def read() -> str:
        return call()

    assert read() == "ok" and call.calls == 2
