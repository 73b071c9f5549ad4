"""Four worker processes on one Yandex folder, sharing the quota through a real Redis.

The emulator runs in a process of its own with Yandex's 10 requests/s per folder; each worker
is a spawned process with its own ``YandexEmbeddings(quota_store=...)`` embedding its own texts
through the array path. What the records of the emulator show is what the tests claim: the
share of requests refused, when each one arrived, and that each text was accepted once.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("redis", reason="redis-py is missing: pip install 'studio-embeddings[redis]'")

from _emu_process import EmulatorProcess, Record, max_in_window

from studio_embeddings.emulator import embed_text

KEY = "yc-shared-quota-API-KEY-7f3a9c"
FOLDER = "b1gsharedfolder"
DOC_MODEL = f"emb://{FOLDER}/text-search-doc/latest"
WORKERS = 4


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(latency_ms=150.0, yandex_rps=10.0) as process:
        yield process


@pytest.fixture
def fresh_emu(emu: EmulatorProcess) -> EmulatorProcess:
    emu.clear()
    time.sleep(1.1)  # the previous test's requests leave the emulator's 1 s window
    return emu


def _texts(worker: int, n: int) -> list[str]:
    return [f"worker {worker} document {i}: the river clean-up in the old town" for i in range(n)]


def _worker(
    base_url: str,
    store: str | None,
    worker: int,
    n: int,
    settings: dict[str, Any],
    barrier: Any,
    out: Any,
) -> None:
    try:
        from studio_embeddings.langchain import YandexEmbeddings

        emb = YandexEmbeddings(
            api_key=KEY, folder_id=FOLDER, base_url=base_url, quota_store=store, **settings
        )
        texts = _texts(worker, n)
        # A cold client's first send is late (one-time set-up after its turn was taken) and
        # lands on the other workers' turns; warm it, so that what is measured is the sharing.
        emb.embed_array([f"warm-up {worker}"])
        barrier.wait(timeout=90)
        started = time.monotonic()
        matrix = emb.embed_array(texts)
        out.put((worker, "ok", matrix.tobytes(), matrix.shape, started, time.monotonic()))
    except BaseException as exc:  # the parent asserts on it
        out.put((worker, "error", f"{type(exc).__name__}: {exc}", None, 0.0, 0.0))


class Run:
    def __init__(self, results: dict[int, tuple[Any, ...]], records: list[Record]) -> None:
        self.results = results
        self.records = records

    @property
    def refused(self) -> int:
        return sum(1 for r in self.records if r.status == 429)

    @property
    def share(self) -> float:
        return self.refused / max(1, len(self.records))

    def errors(self) -> dict[int, str]:
        return {w: r[2] for w, r in self.results.items() if r[1] != "ok"}

    def check_vectors(self, n: int) -> None:
        """Every worker got one exact vector per text, in its order."""
        assert not self.errors(), self.errors()
        for worker, (_, _, raw, shape, _, _) in self.results.items():
            matrix = np.frombuffer(raw, dtype=np.float32).reshape(shape)
            expected = np.array(
                [embed_text("yandex", DOC_MODEL, t) for t in _texts(worker, n)], dtype=np.float32
            )
            assert matrix.shape == (n, 256)
            assert np.array_equal(matrix, expected), f"worker {worker}: a vector differs"

    def check_each_text_accepted_once(self, n: int) -> None:
        accepted = Counter(
            r.text for r in self.records if r.status == 200 and not str(r.text).startswith("warm")
        )
        wanted = Counter(t for w in range(WORKERS) for t in _texts(w, n))
        assert accepted == wanted  # none lost, none sent twice past the server


def _run(
    emu: EmulatorProcess, store: str | None, n: int, during: Any = None, **settings: Any
) -> Run:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(WORKERS + 1), ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(emu.base_url("yandex"), store, w, n, settings, barrier, out),
        )
        for w in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(timeout=90)
        if during is not None:
            during()
        results = {}
        for _ in procs:
            result = out.get(timeout=120)
            results[result[0]] = result
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return Run(results, emu.records())


# ------------------------------------------------------------------------------ the quota


def test_four_workers_share_the_folder_quota(
    fresh_emu: EmulatorProcess, make_redis_server: Any
) -> None:
    password = "Redis-PW-shared-5b2c"
    server = make_redis_server(password=password)
    n = 20
    run = _run(fresh_emu, server.url, n)
    run.check_vectors(n)
    run.check_each_text_accepted_once(n)
    assert run.share <= 0.05, f"{run.refused}/{len(run.records)} refused"
    ok = [r.time for r in run.records if r.status == 200 and not str(r.text).startswith("warm")]
    assert max_in_window(ok, 1.0) <= 10
    # Together at the quota, not 4x under it: 80 requests at ~9.7/s.
    span = max(ok) - min(ok)
    assert 7.0 <= span <= 12.0, f"{len(ok)} requests took {span:.1f} s"

    # The store's keys and values hold no secret: neither the API key nor the Redis password.
    dump: list[str] = []
    with server.client() as client:
        for key in client.scan_iter("*"):
            dump.append(key)
            kind = client.type(key)
            if kind == "string":
                dump.append(client.get(key))
            elif kind == "hash":
                dump.extend(f"{k}={v}" for k, v in client.hgetall(key).items())
            assert key.startswith(f"studio-embeddings:{{yandex:{FOLDER}}}:")
    text = "\n".join(dump)
    assert dump
    for secret in (KEY, password, KEY[3:15], password[3:12]):
        assert secret not in text


def test_four_workers_without_the_store_are_refused(fresh_emu: EmulatorProcess) -> None:
    """The same run, each worker pacing itself to the whole quota: what the store prevents."""
    n = 20
    run = _run(fresh_emu, None, n, max_retries=10)
    print(
        f"\nunshared: {run.refused}/{len(run.records)} requests refused ({run.share:.0%}); "
        f"errors: {run.errors()}"
    )
    assert run.share >= 0.25, f"only {run.refused}/{len(run.records)} refused"


# ------------------------------------------------------------------------------ faults


def test_redis_killed_mid_run_and_restarted(
    fresh_emu: EmulatorProcess, make_redis_server: Any
) -> None:
    server = make_redis_server()
    n = 15
    marks: dict[str, float] = {}

    def outage() -> None:
        time.sleep(2.0)
        server.kill()
        marks["killed"] = time.monotonic()
        time.sleep(1.5)
        marks["restarted"] = time.monotonic()
        server.start()  # the same port, empty

    run = _run(fresh_emu, server.url, n, during=outage)
    run.check_vectors(n)
    run.check_each_text_accepted_once(n)
    assert run.refused <= 0.05 * len(run.records), f"{run.refused}/{len(run.records)} refused"
    times = [r.time for r in run.records]
    assert max_in_window(times, 1.0) <= 11  # no overshoot, before, during or after
    # Turns reserved before the kill still go (each worker reserves up to max_concurrency
    # turns ahead); the rest waited for the store and went on after it came back.
    assert [t for t in times if t > marks["restarted"]]


# ------------------------------------------------------------------------------ the pause
# Each worker reserves up to max_concurrency turns ahead; a turn reserved before a 429 must not
# be taken during the pause (the limiter looks at the pause again after its wait).


def test_one_workers_429_with_retry_after_pauses_every_worker(
    fresh_emu: EmulatorProcess, redis_store: Any
) -> None:
    n = 12
    # The 13th request (the 9th after the 4 warm-ups), whichever worker sends it, is refused
    # with Retry-After: 2.
    fresh_emu.script("yandex", [200] * 12 + [(429, {"retry-after": "2"})])
    run = _run(fresh_emu, redis_store.url, n)
    run.check_vectors(n)
    run.check_each_text_accepted_once(n)
    scripted = run.records[12]  # in arrival order (4 warm-ups come first)
    assert scripted.status == 429
    t429 = scripted.time
    # The refused answer reaches its worker after the emulator's 150 ms latency; the pause is
    # written to the store then. Nothing may arrive from any worker from then to the end.
    inside = [
        (round(r.time - t429, 2), r.text) for r in run.records if t429 + 0.2 < r.time < t429 + 2.0
    ]
    assert not inside, f"requests arrived during the 2 s pause: {inside}"
    assert [r for r in run.records if r.time >= t429 + 2.0]  # and they went on after it
