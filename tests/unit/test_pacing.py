"""The pacer hands out evenly spaced slots, shared by threads and event loops."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest

from studio_embeddings._pacing import Pacer, Rate


def test_unlimited_pacer_never_waits() -> None:
    pacer = Pacer()
    assert not pacer.limited
    assert [pacer.reserve(100, now=0.0) for _ in range(5)] == [0.0] * 5


def test_requests_per_second_spaces_requests_evenly() -> None:
    pacer = Pacer(requests_per_second=10)
    waits = [pacer.reserve(now=0.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_idle_time_is_not_banked_as_a_burst() -> None:
    pacer = Pacer(requests_per_second=10)
    pacer.reserve(now=0.0)
    assert pacer.reserve(now=5.0) == 0.0
    assert pacer.reserve(now=5.0) == pytest.approx(0.1)


def test_requests_per_minute_and_tokens_per_minute() -> None:
    pacer = Pacer(requests_per_minute=60)
    assert [pacer.reserve(now=0.0) for _ in range(3)] == pytest.approx([0.0, 1.0, 2.0])
    tokens = Pacer(tokens_per_minute=600)  # 10 tokens/s, burst of 100 tokens
    tokens.reserve(600, now=0.0)  # the first minute's budget, spent at once
    assert tokens.reserve(100, now=60.0) == 0.0
    assert tokens.reserve(100, now=60.0) == pytest.approx(10.0)


def test_a_fresh_client_may_spend_its_first_minutes_tokens_at_once() -> None:
    pacer = Pacer(tokens_per_minute=60_000)
    assert pacer.reserve(32_001, now=100.0) == 0.0  # not held 23 s
    assert pacer.reserve(20_000, now=100.5) == 0.0
    # The budget of that first minute is spent: the next request waits for the window's end.
    assert pacer.reserve(10_000, now=101.0) == pytest.approx(59.0)


def test_the_first_window_never_lets_more_than_its_budget_through() -> None:
    pacer = Pacer(tokens_per_minute=600)
    sent = 0.0
    for i in range(100):
        now = i * 0.5
        if now + pacer.reserve(50, now=now) < 60.0:
            sent += 50
    assert sent <= 600


def test_after_the_first_window_tokens_pace_with_the_usual_burst() -> None:
    pacer = Pacer(tokens_per_minute=600)
    assert pacer.reserve(10, now=0.0) == 0.0
    # The first window is over: from then on a burst of ten seconds' worth (100 tokens).
    assert pacer.reserve(100, now=70.0) == 0.0
    assert pacer.reserve(100, now=70.0) == pytest.approx(10.0)


def test_requests_per_minute_stay_even_from_the_start() -> None:
    pacer = Pacer(requests_per_minute=60)
    assert pacer.reserve(now=0.0) == 0.0
    assert pacer.reserve(now=0.0) == pytest.approx(1.0)


def test_pause_holds_every_request() -> None:
    clock = [0.0]
    pacer = Pacer(requests_per_second=100, clock=lambda: clock[0])
    pacer.pause(2.0)
    assert pacer.reserve() == pytest.approx(2.0)
    assert pacer.reserve() == pytest.approx(2.01)
    assert pacer.pauses == 1


def test_pause_applies_to_an_unpaced_client_too() -> None:
    clock = [10.0]
    pacer = Pacer(clock=lambda: clock[0])
    pacer.pause(1.5)
    assert pacer.reserve() == pytest.approx(1.5)
    clock[0] = 12.0
    assert pacer.reserve() == 0.0


def test_rate_validation() -> None:
    with pytest.raises(ValueError, match="positive"):
        Rate(0, 1)


def test_threads_share_one_pace() -> None:
    pacer = Pacer(requests_per_second=50)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        async def turns() -> None:
            for _ in range(5):
                await pacer.acquire()
                with lock:
                    stamps.append(time.monotonic())

        asyncio.run(turns())  # each thread on a loop of its own: one pace for them all

    threads = [threading.Thread(target=worker) for _ in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 20 requests at 50/s: the last one cannot start before 19 intervals have passed.
    assert max(stamps) - start >= 19 / 50 - 0.02


async def test_async_turns_do_not_block_the_loop() -> None:
    pacer = Pacer(requests_per_second=10)
    stamps: list[float] = []

    async def ticker() -> None:
        for _ in range(30):
            stamps.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def consumer() -> None:
        for _ in range(4):  # 0.3 s of pacing waits
            await pacer.acquire()

    await asyncio.gather(ticker(), consumer())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) < 0.08  # a blocking sleep would stall the ticker for 0.1 s


def test_learn_limit_paces_to_what_the_server_accepted() -> None:
    clock = [100.0]
    pacer = Pacer(clock=lambda: clock[0])
    for i in range(30):  # 30 requests accepted within the last 3 seconds
        clock[0] = 100.0 + i * 0.1
        pacer.accepted()
    clock[0] = 103.0
    pause = pacer.learn_limit(headroom=1.0)
    assert pacer.learned_per_minute == 30
    assert pause == pytest.approx(57.0)  # until the oldest accepted request leaves the window
    assert pacer.reserve() == pytest.approx(57.0)
    assert pacer.reserve() == pytest.approx(59.0)  # then one every 60/30 s
    # A second 429 of the same burst learns nothing lower and does not stack pauses.
    pacer.learn_limit(headroom=1.0)
    assert pacer.learned_per_minute == 30


def test_learn_limit_without_history_learns_nothing() -> None:
    pacer = Pacer(clock=lambda: 0.0)
    assert pacer.learn_limit() == 0.0  # the retry policy's backoff is the pause
    assert pacer.learned_per_minute is None


def _learned(n: int = 30, clock: list[float] | None = None) -> tuple[Pacer, list[float]]:
    clock = clock if clock is not None else [100.0]
    pacer = Pacer(
        clock=lambda: clock[0],
        remaining_headers=("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"),
    )
    for i in range(n):
        clock[0] = 100.0 + i * 0.1
        pacer.accepted()
    clock[0] = 103.0
    pacer.learn_limit()
    assert pacer.learned_per_minute == n
    return pacer, clock


def test_fewer_than_ten_accepted_requests_teach_no_budget() -> None:
    clock = [0.0]
    pacer = Pacer(clock=lambda: clock[0])
    for _ in range(9):
        pacer.accepted()
    assert pacer.learn_limit() == 0.0
    assert pacer.learned_per_minute is None
    assert pacer.reserve() == 0.0
    pacer.accepted()
    assert pacer.learn_limit() == pytest.approx(60.0)
    assert pacer.learned_per_minute == 10


def test_a_learned_budget_is_forgotten_when_an_answer_shows_room_for_it() -> None:
    pacer, clock = _learned(30)
    clock[0] = 170.0
    pacer.on_success({"x-ratelimit-remaining-requests": "29"})  # not room for a whole budget
    assert pacer.learned_per_minute is not None
    pacer.on_success({"X-RateLimit-Remaining-Requests": "30"})
    assert pacer.learned_per_minute is None
    assert [pacer.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_a_learned_budget_rises_to_what_the_server_reports() -> None:
    pacer, clock = _learned(30)
    clock[0] = 170.0  # the learned burst has left the window; this success is all it holds
    pacer.on_success({"x-ratelimit-remaining-requests": "25"})
    # 25 left + 1 sent in the window: the server's budget is at least 26, less than 30: kept.
    assert pacer.learned_per_minute == 30
    for _ in range(15):
        pacer.accepted()
    pacer.on_success({"x-ratelimit-remaining-requests": "20"})
    assert pacer.learned_per_minute == pytest.approx(20 + 17)  # 17 sent in the window
    pacer.on_success({"x-ratelimit-remaining-tokens": "0"})  # no requests header: no change
    assert pacer.learned_per_minute == pytest.approx(37)


@pytest.mark.parametrize("value", ["", "-1", "1e9", "nan", "inf", "²", "9" * 40, "0x10"])
def test_odd_remaining_headers_are_ignored(value: str) -> None:
    pacer, clock = _learned(30)
    clock[0] = 104.0
    pacer.on_success({"x-ratelimit-remaining-requests": value})
    assert pacer.learned_per_minute == 30


def test_a_learned_budget_is_probed_upwards_each_clean_minute() -> None:
    pacer, clock = _learned(20)
    clock[0] = 150.0
    pacer.on_success()
    assert pacer.learned_per_minute == 20  # less than a minute since it was learned
    clock[0] = 163.0
    pacer.on_success()
    assert pacer.learned_per_minute == pytest.approx(30)
    clock[0] = 200.0
    pacer.on_success()
    assert pacer.learned_per_minute == pytest.approx(30)
    clock[0] = 224.0
    pacer.on_success()
    assert pacer.learned_per_minute == pytest.approx(45)
    # A 429 with less accepted in the window lowers it again; the pace follows.
    for _ in range(12):
        pacer.accepted()
    pacer.learn_limit()
    assert pacer.learned_per_minute == 12 + 2  # with the two successes of the last minute
    assert pacer.reserve(now=1000.0) == 0.0
    assert pacer.reserve(now=1000.0) == pytest.approx(60 / 14)


def test_a_429_that_confirms_the_budget_restarts_the_clean_minute() -> None:
    pacer, clock = _learned(20)
    clock[0] = 150.0
    for _ in range(20):
        pacer.accepted()  # 20 more in the window: 40 > 20 learned, so nothing lower
    pacer.learn_limit()
    assert pacer.learned_per_minute == 20
    clock[0] = 170.0  # a minute after the first 429, not after the second
    pacer.on_success()
    assert pacer.learned_per_minute == 20
    clock[0] = 211.0
    pacer.on_success()
    assert pacer.learned_per_minute == pytest.approx(30)


async def test_a_turn_reserved_before_a_pause_waits_out_the_pause() -> None:
    pacer = Pacer(requests_per_second=10)
    await pacer.acquire()
    waiting = asyncio.ensure_future(pacer.acquire())  # reserved for ~0.1 s from now
    await asyncio.sleep(0.02)
    await pacer.on_rate_limited(0.5, {})  # a 429 elsewhere: everyone holds 0.5 s
    started = time.monotonic()
    await waiting
    assert time.monotonic() - started >= 0.45


async def test_a_turn_past_the_deadline_is_not_taken() -> None:
    import time as _time

    from studio_embeddings._pacing import LimiterDeadline

    pacer = Pacer(requests_per_minute=2)
    await pacer.acquire()
    for _ in range(4):  # refused at once, and nothing reserved for them
        with pytest.raises(LimiterDeadline):
            await pacer.acquire(deadline_at=_time.monotonic() + 1)
    assert pacer.reserve(max_wait=0) == pytest.approx(30.0, abs=0.5)  # the next turn, not the 5th
