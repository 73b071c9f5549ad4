"""The quota shared through a real Redis (Debian's redis-server, started by the fixtures).

Timing bounds are loose on purpose: the machine is shared. What each test claims is the limiter's
contract: atomic GCRA admission across processes, a shared pause, token pacing, outages waited
out (never unshared), deadlines kept, no secret in the store.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import threading
import time
import traceback
from typing import Any

import pytest

pytest.importorskip("redis", reason="redis-py is missing: pip install 'studio-embeddings[redis]'")

from studio_embeddings import QuotaStoreError
from studio_embeddings._pacing import LimiterDeadline
from studio_embeddings._quota_redis import RedisLimiter, quota_scope

SCOPE = "yandex:b1gtestfolder"


def _limiter(url: str, scope: str = SCOPE, **rates: float | None) -> RedisLimiter:
    kwargs: dict[str, Any] = {
        "requests_per_second": None,
        "requests_per_minute": None,
        "tokens_per_minute": None,
    }
    kwargs.update(rates)
    return RedisLimiter(url, scope, headroom=1.0, **kwargs)


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + window) for i, t in enumerate(times))


# ------------------------------------------------------------------ one process


async def test_admissions_are_spaced_by_the_rate(redis_store: Any) -> None:
    limiter = _limiter(redis_store.url, requests_per_second=10.0)
    start = time.monotonic()
    await asyncio.gather(*(limiter.acquire(0) for _ in range(6)))
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 0.9  # six slots, 0.1 s apart: the last at 0.5 s
    limiter.close()


def test_one_limiter_serves_several_event_loops_and_threads(redis_store: Any) -> None:
    limiter = _limiter(redis_store.url, requests_per_second=10.0)
    times: list[float] = []

    def run() -> None:
        async def go() -> None:
            for _ in range(3):
                await limiter.acquire(0)
                times.append(time.monotonic())

        asyncio.run(go())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(times) == 6
    assert max(times) - min(times) >= 0.4
    assert _max_in_window(times, 0.5) <= 6
    limiter.close()


async def test_tokens_are_paced_with_a_sixth_of_the_minute_as_burst(redis_store: Any) -> None:
    limiter = _limiter(redis_store.url, tokens_per_minute=6000.0)  # 100 tokens/s, burst 1000
    start = time.monotonic()
    await limiter.acquire(1000)
    assert time.monotonic() - start < 0.2
    await limiter.acquire(100)  # the burst is spent: one second for 100 tokens
    assert 0.85 <= time.monotonic() - start < 1.4
    limiter.close()


async def test_a_turn_past_the_deadline_is_refused_at_once_and_spends_nothing(
    redis_store: Any,
) -> None:
    limiter = _limiter(redis_store.url, tokens_per_minute=6000.0)
    await limiter.acquire(1000)
    start = time.monotonic()
    with pytest.raises(LimiterDeadline):
        await limiter.acquire(500, deadline_at=time.monotonic() + 0.5)  # would need 5 s
    assert time.monotonic() - start < 0.2  # no sleeping towards a turn it cannot have
    await limiter.acquire(100)  # 1 s, not 6 s: the refused turn reserved nothing
    assert 0.85 <= time.monotonic() - start < 1.5
    limiter.close()


async def test_a_spent_minute_budget_is_learned_and_shared(redis_store: Any) -> None:
    first = _limiter(redis_store.url, "nebius:proj")
    other = _limiter(redis_store.url, "nebius:proj")  # another worker of the same project
    await first.acquire(0)
    for _ in range(4):  # too few to teach a budget (a 429 after a handful says little)
        first.on_success()
    await first.on_rate_limited(0.01, {"X-RateLimit-Remaining-Requests": "0"})
    assert first.learned_per_minute is None
    for _ in range(8):
        first.on_success()
    await first.on_rate_limited(0.1, {"X-RateLimit-Remaining-Requests": "0"})
    assert first.learned_per_minute == pytest.approx(12.0)
    with redis_store.client() as client:
        assert float(client.get("studio-embeddings:{nebius:proj}:learned")) == pytest.approx(12.0)
    # Held until the oldest accepted request leaves the server's minute: the other worker too.
    with pytest.raises(LimiterDeadline):
        await other.acquire(0, deadline_at=time.monotonic() + 0.3)
    first.close()
    other.close()


async def test_nothing_is_learned_from_a_429_with_retry_after(redis_store: Any) -> None:
    limiter = _limiter(redis_store.url, "nebius:proj")
    for _ in range(4):
        limiter.on_success()
    headers = {"retry-after": "1", "x-ratelimit-remaining-requests": "0"}
    await limiter.on_rate_limited(0.2, headers)
    assert limiter.learned_per_minute is None
    start = time.monotonic()
    await limiter.acquire(0)
    assert 0.1 <= time.monotonic() - start < 0.5  # the pause itself holds
    limiter.close()


# ------------------------------------------------------------------ faults and secrets


async def test_store_unreachable_at_first_call(make_redis_server: Any) -> None:
    server = make_redis_server(password="S3cret-pw")
    server.kill()  # a port where nothing answers
    limiter = _limiter(server.url, requests_per_second=10.0)
    with pytest.raises(QuotaStoreError) as info:
        await limiter.acquire(0, deadline_at=time.monotonic() + 5)
    text = "".join(traceback.format_exception(info.value))
    assert f"redis://:****@127.0.0.1:{server.port}/0" in str(info.value)
    assert "S3cret-pw" not in text
    assert "cannot be reached" in str(info.value)


async def test_a_wrong_password_at_first_call_is_a_clear_error(make_redis_server: Any) -> None:
    server = make_redis_server(password="right-pw")
    limiter = _limiter(f"redis://:wrong-pw@127.0.0.1:{server.port}/0", requests_per_second=1.0)
    with pytest.raises(QuotaStoreError) as info:
        await limiter.acquire(0)
    assert "wrong-pw" not in "".join(traceback.format_exception(info.value))
    assert ":****@" in str(info.value)


async def test_an_outage_mid_run_is_waited_out_never_unshared(make_redis_server: Any) -> None:
    server = make_redis_server()
    limiter = _limiter(server.url, requests_per_second=20.0)
    admitted: list[float] = []
    stop = asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            await limiter.acquire(0)
            admitted.append(time.monotonic())

    tasks = [asyncio.create_task(worker()) for _ in range(3)]
    await asyncio.sleep(0.5)
    assert len(admitted) >= 5
    server.kill()
    killed = time.monotonic()

    # While it is away, a call with a deadline gives up at the deadline.
    start = time.monotonic()
    with pytest.raises(LimiterDeadline):
        await limiter.acquire(0, deadline_at=start + 0.4)
    assert 0.3 <= time.monotonic() - start < 1.0
    await asyncio.sleep(0.6)

    restarted = time.monotonic()
    server.start()  # the same port; the store comes back empty
    await asyncio.sleep(0.8)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    limiter.close()

    # Turns reserved before the kill may still go (three workers: up to three slots, 0.15 s).
    inside = [round(t - killed, 3) for t in admitted if killed + 0.2 < t < restarted]
    assert not inside, f"admitted {inside} s after the kill, while the store was away"
    after = [t for t in admitted if t >= restarted]
    assert len(after) >= 5
    assert _max_in_window(after, 0.5) <= 12  # 20/s once back, not a burst


async def test_a_429_with_the_store_away_warns_and_returns(
    make_redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_redis_server(password="S3cret-pw")
    limiter = _limiter(server.url, requests_per_second=10.0)
    await limiter.acquire(0)
    server.kill()
    start = time.monotonic()
    await limiter.on_rate_limited(1.0, {})  # does not raise: the request goes on to its retry
    assert time.monotonic() - start < 2.0
    assert "pause is not shared" in caplog.text
    assert ":****@" in caplog.text
    assert "S3cret-pw" not in caplog.text


async def test_the_store_holds_no_secret(make_redis_server: Any) -> None:
    password, api_key = "Redis-PW-9f8e7d", "v1.NEBIUS-API-KEY-abcdef0123456789"
    server = make_redis_server(password=password)
    scope = quota_scope("nebius", None, api_key)
    limiter = RedisLimiter(
        server.url,
        scope,
        requests_per_second=None,
        requests_per_minute=600.0,
        tokens_per_minute=60000.0,
    )
    for _ in range(12):
        await limiter.acquire(120)
        limiter.on_success()
    await limiter.on_rate_limited(
        0.05, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "0"}
    )
    with pytest.raises(LimiterDeadline):  # held for the learned minute: no need to wait it out
        await limiter.acquire(10, deadline_at=time.monotonic() + 0.2)
    limiter.close()

    seen: list[str] = []
    with server.client() as client:
        for key in client.scan_iter("*"):
            seen.append(key)
            kind = client.type(key)
            if kind == "string":
                seen.append(client.get(key))
            elif kind == "hash":
                seen.extend(f"{k}={v}" for k, v in client.hgetall(key).items())
            else:
                pytest.fail(f"unexpected key type {kind} for {key}")
            assert key.startswith(f"studio-embeddings:{{{scope}}}:")
            assert client.pttl(key) > 0  # everything expires when idle
    dump = "\n".join(seen)
    names = {k.split("}:", 1)[1] for k in seen if k.startswith("studio-embeddings:{")}
    assert names == {"pause", "learned", "accepted", "slot:rpm", "slot:tpm"}
    for secret in (password, api_key, api_key[3:19]):
        assert secret not in dump


async def test_pickled_limiter_reconnects_and_shares_the_quota(redis_store: Any) -> None:
    limiter = _limiter(redis_store.url, requests_per_second=10.0)
    await limiter.acquire(0)
    copy = pickle.loads(pickle.dumps(limiter))
    assert repr(copy) == repr(limiter)
    start = time.monotonic()
    await asyncio.gather(limiter.acquire(0), copy.acquire(0), copy.acquire(0))
    assert time.monotonic() - start >= 0.25  # one quota: the three take three slots
    limiter.close()
    copy.close()


def _acquire_in_child(limiter: RedisLimiter, out: Any) -> None:
    try:
        asyncio.run(limiter.acquire(0))
        out.put("ok")
    except BaseException as exc:  # the parent asserts on it
        out.put(repr(exc))


def test_a_forked_child_uses_the_limiter(redis_store: Any) -> None:
    limiter = _limiter(redis_store.url, requests_per_second=100.0)
    asyncio.run(limiter.acquire(0))  # the parent's pool holds a connection now
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_acquire_in_child, args=(limiter, out))
    child.start()
    assert out.get(timeout=20) == "ok"
    child.join(timeout=10)
    asyncio.run(limiter.acquire(0))  # and the parent's own connection still works
    limiter.close()


# ------------------------------------------------------------------ several processes


def _admit_worker(url: str, scope: str, count: int, barrier: Any, out: Any) -> None:
    limiter = _limiter(url, scope, requests_per_second=10.0)

    async def run() -> list[float]:
        times = []
        for _ in range(count):
            await limiter.acquire(0)
            times.append(time.time())
        return times

    barrier.wait(timeout=60)
    out.put(asyncio.run(run()))


def test_four_processes_share_one_rate(redis_store: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    workers = [
        ctx.Process(target=_admit_worker, args=(redis_store.url, SCOPE, 6, barrier, out))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=90) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    times = sorted(t for result in results for t in result)
    assert len(times) == 24
    # 10/s together (unshared it would be 40/s): 24 slots take 2.3 s, no second holds 12.
    assert times[-1] - times[0] >= 2.0
    assert _max_in_window(times, 1.0) <= 11


def _busy_worker(url: str, scope: str, seconds: float, barrier: Any, out: Any) -> None:
    limiter = _limiter(url, scope, requests_per_second=10.0)

    async def run() -> list[float]:
        times = []
        end = time.time() + seconds
        while time.time() < end:
            await limiter.acquire(0)
            times.append(time.time())
        return times

    barrier.wait(timeout=60)
    out.put(asyncio.run(run()))


def test_one_process_429_pauses_the_others(redis_store: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    workers = [
        ctx.Process(target=_busy_worker, args=(redis_store.url, SCOPE, 4.0, barrier, out))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    me = _limiter(redis_store.url, requests_per_second=10.0)
    barrier.wait(timeout=60)
    time.sleep(1.0)
    paused_at = time.time()
    asyncio.run(me.on_rate_limited(2.0, {}))
    results = [out.get(timeout=90) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    me.close()
    times = sorted(t for result in results for t in result)
    assert [t for t in times if t < paused_at]  # they were running
    # Turns reserved before the 429 may still go (three workers: at most ~0.3 s of slots).
    inside = [t for t in times if paused_at + 0.45 < t < paused_at + 1.97]
    assert not inside, f"admitted {[round(t - paused_at, 2) for t in inside]} s into the pause"
    assert [t for t in times if t >= paused_at + 1.97]  # and they go on after it


# ------------------------------------------------------------ through the client's engine


def test_a_clients_deadline_holds_with_a_shared_quota(
    emulator: Any, make_redis_server: Any
) -> None:
    from studio_embeddings import DeadlineExceededError, EmbeddingsClient

    server = make_redis_server()

    def client() -> EmbeddingsClient:
        return EmbeddingsClient(
            "yandex", api_key="yc-key", project="b1gdeadline", base_url=emulator.base_url("yandex"),
            quota_store=server.url, requests_per_second=2, deadline=1.0,
        )

    with client() as first:
        assert len(first.embed(["one"])) == 1  # the store answers; the quota is 2/s
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError, match="waiting for the quota"):
            first.embed([f"text {i}" for i in range(8)])  # 4 s of quota, a 1 s deadline
        assert time.monotonic() - started < 2.0
        server.kill()  # the store away: requests wait for it, within the deadline
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            first.embed(["while the store is down"])
        assert time.monotonic() - started < 3.5
    server.start()
    with client() as again:
        assert len(again.embed(["back"])) == 1
