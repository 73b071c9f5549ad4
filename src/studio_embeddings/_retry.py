"""The retry policy: one frozen value, turned into tenacity retryers. The only retry layer.

The openai clients are built with ``max_retries=0``; every retry happens here, so a request
is attempted at most ``max_retries + 1`` times, never (SDK retries) x (our retries).

| outcome of an attempt | retried? | wait before the next attempt |
| --- | --- | --- |
| connection refused / dropped, timeout | yes | exponential backoff with full jitter |
| 408, 409, 429 (rate limit), 5xx | yes | ``Retry-After`` / ``retry-after-ms`` if sent (capped), else backoff |
| 429 meaning an exhausted quota or billing problem | no | |
| 400, 401, 403, 404, 422 and any other 4xx | no | |
| the call's deadline would pass during the wait | no | |
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from studio_embeddings._loop import in_thread

__all__ = ["RETRYABLE_STATUSES", "DeadlineStop", "RetryPolicy", "TransientError", "retry_after"]

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504}) | frozenset(range(505, 600))


class TransientError(Exception):
    """An attempt failed in a way that another attempt may fix.

    Raised by the core around one attempt; carries what the policy needs to decide the wait.
    ``cause`` is the final error to raise when no attempt is left.
    """

    def __init__(
        self,
        cause: BaseException,
        *,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.retry_after = retry_after
        self.headers: Mapping[str, str] = headers or {}


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    None when neither is sent or neither makes sense (negative, NaN, infinite, unparseable):
    the policy's backoff applies then.

    >>> retry_after({"retry-after": "2"}), retry_after({"retry-after-ms": "1500"})
    (2.0, 1.5)
    >>> retry_after({"retry-after": "nan"}) is None
    True
    """
    ms = headers.get("retry-after-ms")
    if ms:
        parsed_ms = _seconds(ms)
        if parsed_ms is not None:
            return parsed_ms / 1000.0
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:  # pragma: no cover - Python < 3.10 returned None
        return None
    return max(0.0, parsed.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed request is retried.

    Attributes:
        max_retries: retries after the first attempt: at most ``max_retries + 1`` attempts.
        initial_wait: backoff before the first retry, in seconds (before jitter).
        multiplier: growth of the backoff per retry.
        max_wait: cap of a backoff wait.
        jitter: full jitter (a wait drawn uniformly from 0 to the backoff) when True.
        retry_after_cap: cap of a server-requested ``Retry-After`` wait.
        sleep: the function used to sleep; tests pass a recorder instead of sleeping.
        async_sleep: the coroutine function used to sleep on the async path.

    Example:
        >>> waits = []
        >>> policy = RetryPolicy(max_retries=2, jitter=False, sleep=waits.append)
        >>> policy.backoff(1), policy.backoff(2), policy.backoff(10)
        (0.5, 1.0, 20.0)
    """

    max_retries: int = 5
    initial_wait: float = 0.5
    multiplier: float = 2.0
    max_wait: float = 20.0
    jitter: bool = True
    retry_after_cap: float = 60.0
    sleep: Callable[[float], None] | None = field(default=None, compare=False)
    async_sleep: Callable[[float], Awaitable[None]] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            msg = f"max_retries must be 0 or more, got {self.max_retries}."
            raise ValueError(msg)
        if self.initial_wait < 0 or self.max_wait < 0 or self.retry_after_cap < 0:
            msg = "initial_wait, max_wait and retry_after_cap must be 0 or more seconds."
            raise ValueError(msg)

    def backoff(self, attempt: int) -> float:
        """The un-jittered backoff after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_wait, self.initial_wait * self.multiplier ** (attempt - 1)))

    def wait_for(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait after failed attempt ``attempt`` that raised ``error``."""
        if isinstance(error, TransientError) and error.retry_after is not None:
            return max(0.0, min(self.retry_after_cap, error.retry_after))
        base = self.backoff(attempt)
        return random.uniform(0, base) if self.jitter else base

    def retrying(
        self,
        *,
        deadline: float | None = None,
        before_sleep: Callable[[RetryCallState], None] | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> Retrying:
        """A tenacity ``Retrying`` for one request (sync path).

        ``sleep`` is the caller's default (e.g. an interruptible wait); the policy's own
        ``sleep`` (a test's recorder) wins over it.
        """
        kwargs = self._tenacity_kwargs(deadline, before_sleep)
        chosen = self.sleep or sleep
        if chosen is not None:
            kwargs["sleep"] = chosen
        return Retrying(**kwargs)

    def async_retrying(
        self,
        *,
        deadline: float | None = None,
        before_sleep: Callable[[RetryCallState], Awaitable[None] | None] | None = None,
    ) -> AsyncRetrying:
        """A tenacity ``AsyncRetrying`` for one request; it sleeps without blocking the loop.

        The policy's ``async_sleep`` is used if set; else its blocking ``sleep`` (a test's
        recorder) runs in a thread of its own; else ``asyncio.sleep``. With a ``deadline``,
        the retryer's ``stop`` is a :class:`DeadlineStop`, whose ``fired`` says whether the
        deadline ended the retries.
        """
        kwargs = self._tenacity_kwargs(deadline, before_sleep)
        if self.async_sleep is not None:
            kwargs["sleep"] = self.async_sleep
        elif self.sleep is not None:
            blocking = self.sleep

            async def sleep(seconds: float) -> None:
                await in_thread(blocking, seconds)

            kwargs["sleep"] = sleep
        return AsyncRetrying(**kwargs)

    def _tenacity_kwargs(
        self,
        deadline: float | None,
        before_sleep: Callable[[RetryCallState], Any] | None,
    ) -> dict[str, Any]:
        stop: stop_base = stop_after_attempt(self.max_retries + 1)
        if deadline is not None:
            stop = DeadlineStop(deadline, stop)
        kwargs: dict[str, Any] = {
            "stop": stop,
            "wait": _PolicyWait(self),
            "retry": retry_if_exception(lambda e: isinstance(e, TransientError)),
            "reraise": True,
        }
        if before_sleep is not None:
            kwargs["before_sleep"] = before_sleep
        return kwargs


class _PolicyWait(wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        return self.policy.wait_for(retry_state.attempt_number, error)


class DeadlineStop(stop_base):
    """Stop after ``attempts``, or when sleeping before the next attempt would end past
    ``deadline`` (monotonic); ``fired`` records that the deadline, not the count, stopped it."""

    def __init__(self, deadline: float, attempts: stop_base) -> None:
        self.deadline = deadline
        self.attempts = attempts
        self.fired = False

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self.attempts(retry_state):
            return True
        self.fired = time.monotonic() + retry_state.upcoming_sleep >= self.deadline
        return self.fired
