"""Named retry policies (the only importer of tenacity): transient failures of idempotent calls only."""
from __future__ import annotations

import functools
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import tenacity

T = TypeVar("T")

# Set to "1" to make every policy retry with zero waits (the project's tests use this).
NO_WAIT_ENV = "GPUCLUSTER_RETRY_NO_WAIT"
_test_mode: list[bool] = [False]

# botocore error codes that mean "slow down" (AWS docs: error retries, throttling).
AWS_THROTTLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "SlowDown", "EC2ThrottledException", "PriorRequestNotComplete",
    "RequestThrottled", "LimitExceededException",
})
AWS_CONNECTION_ERRORS = frozenset({
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ConnectionError",
})


def set_test_mode(enabled: bool = True) -> None:
    """Zero waits between retries (attempt counts stay the same), for tests."""
    _test_mode[0] = enabled


def zero_waits() -> bool:
    return _test_mode[0] or os.environ.get(NO_WAIT_ENV, "") not in ("", "0", "false")


def is_transient(exc: BaseException) -> bool:
    """Transient = the error says so (kube errors carry `.transient`) or AWS throttling / 5xx / connection."""
    flag = getattr(exc, "transient", None)
    if flag is not None:
        return bool(flag)
    return _aws_transient(exc)


def _aws_transient(exc: BaseException) -> bool:
    if type(exc).__name__ in AWS_CONNECTION_ERRORS:
        return True
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in AWS_THROTTLE_CODES:
        return True
    return isinstance(status, int) and (status == 429 or 500 <= status <= 599)


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (Retry-After), if any."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    return None


@dataclass(frozen=True)
class Policy:
    """A named retry policy: how many attempts, how long at most, how to back off."""

    name: str
    attempts: int
    max_delay_s: float
    base_wait_s: float = 0.5
    max_wait_s: float = 8.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        if zero_waits():
            return 0.0
        exc = state.outcome.exception() if state.outcome else None
        hinted = retry_after_of(exc) if exc else None
        if hinted is not None:
            return min(hinted, self.max_wait_s * 4)
        backoff: float = min(self.max_wait_s, self.base_wait_s * (2 ** (state.attempt_number - 1)))
        return backoff * (0.5 + random.random() / 2)

    def _retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts) | tenacity.stop_after_delay(self.max_delay_s),
            wait=self._wait,
            retry=tenacity.retry_if_exception(is_transient),
            reraise=True,
            sleep=self.sleep,
        )

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call fn, retrying transient failures under this policy; the last error is re-raised as is."""
        return self._retrying()(fn, *args, **kwargs)

    def __call__(self, fn: Callable[..., T]) -> Callable[..., T]:
        """Use the policy as a decorator."""
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            return self.call(fn, *args, **kwargs)
        return wrapper


# Reads (get/list/logs/version): safe to repeat.
IDEMPOTENT_READ = Policy("idempotent-read", attempts=5, max_delay_s=30.0)
# Writes made idempotent by the caller (deterministic names + AlreadyExists handled, deletes that
# tolerate NotFound): safe to repeat.
IDEMPOTENT_WRITE = Policy("idempotent-write", attempts=4, max_delay_s=30.0)
# Non-idempotent calls (generateName creates, ...): never retried.
NEVER = Policy("never", attempts=1, max_delay_s=0.0)
# First contact with a cluster: fail within seconds when it is unreachable.
CONNECT = Policy("connect", attempts=2, max_delay_s=6.0, base_wait_s=0.5, max_wait_s=1.0)
# AWS API reads/idempotent calls (botocore throttling, 5xx, connection errors).
AWS_READ = Policy("aws-read", attempts=6, max_delay_s=60.0, base_wait_s=1.0, max_wait_s=16.0)
AWS_WRITE = Policy("aws-write", attempts=4, max_delay_s=60.0, base_wait_s=1.0, max_wait_s=16.0)


def aws_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a boto3 client method with the AWS_READ policy: `retry.aws_call(ec2.describe_instances, ...)`."""
    return AWS_READ.call(fn, *args, **kwargs)
