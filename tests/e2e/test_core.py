"""The core on the wire, through the emulator on loopback: every rule of the foundation.

Runs on openai 3.x (httpx2) and, in ``make test-openai2``, on openai 2.x (httpx).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from typing import Any

import openai
import pytest

from studio_embeddings import (
    NEBIUS,
    AuthenticationError,
    BadRequestError,
    EmbeddingsClient,
    NotFoundError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RetryPolicy,
    ServerError,
)
from studio_embeddings.emulator import embed_text

FAST = RetryPolicy(max_retries=3, initial_wait=0.001, max_wait=0.01)
QWEN = "Qwen/Qwen3-Embedding-8B"
FOLDER = "b1gtestfolder"


def nebius(emu: Any, **kwargs: Any) -> EmbeddingsClient:
    kwargs.setdefault("retry_policy", FAST)
    return EmbeddingsClient("nebius", api_key="nb-key", base_url=emu.base_url("nebius"), **kwargs)


def yandex(emu: Any, **kwargs: Any) -> EmbeddingsClient:
    kwargs.setdefault("retry_policy", FAST)
    kwargs.setdefault("project", FOLDER)
    kwargs.setdefault("api_key", "yc-key")
    return EmbeddingsClient("yandex", base_url=emu.base_url("yandex"), **kwargs)


def texts(n: int) -> list[str]:
    return [f"document number {i} about topic {i % 7}" for i in range(n)]


# ------------------------------------------------------------------ Nebius


def test_nebius_request_shape(emulator: Any) -> None:
    client = nebius(emulator, project="project-e00abc", dimensions=512, service_tier="flex")
    vectors = client.embed(["hello world"], kind="document")
    assert vectors == [embed_text("nebius", QWEN, "hello world", dimensions=512)]
    (req,) = emulator.requests
    assert req.path == "/nebius/v1/embeddings"
    assert req.query == {"ai_project_id": "project-e00abc"}
    assert req.headers["authorization"] == "Bearer nb-key"
    assert "openai-project" not in req.headers
    assert "openai-organization" not in req.headers
    assert req.body["model"] == QWEN
    assert req.body["encoding_format"] == "base64"
    assert req.body["dimensions"] == 512
    assert req.body["service_tier"] == "flex"
    assert req.body["input"] == ["hello world"]


def test_nebius_float_and_base64_decode_to_the_same_vectors(emulator: Any) -> None:
    docs = texts(10)
    as_b64 = nebius(emulator).embed(docs)
    as_float = nebius(emulator, encoding_format="float").embed(docs)
    assert as_b64 == as_float == [embed_text("nebius", QWEN, t) for t in docs]
    assert [r.body["encoding_format"] for r in emulator.requests] == ["base64", "float"]


def test_nebius_batches_fan_out_and_keep_order(emulator: Any) -> None:
    docs = texts(203)
    result = nebius(emulator, batch_size=16, max_concurrency=4).embed_with_result(docs)
    assert result.vectors == [embed_text("nebius", QWEN, t) for t in docs]
    assert result.requests == len(emulator.requests) == 13
    assert sorted(len(r.body["input"]) for r in emulator.requests) == [11] + [16] * 12
    assert result.total_tokens > 0


def test_nebius_query_instruction_on_queries_only(emulator: Any) -> None:
    client = nebius(emulator)
    client.embed(["a document"], kind="document")
    client.embed(["a question"], kind="query")
    doc, query = (r.body["input"][0] for r in emulator.requests)
    assert doc == "a document"
    assert query == f"Instruct: {NEBIUS.default_query_task}\nQuery:a question"


def test_no_project_means_no_query_parameter(emulator: Any) -> None:
    nebius(emulator).embed(["x"])
    assert emulator.requests[0].query == {}


def test_openai_environment_never_reaches_the_wire(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-leak")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-leak")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "X-Leak: yes")
    nebius(emulator).embed(["x"])
    yandex(emulator).embed(["x"])
    for req in emulator.requests:
        flat = str(req.headers) + str(req.query) + str(req.body)
        for leak in ("sk-openai-secret", "org-leak", "proj-leak", "x-leak"):
            assert leak not in flat.lower()
    assert emulator.requests[1].headers["openai-project"] == FOLDER


# ------------------------------------------------------------------ Yandex


def test_yandex_request_shape_and_models_per_side(emulator: Any) -> None:
    client = yandex(emulator, data_logging=False)
    doc = client.embed(["Paris has a tower"], kind="document")
    query = client.embed(["which tower?"], kind="query")
    d, q = emulator.requests
    assert d.path == "/yandex/v1/embeddings"
    assert d.headers["authorization"] == "Api-Key yc-key"
    assert d.headers["openai-project"] == FOLDER
    assert d.headers["x-data-logging-enabled"] == "false"
    assert d.body == {
        "model": f"emb://{FOLDER}/text-search-doc/latest",
        "input": "Paris has a tower",
        "encoding_format": "float",
    }
    assert q.body["model"] == f"emb://{FOLDER}/text-search-query/latest"
    assert doc[0] == embed_text("yandex", d.body["model"], "Paris has a tower")
    assert query[0] == embed_text("yandex", q.body["model"], "which tower?")
    assert len(doc[0]) == 256


def test_yandex_one_text_per_request_in_order(emulator: Any) -> None:
    emulator.configure(yandex_rps=None)
    docs = texts(12)
    vectors = yandex(emulator, requests_per_second=0).embed(docs)
    model = f"emb://{FOLDER}/text-search-doc/latest"
    assert vectors == [embed_text("yandex", model, t) for t in docs]
    assert len(emulator.requests) == 12
    assert all(isinstance(r.body["input"], str) for r in emulator.requests)


def test_yandex_iam_token_is_bearer(emulator: Any) -> None:
    yandex(emulator, api_key=None, iam_token="t1.iam-token").embed(["x"])
    assert emulator.requests[0].headers["authorization"] == "Bearer t1.iam-token"


def test_yandex_pacing_holds_the_quota(emulator: Any) -> None:
    client = yandex(emulator)  # default: 10 requests/s, as the emulator allows
    started = time.monotonic()
    client.embed(texts(15))
    elapsed = time.monotonic() - started
    statuses = [r.status for r in emulator.requests]
    assert statuses.count(429) == 0
    assert elapsed >= 1.3  # 15 requests at 10/s cannot finish faster


def test_callable_iam_token_is_refreshed_once_on_401(emulator: Any) -> None:
    issued: list[str] = []

    def token() -> str:
        issued.append(f"t1.token-{len(issued) + 1}")
        return issued[-1]

    client = yandex(emulator, api_key=None, iam_token=token)
    emulator.script("yandex", [401])
    assert len(client.embed(["x"])) == 1
    assert [r.headers["authorization"] for r in emulator.requests] == [
        "Bearer t1.token-1",
        "Bearer t1.token-2",
    ]
    emulator.clear()
    emulator.script("yandex", [401, 401])
    with pytest.raises(AuthenticationError):
        client.embed(["x"])
    assert len(emulator.requests) == 2


# ----------------------------------------------------------------- retries


def test_retries_transient_errors_then_succeeds(emulator: Any) -> None:
    emulator.script("nebius", [503, 500, (429, {"retry-after-ms": "5"}), "drop"])
    result = nebius(
        emulator, retry_policy=RetryPolicy(max_retries=4, initial_wait=0.001)
    ).embed_with_result(["x"])
    assert result.vectors == [embed_text("nebius", QWEN, "x")]
    assert len(emulator.requests) == 5
    assert result.retries == 4


def test_max_retries_bounds_attempts(emulator: Any) -> None:
    emulator.script("nebius", [503] * 10)
    with pytest.raises(ServerError) as info:
        nebius(emulator, retry_policy=RetryPolicy(max_retries=2, initial_wait=0.001)).embed(["x"])
    assert len(emulator.requests) == 3
    assert info.value.attempts == 3
    assert info.value.status_code == 503
    assert "Nebius AI Studio answered 503" in str(info.value)
    assert "after 3 attempts" in str(info.value)


# Sync calls run on the package's own event loop, or on a thread pool when the user gives
# an http client of their own: the rules below hold on both.
SYNC_RUNNERS = ["own loop", "user's http client"]


def runner(name: str) -> dict[str, Any]:
    return {} if name == "own loop" else {"http_client": openai.DefaultHttpxClient()}


@pytest.mark.parametrize("sync_runner", SYNC_RUNNERS)
def test_retry_waits_follow_the_policy(emulator: Any, sync_runner: str) -> None:
    waits: list[float] = []
    policy = RetryPolicy(max_retries=3, initial_wait=0.5, jitter=False, sleep=waits.append)
    emulator.script("nebius", [503, (429, {"retry-after": "0.02"}), 502])
    nebius(emulator, retry_policy=policy, **runner(sync_runner)).embed(["x"])
    assert waits == [0.5, 0.02, 2.0]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, BadRequestError),
    ],
)
def test_client_errors_are_sent_once(emulator: Any, status: int, error: type) -> None:
    emulator.script("nebius", [status])
    with pytest.raises(error) as info:
        nebius(emulator).embed(["x"])
    assert len(emulator.requests) == 1
    assert info.value.status_code == status
    assert "nb-key" not in str(info.value)


def test_exhausted_quota_is_not_retried(emulator: Any) -> None:
    emulator.script("nebius", ["quota"])
    with pytest.raises(QuotaExhaustedError, match="quota"):
        nebius(emulator).embed(["x"])
    assert len(emulator.requests) == 1


def test_unknown_model_says_what_to_fix(emulator: Any) -> None:
    with pytest.raises(NotFoundError, match="unknown model 'no/such-model'"):
        nebius(emulator, model="no/such-model").embed(["x"])


def test_yandex_wrong_folder_header_is_a_clear_error(emulator: Any) -> None:
    client = yandex(emulator, default_headers={"OpenAI-Project": "b1gother"})
    with pytest.raises(BadRequestError) as info:
        client.embed(["x"])
    assert info.value.status_code == 400
    assert len(emulator.requests) == 1


# ------------------------------------------------------------------- async


async def test_async_matches_sync_in_order(emulator: Any) -> None:
    docs = texts(150)
    client = nebius(emulator, batch_size=8, max_concurrency=5)
    got = await client.aembed(docs)
    assert got == client.embed(docs)
    assert got == [embed_text("nebius", QWEN, t) for t in docs]


async def test_async_retries_and_concurrency_bound(emulator: Any) -> None:
    emulator.configure(latency_ms=30)
    emulator.script("nebius", [503, 503])
    client = nebius(emulator, batch_size=1, max_concurrency=3)
    await client.aembed(texts(9))
    assert len(emulator.requests) == 11
    # Never more than 3 requests in flight: recorded times are arrival times, 30 ms apart per wave.
    starts = sorted(r.time for r in emulator.requests)
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] > 0.02


async def test_async_client_per_event_loop(emulator: Any) -> None:
    client = nebius(emulator)
    await client.aembed(["x"])
    other = await asyncio.to_thread(lambda: asyncio.run(client.aembed(["y"])))
    assert other == [embed_text("nebius", QWEN, "y")]


def test_empty_input_sends_nothing(emulator: Any) -> None:
    assert nebius(emulator).embed([]) == []
    assert yandex(emulator).embed([], kind="query") == []
    assert emulator.requests == []


def test_token_refresh_is_not_an_attempt_of_its_own(emulator: Any) -> None:
    tokens = iter(["t1.first", "t1.second", "t1.third"])
    client = yandex(
        emulator,
        api_key=None,
        iam_token=lambda: next(tokens),
        retry_policy=RetryPolicy(max_retries=1, initial_wait=0.001),
    )
    emulator.script("yandex", [401, 503, 503])
    with pytest.raises(ServerError) as info:
        client.embed(["x"])
    # attempt 1: 401, fresh token, 503; attempt 2: 503; then max_retries=1 is spent.
    assert info.value.attempts == 2
    assert len(emulator.requests) == 3


def test_one_expired_token_is_fetched_again_once_for_all_workers(emulator: Any) -> None:
    emulator.configure(latency_ms=50, yandex_rps=None)
    issued: list[str] = []

    def token() -> str:
        issued.append(f"t1.token-{len(issued) + 1}")
        return issued[-1]

    client = yandex(
        emulator, api_key=None, iam_token=token, requests_per_second=0, max_concurrency=3
    )
    emulator.script("yandex", [401, 401, 401])
    assert len(client.embed(texts(3))) == 3
    assert issued == ["t1.token-1", "t1.token-2"]


@pytest.mark.parametrize("sync_runner", SYNC_RUNNERS)
def test_failure_wakes_workers_from_their_backoff(emulator: Any, sync_runner: str) -> None:
    emulator.configure(latency_ms=30)
    emulator.script("nebius", [(429, {"retry-after": "4"}), 400])
    client = nebius(
        emulator, batch_size=1, max_concurrency=2, retry_policy=RetryPolicy(), **runner(sync_runner)
    )
    started = time.monotonic()
    with pytest.raises(BadRequestError):
        client.embed(texts(6))
    assert time.monotonic() - started < 2.0


async def test_async_failure_cancels_workers_in_backoff(emulator: Any) -> None:
    emulator.configure(latency_ms=30)
    emulator.script("nebius", [(429, {"retry-after": "4"}), 400])
    client = nebius(emulator, batch_size=1, max_concurrency=2, retry_policy=RetryPolicy())
    started = time.monotonic()
    with pytest.raises(BadRequestError):
        await client.aembed(texts(6))
    assert time.monotonic() - started < 2.0


def test_unparseable_retry_after_falls_back_to_backoff(emulator: Any) -> None:
    emulator.script("nebius", [(503, {"retry-after": "soon"})])
    assert nebius(emulator).embed(["x"]) == [embed_text("nebius", QWEN, "x")]
    assert len(emulator.requests) == 2


def test_sync_calls_run_on_the_package_loop_unless_given_an_http_client(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio_embeddings import _engine as _client

    answers: list[str] = []
    parse = _client.parse_answer

    def spy(*args: Any) -> Any:
        answers.append(threading.current_thread().name)
        return parse(*args)

    monkeypatch.setattr(_client, "parse_answer", spy)
    own = nebius(emulator, batch_size=2)
    assert own.embed(texts(6)) == [embed_text("nebius", QWEN, t) for t in texts(6)]
    assert answers == ["studio-embeddings-loop"] * 3
    answers.clear()
    sent: list[str] = []
    hooks = {"request": [lambda request: sent.append(threading.current_thread().name)]}
    with openai.DefaultHttpxClient(event_hooks=hooks) as http:
        client = nebius(emulator, batch_size=2, http_client=http)
        assert client.embed(texts(6)) == [embed_text("nebius", QWEN, t) for t in texts(6)]
    # The same engine on the package loop; the user's client sends from worker threads.
    assert answers == ["studio-embeddings-loop"] * 3
    assert len(sent) == 3
    assert all(name.startswith("studio-embeddings_") for name in sent)
    own.close()
    assert own.transport.loops == 0  # closed on the loop it was bound to


async def test_a_sync_call_works_inside_a_running_loop(emulator: Any) -> None:
    # As in Jupyter: the caller's loop is running (and blocked); the package's loop works.
    client = nebius(emulator, batch_size=2)
    assert client.embed(texts(5)) == [embed_text("nebius", QWEN, t) for t in texts(5)]
    assert await client.aembed(texts(3)) == client.embed(texts(3))


@pytest.mark.parametrize("sync_runner", SYNC_RUNNERS)
def test_ctrl_c_stops_a_sync_call_and_its_requests(emulator: Any, sync_runner: str) -> None:
    emulator.configure(latency_ms=200)
    client = nebius(emulator, batch_size=1, max_concurrency=2, **runner(sync_runner))
    interrupt = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    interrupt.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            client.embed(texts(40))  # 4 s of work
    finally:
        interrupt.cancel()
    assert time.monotonic() - started < 2.0
    sent = len(emulator.requests)
    assert sent <= 6
    time.sleep(0.5)
    assert len(emulator.requests) == sent  # nothing is sent after the interrupt


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_dropped_client_is_closed_on_its_loop_and_spoils_no_other(
    served_emulator: dict[str, str],
) -> None:
    # A client dropped without close() is garbage with its connections. They must be closed on
    # the loop they belong to: closed by the garbage collector in another thread, they left the
    # loop watching file descriptors that the next connections reused, and those requests hung
    # until their timeout.
    def client(**kwargs: Any) -> EmbeddingsClient:
        return EmbeddingsClient(
            "nebius", api_key="k", base_url=served_emulator["nebius"], batch_size=8, **kwargs
        )

    kept = client(timeout=3, max_retries=0)
    kept.embed(texts(4))
    for _ in range(3):
        client().embed(texts(256))  # 32 connections, then dropped
        gc.collect()
        started = time.monotonic()
        assert len(kept.embed(texts(256))) == 256
        assert time.monotonic() - started < 2.0


def test_a_slow_token_callable_holds_up_no_other_client(emulator: Any) -> None:
    def slow_token() -> str:
        time.sleep(1.5)
        return "t1.slow"

    emulator.configure(yandex_rps=None)
    slow = yandex(emulator, api_key=None, iam_token=slow_token, requests_per_second=0)
    other = nebius(emulator, max_concurrency=16, batch_size=1)
    waiting = threading.Thread(target=slow.embed, args=(texts(8),))
    waiting.start()
    time.sleep(0.2)  # the slow client is fetching its token now
    started = time.monotonic()
    assert len(other.embed(texts(20))) == 20
    assert time.monotonic() - started < 1.0
    waiting.join()


def test_a_token_callable_may_itself_make_a_sync_call(emulator: Any) -> None:
    inner = nebius(emulator)

    def token() -> str:
        inner.embed(["made from inside a token callable"])
        return "t1.token"

    emulator.configure(yandex_rps=None)
    outer = yandex(emulator, api_key=None, iam_token=token, requests_per_second=0)
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(len(outer.embed(texts(20)))))
    worker.start()
    worker.join(timeout=15)
    assert done == [20]


def test_sync_calls_after_interpreter_shutdown_began_use_threads(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio_embeddings import _loop

    monkeypatch.setattr(_loop, "_shut_down", True)  # as after our atexit hook ran
    client = nebius(emulator, batch_size=2)
    assert client.embed(texts(5)) == [embed_text("nebius", QWEN, t) for t in texts(5)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, 3.12+
def test_sync_calls_work_in_a_forked_child(emulator: Any) -> None:
    client = nebius(emulator)
    client.embed(["parent"])  # the package loop runs in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            ok = client.embed(["child"]) == [embed_text("nebius", QWEN, "child")]
            os.write(write, b"ok" if ok else b"wrong")
        except BaseException as e:
            os.write(write, repr(e).encode()[:200])
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as answer:
        assert answer.read() == b"ok"
    assert status == 0
    assert client.embed(["parent again"]) == [embed_text("nebius", QWEN, "parent again")]


def test_async_clients_of_finished_loops_are_dropped(emulator: Any) -> None:
    client = nebius(emulator)
    for _ in range(4):
        asyncio.run(client.aembed(["x"]))
    assert client.transport.loops == 1


@pytest.mark.parametrize(
    ("bad", "error"),
    [(["ok", ""], ValueError), (["ok", " \n"], ValueError), (["ok", None], TypeError)],
)
def test_bad_texts_send_nothing(emulator: Any, bad: list[Any], error: type) -> None:
    with pytest.raises(error, match=r"texts\[1\]"):
        nebius(emulator).embed(bad)
    with pytest.raises(error, match=r"texts\[1\]"):
        yandex(emulator).embed(bad, kind="query")
    assert emulator.requests == []


def test_yandex_permission_denied_names_the_folder(emulator: Any) -> None:
    emulator.script("yandex", [403])
    with pytest.raises(PermissionDeniedError, match=f"folder_id='{FOLDER}'"):
        yandex(emulator).embed(["x"])
    assert len(emulator.requests) == 1


async def test_max_concurrency_bounds_requests_per_client_across_calls(emulator: Any) -> None:
    # Each request takes 200 ms at the server: arrivals closer than that overlap in flight.
    emulator.configure(latency_ms=200)
    client = nebius(emulator, max_concurrency=4)
    sync_done = threading.Event()

    def sync_side() -> None:  # sync calls of the same client share the same bound
        client.embed(texts(3))
        sync_done.set()

    worker = threading.Thread(target=sync_side)
    worker.start()
    vectors = await asyncio.gather(*(client.aembed([f"query {i}"], "query") for i in range(20)))
    worker.join(timeout=30)
    assert sync_done.is_set()
    assert len(vectors) == 20
    arrivals = sorted(r.time for r in emulator.requests)
    assert len(arrivals) == 21
    overlapping = max(sum(1 for u in arrivals if t - 0.19 < u <= t) for t in arrivals)
    assert overlapping <= 4
