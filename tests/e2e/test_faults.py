"""Reliability under faults, through the emulator: nothing lost, duplicated or misplaced.

The fault mix of the reliability issue: 15% 503, 10% 429 (half with Retry-After), 5% 500 and
5% dropped connections. Every vector is checked against the emulator's own function, so a
vector from the wrong text, the wrong model or the wrong position fails the test.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import openai
import pytest

from studio_embeddings import (
    AuthenticationError,
    ConnectionFailedError,
    DeadlineExceededError,
    EmbeddingsClient,
    RetryPolicy,
    ServerError,
)
from studio_embeddings.emulator import Faults, embed_text

FAULTS = Faults(
    p503=0.15, p429=0.05, p429_retry_after=0.05, p500=0.05, p_drop=0.05, retry_after_s=0.01, seed=7
)
# 35% of answers fail: 16 attempts make a request that never succeeds a 1-in-10^7 event.
FAST = RetryPolicy(max_retries=15, initial_wait=0.002, max_wait=0.02)
FOLDER = "b1gfaultfolder"
QWEN = "Qwen/Qwen3-Embedding-8B"


def corpus(n: int) -> list[str]:
    return [
        f"record {i}: the quick brown fox no. {i} jumps over lazy dog {i % 13}" for i in range(n)
    ]


def expected(provider: str, texts: list[str]) -> list[list[float]]:
    model = QWEN if provider == "nebius" else f"emb://{FOLDER}/text-search-doc/latest"
    return [embed_text(provider, model, t) for t in texts]


def core(emu: Any, provider: str, **kwargs: Any) -> EmbeddingsClient:
    kwargs.setdefault("retry_policy", FAST)
    kwargs.setdefault("api_key", "secret-key-123")
    if provider == "yandex":
        kwargs.setdefault("project", FOLDER)
        kwargs.setdefault("requests_per_second", 0)  # the emulator's quota is off in these tests
    return EmbeddingsClient(provider, base_url=emu.base_url(provider), **kwargs)


@pytest.fixture
def faulty(emulator: Any) -> Any:
    emulator.configure(faults=FAULTS, yandex_rps=None)
    return emulator


@pytest.mark.parametrize("provider", ["nebius", "yandex"])
def test_sync_ingestion_survives_faults(faulty: Any, provider: str) -> None:
    docs = corpus(300)
    result = core(faulty, provider, batch_size=8, max_concurrency=8).embed_with_result(docs)
    assert result.vectors == expected(provider, docs)
    statuses = [r.status for r in faulty.requests]
    assert result.retries > 0
    assert any(s in (429, 500, 503) for s in statuses)


@pytest.mark.parametrize("provider", ["nebius", "yandex"])
async def test_async_ingestion_survives_faults(faulty: Any, provider: str) -> None:
    docs = corpus(300)
    vectors = await core(faulty, provider, batch_size=8, max_concurrency=8).aembed(docs)
    assert vectors == expected(provider, docs)


def test_persistent_outage_gives_up_with_provider_and_status(emulator: Any) -> None:
    emulator.configure(faults=Faults(p503=1.0))
    client = core(emulator, "nebius", retry_policy=RetryPolicy(max_retries=3, initial_wait=0.001))
    with pytest.raises(ServerError) as info:
        client.embed(["x"])
    assert info.value.attempts == 4
    assert len(emulator.requests) == 4
    message = str(info.value)
    assert "Nebius AI Studio" in message
    assert "503" in message
    assert "4 attempts" in message


def test_persistent_drops_give_up_as_connection_failure(emulator: Any) -> None:
    emulator.configure(faults=Faults(p_drop=1.0))
    client = core(emulator, "yandex", retry_policy=RetryPolicy(max_retries=2, initial_wait=0.001))
    with pytest.raises(ConnectionFailedError, match="Yandex AI Studio"):
        client.embed(["x"])
    assert len(emulator.requests) == 3


def test_deadline_bounds_the_wall_time_of_a_call(emulator: Any) -> None:
    emulator.configure(faults=Faults(p503=1.0))
    policy = RetryPolicy(max_retries=100, initial_wait=0.2, jitter=False, max_wait=0.2)
    client = core(emulator, "nebius", retry_policy=policy, deadline=0.5)
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError, match="deadline"):
        client.embed(corpus(5))
    assert time.monotonic() - started < 1.5


def test_timeout_is_a_setting_and_retried(emulator: Any) -> None:
    emulator.configure(latency_ms=400)
    client = core(
        emulator, "nebius", timeout=0.1, retry_policy=RetryPolicy(max_retries=1, initial_wait=0.001)
    )
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError, match=r"within 0\.1 s"):
        client.embed(["x"])
    assert len(emulator.requests) >= 1
    assert time.monotonic() - started < 2.0


def test_default_timeout_is_sane() -> None:
    client = EmbeddingsClient("nebius", api_key="k")
    assert 0 < client.timeout <= 120
    assert client.transport.sync_client().timeout == client.timeout


def test_one_failed_request_fails_the_whole_call(emulator: Any) -> None:
    # The third request fails for good; nothing is returned half-filled.
    emulator.script("nebius", [200, 200, 400])
    client = core(emulator, "nebius", batch_size=2, max_concurrency=1)
    with pytest.raises(Exception, match="400"):
        client.embed(corpus(10))


async def test_one_failed_request_fails_the_whole_async_call(emulator: Any) -> None:
    emulator.script("nebius", [200, 422])
    client = core(emulator, "nebius", batch_size=2, max_concurrency=1)
    with pytest.raises(Exception, match="422"):
        await client.aembed(corpus(10))


@pytest.mark.parametrize("own_http_client", [False, True])
def test_failure_stops_the_remaining_requests(emulator: Any, own_http_client: bool) -> None:
    emulator.configure(latency_ms=20)
    # Every request would be refused; fail-fast means only the first few are ever sent.
    emulator.script("nebius", [401] * 60)
    http = {"http_client": openai.DefaultHttpxClient()} if own_http_client else {}
    client = core(emulator, "nebius", batch_size=1, max_concurrency=2, **http)
    with pytest.raises(Exception, match="401"):
        client.embed(corpus(60))
    assert len(emulator.requests) < 20


def test_secrets_stay_out_of_logs_and_errors(
    emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "studio_embeddings"):
        caplog.set_level(logging.DEBUG, logger=name)  # restored after the test
    emulator.script("nebius", [503, 401])
    client = core(emulator, "nebius")
    with pytest.raises(AuthenticationError) as info:
        client.embed(["x"])
    assert "secret-key-123" not in caplog.text
    assert "secret-key-123" not in str(info.value)
    assert "secret-key-123" not in repr(info.value)
    assert "secret-key-123" not in repr(client)


@pytest.mark.parametrize(
    "text",
    [
        "x" * 50_000,
        "Ελληνικά, 中文, العربية, हिन्दी, русский, 日本語",
        "emoji 🚀🔥👍🏽 and flags 🇫🇷",
        "control \x01\x02\x1f chars and NUL \x00 inside",
        "  leading and trailing spaces  \n\n",
        "line one\nline two\r\nline three",
    ],
)
def test_unusual_texts_are_sent_exactly_as_given(emulator: Any, text: str) -> None:
    vectors = core(emulator, "nebius").embed([text])
    assert emulator.requests[0].body["input"] == [text]
    assert vectors == [embed_text("nebius", QWEN, text)]


def test_log_capture_sees_the_request_log(emulator: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Guards the secrets test above: the debug logs it searches are really captured."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="openai")
    core(emulator, "nebius").embed(["x"])
    assert "/embeddings" in caplog.text
