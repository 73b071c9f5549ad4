"""The retry policy as a value: which outcomes are retried, how long each wait is."""

from __future__ import annotations

import pytest

from studio_embeddings._retry import RetryPolicy, TransientError


class Boom(Exception):
    pass


def _flaky(failures: list[BaseException], result: str = "ok"):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return result

    return fn, calls


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(initial_wait=0.5, multiplier=2, max_wait=3, jitter=False)
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_waits_are_recorded_not_slept() -> None:
    waits: list[float] = []
    policy = RetryPolicy(
        max_retries=3, initial_wait=1, multiplier=2, jitter=False, sleep=waits.append
    )
    fn, calls = _flaky([TransientError(Boom()), TransientError(Boom())])
    assert policy.retrying()(fn) == "ok"
    assert calls["n"] == 3
    assert waits == [1.0, 2.0]


def test_max_retries_means_n_plus_one_attempts() -> None:
    waits: list[float] = []
    policy = RetryPolicy(max_retries=2, jitter=False, sleep=waits.append)
    fn, calls = _flaky([TransientError(Boom()) for _ in range(10)])
    with pytest.raises(TransientError):
        policy.retrying()(fn)
    assert calls["n"] == 3
    assert len(waits) == 2


def test_zero_retries_is_one_attempt() -> None:
    policy = RetryPolicy(max_retries=0, sleep=lambda s: None)
    fn, calls = _flaky([TransientError(Boom())])
    with pytest.raises(TransientError):
        policy.retrying()(fn)
    assert calls["n"] == 1


def test_non_transient_errors_are_not_retried() -> None:
    policy = RetryPolicy(max_retries=5, sleep=lambda s: None)
    fn, calls = _flaky([Boom()])
    with pytest.raises(Boom):
        policy.retrying()(fn)
    assert calls["n"] == 1


def test_retry_after_is_honoured_and_capped() -> None:
    waits: list[float] = []
    policy = RetryPolicy(max_retries=3, retry_after_cap=5, jitter=False, sleep=waits.append)
    fn, _ = _flaky(
        [TransientError(Boom(), retry_after=2.5), TransientError(Boom(), retry_after=99)]
    )
    policy.retrying()(fn)
    assert waits == [2.5, 5.0]


def test_jitter_stays_within_backoff() -> None:
    policy = RetryPolicy(initial_wait=1, multiplier=2, max_wait=8)
    for attempt in range(1, 6):
        for _ in range(50):
            assert 0 <= policy.wait_for(attempt, TransientError(Boom())) <= policy.backoff(attempt)


def test_deadline_stops_before_a_wait_that_would_pass_it() -> None:
    import time

    waits: list[float] = []
    policy = RetryPolicy(max_retries=10, initial_wait=5, jitter=False, sleep=waits.append)
    fn, calls = _flaky([TransientError(Boom()) for _ in range(10)])
    with pytest.raises(TransientError):
        policy.retrying(deadline=time.monotonic() + 1.0)(fn)
    assert calls["n"] == 1
    assert waits == []


async def test_async_retrying_uses_async_sleep() -> None:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    policy = RetryPolicy(max_retries=2, initial_wait=0.25, jitter=False, async_sleep=fake_sleep)
    failures: list[BaseException] = [TransientError(Boom()), TransientError(Boom())]

    async def fn() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    assert await policy.async_retrying()(fn) == "ok"
    assert waits == [0.25, 0.5]


@pytest.mark.parametrize("kwargs", [{"max_retries": -1}, {"initial_wait": -1}, {"max_wait": -2}])
def test_invalid_policy_values_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="0 or more"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_retries = 1  # type: ignore[misc]
