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
    assert tokens.reserve(100, now=0.0) == 0.0
    assert tokens.reserve(100, now=0.0) == pytest.approx(10.0)


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


def test_learn_limit_without_history_pauses_briefly() -> None:
    pacer = Pacer(clock=lambda: 0.0)
    assert pacer.learn_limit() == 1.0
    assert pacer.learned_per_minute is None
