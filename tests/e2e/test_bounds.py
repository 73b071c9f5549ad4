"""Every bound holds, every input and every answer is checked (issue 12).

Each case runs against a real server on 127.0.0.1: the emulator where it can play the part,
else the scripted server of ``conftest.py`` (a body trickled 8 bytes a second, a connection
held open, a hostile body). Each asserts the error type, the wall time within its bound
(loosely: a bound of 3 s may finish within 4.5 s, never 9), how many requests the server saw,
and that no secret appears in messages or logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from conftest import Reply, ScriptedServer
from studio_embeddings import (
    BadRequestError,
    ConfigurationError,
    ConnectionFailedError,
    DeadlineExceededError,
    EmbeddingsClient,
    QuotaExhaustedError,
    RateLimitError,
    ResponseError,
    RetryPolicy,
)
from studio_embeddings._pacing import Pacer

SECRET = "sk-top-secret-0123456789"
FAST = RetryPolicy(max_retries=3, initial_wait=0.01, max_wait=0.05)


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="studio_embeddings")


def no_secret(
    caplog: pytest.LogCaptureFixture, *errors: BaseException, secret: str = SECRET
) -> None:
    assert secret not in caplog.text
    for error in errors:
        assert secret not in str(error)
        assert secret not in repr(error)
        assert secret not in str(error.__cause__ or "")


def nebius(url: str, **kwargs: Any) -> EmbeddingsClient:
    kwargs.setdefault("api_key", SECRET)
    kwargs.setdefault("retry_policy", FAST)
    return EmbeddingsClient("nebius", base_url=url, **kwargs)


def yandex(url: str, **kwargs: Any) -> EmbeddingsClient:
    kwargs.setdefault("api_key", SECRET)
    kwargs.setdefault("retry_policy", FAST)
    kwargs.setdefault("project", "b1gfolder")
    kwargs.setdefault("requests_per_second", 0)
    return EmbeddingsClient("yandex", base_url=url, **kwargs)


async def embed(client: EmbeddingsClient, texts: list[str], mode: str) -> list[list[float]]:
    if mode == "async":
        return await client.aembed(texts)
    return await asyncio.to_thread(client.embed, texts)


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


# ------------------------------------------------------------------ 1. timeout and deadline


@MODES
async def test_a_trickled_body_is_bounded_by_timeout_and_deadline(
    server: ScriptedServer, clock: Any, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    # Every answer is a valid 200 sent 8 bytes a second: about 20 s per body.
    server.script(*[Reply(trickle=8) for _ in range(10)])
    client = nebius(server.base_url, timeout=2, deadline=3)
    with pytest.raises(DeadlineExceededError) as info:
        await embed(client, ["hello"], mode)
    assert 2.9 <= clock() < 4.5
    assert 1 <= server.requests <= 2  # the first attempt timed out at 2 s, the second at 3 s
    assert info.value.attempts >= 1
    no_secret(caplog, info.value)


@MODES
async def test_a_trickled_body_is_bounded_by_timeout_alone(
    server: ScriptedServer, clock: Any, mode: str
) -> None:
    server.script(Reply(trickle=8), Reply(trickle=8))
    client = nebius(
        server.base_url, timeout=1, retry_policy=RetryPolicy(max_retries=1, initial_wait=0.01)
    )
    with pytest.raises(ConnectionFailedError, match=r"within 1 s") as info:
        await embed(client, ["hello"], mode)
    assert clock() < 3.0  # two attempts of 1 s each
    assert server.requests == 2
    assert info.value.attempts == 2


@MODES
async def test_a_held_connection_is_bounded_by_the_deadline(
    server: ScriptedServer, clock: Any, mode: str
) -> None:
    server.script(*[Reply(hold=30) for _ in range(10)])
    client = nebius(
        server.base_url, timeout=30, deadline=1.5, retry_policy=RetryPolicy(max_retries=50)
    )
    with pytest.raises(DeadlineExceededError):
        await embed(client, ["hello"], mode)
    assert 1.4 <= clock() < 2.3
    assert server.requests == 1


@MODES
async def test_the_deadline_is_checked_while_waiting_on_the_pacer(
    emulator: Any, clock: Any, mode: str
) -> None:
    client = nebius(
        emulator.base_url("nebius"),
        requests_per_minute=2,
        deadline=3,
        batch_size=1,
        max_concurrency=1,
    )
    with pytest.raises(DeadlineExceededError, match="quota") as info:
        await embed(client, ["one", "two", "three"], mode)
    assert clock() < 1.5  # the second request's slot is 30 s away: known at once
    assert len(emulator.requests) <= 1
    assert "deadline of 3" in str(info.value)


@MODES
async def test_a_slow_token_callable_is_bounded_by_the_deadline(
    server: ScriptedServer, clock: Any, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    def slow_token() -> str:
        time.sleep(3)
        return SECRET

    client = yandex(server.base_url, api_key=None, iam_token=slow_token, deadline=1)
    with pytest.raises(DeadlineExceededError, match="iam_token") as info:
        await embed(client, ["hello"], mode)
    assert clock() < 1.8
    assert server.requests == 0
    no_secret(caplog, info.value)


# ------------------------------------------------------------------ 2. a transient 429


def test_one_transient_429_does_not_throttle_the_instance(
    server: ScriptedServer, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Two good requests, then one 429 saying the minute is spent (and no Retry-After), then a
    # healthy server: the call retries after its backoff and later calls are not held.
    spent = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "0"}
    server.script(Reply(), Reply(), Reply(429, headers=spent))
    client = nebius(server.base_url, batch_size=1, max_concurrency=1)
    assert len(client.embed(["a", "b"])) == 2
    assert len(client.embed(["c"])) == 1  # the 429, then a retry
    pacer = client.limiter
    assert isinstance(pacer, Pacer)
    assert pacer.learned_per_minute is None  # two requests are no evidence of a 2 rpm quota
    started = time.monotonic()
    client.embed(["d"])
    client.embed(["e"])
    assert time.monotonic() - started < 1.0
    assert clock() < 3.0
    assert server.requests == 6
    assert "per-minute quota reached" not in caplog.text


def test_a_429_after_real_evidence_teaches_a_budget(server: ScriptedServer, clock: Any) -> None:
    # Twelve accepted in the minute, then "spent": the client paces to about 12/min, and
    # holds until the oldest of them leaves the window; a deadline turns that into an error.
    spent = {"x-ratelimit-remaining-requests": "0"}
    server.script(*[Reply() for _ in range(12)], Reply(429, headers=spent))
    client = nebius(server.base_url, batch_size=1, max_concurrency=1, deadline=2)
    client.embed([f"t{i}" for i in range(12)])
    with pytest.raises(DeadlineExceededError, match="quota"):
        client.embed(["one more"])
    pacer = client.limiter
    assert isinstance(pacer, Pacer)
    assert pacer.learned_per_minute == pytest.approx(12 * 0.97)
    assert server.requests == 13
    assert clock() < 3.0


@pytest.mark.parametrize("remaining", ["50", "1000000"])
async def test_a_learned_limit_is_forgotten_when_the_server_shows_room(
    server: ScriptedServer, remaining: str
) -> None:
    # A limit learned earlier is forgotten on the first answer that shows room for at least
    # that budget again.
    pacer = Pacer(remaining_headers=("x-ratelimit-remaining-requests",))
    for _ in range(12):
        pacer.accepted()
    pacer.learn_limit()
    assert pacer.learned_per_minute == 12
    pacer._paused_until = 0.0  # skip the learned pause: this test is about what comes after
    for rate in pacer._requests:
        rate._next = 0.0
    server.script(Reply(headers={"x-ratelimit-remaining-requests": remaining}))
    client = nebius(server.base_url, batch_size=1, limiter=pacer)
    await client.aembed(["a"])
    assert pacer.learned_per_minute is None
    started = time.monotonic()
    await client.aembed([f"t{i}" for i in range(10)])
    assert time.monotonic() - started < 1.0


# ------------------------------------------------------------------ 3. vectors are checked

HOSTILE_BODIES: list[tuple[Any, str]] = [
    ({"data": [{"index": 0, "embedding": ["1", None, [2], float("nan")]}]}, "non-number"),
    ({"data": [{"index": 0, "embedding": [0.5, float("nan")]}]}, "NaN or infinite"),
    (b'{"data": [{"index": 0, "embedding": [0.5, Infinity]}]}', "NaN or infinite"),
    (b'{"data": [{"index": 0, "embedding": [0.5, 1e999]}]}', "NaN or infinite"),
    ({"data": [{"index": 0, "embedding": [0.5, True]}]}, "boolean"),
    ({"data": [{"index": 0, "embedding": []}]}, "empty"),
    ({"data": [{"index": 0, "embedding": {"0": 1.0}}]}, "not a list"),
    ({"data": [{"index": 0, "embedding": None}]}, "not a list"),
    ({"data": [{"index": 0}]}, "not a list"),
    ({"data": [None]}, "not an object"),
    ({"data": ["x"]}, "not an object"),
    ({"data": [{"index": 10**30, "embedding": [1.0]}]}, "index"),
    ({"data": [{"index": -1, "embedding": [1.0]}]}, "index"),
    ({"data": [{"index": 0.0, "embedding": [1.0]}]}, "index"),
    ({"data": [{"index": True, "embedding": [1.0]}]}, "index"),
    ({"data": [{"index": "0", "embedding": [1.0]}]}, "index"),
    ({"data": {"0": {"index": 0, "embedding": [1.0]}}}, "vectors for 1 input"),
    ({"data": "nothing"}, "vectors for 1 input"),
    ({"data": []}, "0 vectors for 1 input"),
    ({"data": None}, "vectors for 1 input"),
    ({"nodata": 1}, "not an embeddings list"),
    (None, "not an embeddings list"),
    ([], "not an embeddings list"),
    ("a string", "not an embeddings list"),
    (b"", "not an embeddings list"),
    (b"<html>502 Bad Gateway</html>", "not an embeddings list"),
    (b'{"data": [{"index": 0, "embedding": [1.0]}', "not an embeddings list"),
    (b"[" * 200_000 + b"]" * 200_000, "not an embeddings list"),
    (b'{"data": [{"index": 0, "embedding": [1.0]}], "usage": {"total_tokens": Infinity}}', ""),
    (b'{"data": [{"index": 0, "embedding": [1.0]}], "usage": {"total_tokens": NaN}}', ""),
]


@pytest.mark.parametrize(("body", "match"), HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_a_hostile_200_is_a_response_error_or_harmless(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture, body: Any, match: str
) -> None:
    server.script(Reply(body=body))
    client = yandex(server.base_url)
    if not match:  # only the usage is odd: the vector is fine, the count is not trusted
        result = client.embed_with_result(["hello"])
        assert result.vectors == [[1.0]]
        assert result.total_tokens == 0
        return
    with pytest.raises(ResponseError, match=match) as info:
        client.embed(["hello"])
    assert info.value.attempts == 1
    assert info.value.provider == "yandex"
    assert server.requests == 1  # an answer that cannot be right is not asked again
    no_secret(caplog, info.value)


def test_base64_nan_and_infinity_are_refused(server: ScriptedServer) -> None:
    import base64
    import struct

    for value in (float("nan"), float("inf"), float("-inf")):
        raw = base64.b64encode(struct.pack("<3f", 0.5, value, 0.25)).decode()
        server.script(Reply(body={"data": [{"index": 0, "embedding": raw}]}))
        client = nebius(server.base_url, encoding_format="base64")
        with pytest.raises(ResponseError, match="NaN or infinite"):
            client.embed(["hello"])
    assert server.requests == 3


def test_a_huge_batch_index_is_refused_without_allocating(server: ScriptedServer) -> None:
    server.script(
        Reply(
            body={"data": [{"index": 0, "embedding": [1.0]}, {"index": 2**62, "embedding": [1.0]}]}
        )
    )
    with pytest.raises(ResponseError, match="index"):
        nebius(server.base_url).embed(["a", "b"])


# ------------------------------------------------------------------ 4. credentials and headers

BAD_KEYS = [
    "sk-one\nsk-two",  # an interior newline (two keys in the file)
    "sk-abc\r\nX-Injected: 1",
    "sk-\x00abc",
    "sk-\x7fabc",
    "ключ-sk-abc",  # not latin-1
    "sk-abc\u2028def",
    "   ",
    "\t\n",
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=range(len(BAD_KEYS)))
def test_a_key_that_cannot_be_a_header_is_refused_at_construction(
    server: ScriptedServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
) -> None:
    with pytest.raises(ConfigurationError, match="api_key") as info:
        nebius(server.base_url, api_key=key)
    no_secret(caplog, info.value, secret=key.strip() or key)
    for part in key.split():
        assert len(part) < 4 or part not in str(info.value)
    if "\x00" in key:
        return  # no environment variable can hold a NUL
    monkeypatch.setenv("NEBIUS_API_KEY", key)
    if key.strip():  # a whitespace-only variable counts as unset
        with pytest.raises(ConfigurationError, match="api_key"):
            nebius(server.base_url, api_key=None)
    else:
        with pytest.raises(ConfigurationError, match="needs an API key"):
            nebius(server.base_url, api_key=None)
    assert server.requests == 0


def test_a_key_with_a_trailing_newline_is_used_stripped(server: ScriptedServer) -> None:
    nebius(server.base_url, api_key=f"{SECRET}\n").embed(["hello"])
    assert server.seen[0].headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "ключ", "  "])
def test_a_bad_default_header_value_is_refused(server: ScriptedServer, value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"default_headers\['x-trace'\]") as info:
        nebius(server.base_url, default_headers={"x-trace": value})
    assert value.strip() == "" or value not in str(info.value)
    assert server.requests == 0


@pytest.mark.parametrize("name", ["X Bad", "X-Evil\r\nInjected", "X:Colon", "", "Ключ"])
def test_a_bad_default_header_name_is_refused(server: ScriptedServer, name: str) -> None:
    with pytest.raises(ConfigurationError, match="default_headers"):
        nebius(server.base_url, default_headers={name: "v"})
    assert server.requests == 0


def test_a_bad_token_from_the_callable_is_refused_unsent(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = f"{SECRET}\n{SECRET}"
    client = yandex(server.base_url, api_key=None, iam_token=lambda: token)
    with pytest.raises(ConfigurationError, match="iam_token") as info:
        client.embed(["hello"])
    assert server.requests == 0
    no_secret(caplog, info.value)


def test_secrets_stay_out_of_retry_logs(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(Reply(503), Reply(500), Reply(401, body={"error": {"message": "bad key"}}))
    with pytest.raises(Exception, match="401") as info:
        nebius(server.base_url).embed(["hello"])
    assert "retrying in" in caplog.text  # the INFO retry lines were captured
    no_secret(caplog, info.value)
    assert server.requests == 3


# ------------------------------------------------------------------ 5. texts UTF-8 cannot carry


@MODES
async def test_a_lone_surrogate_is_refused_before_anything_is_sent(
    server: ScriptedServer, mode: str
) -> None:
    texts = [f"text {i}" for i in range(30)]
    texts[25] = "ok \ud800 not ok"
    client = nebius(server.base_url, batch_size=1)
    with pytest.raises(ValueError, match=r"texts\[25\].*UTF-8.*character 3"):
        await embed(client, texts, mode)
    assert server.requests == 0


# ------------------------------------------------------------------ 6. URLs


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/v1",
        "http://127.0.0.1:65536/v1",
        "http://127.0.0.1:abc/v1",
        "http://127.0.0.1:-1/v1",
        "http://127.0.0.1:0/v1",
        "http://127.0.0.1/v1\r\nX-Injected: 1",
        "http://127.0.0.1/v\n1",
        "http://127.0.0.1/v 1",
        "http://[::1/v1",
        "ftp://127.0.0.1/v1",
        "127.0.0.1:8000/v1",
        "http:///v1",
        "https://",
        "",
        "   ",
        "http://evil.example/v1",  # plain http off loopback
    ],
)
def test_a_bad_base_url_is_refused_at_construction(url: str) -> None:
    if not url:
        # an empty base_url means "the provider's default"
        assert EmbeddingsClient("nebius", api_key=SECRET, base_url=url).base_url.startswith(
            "https://"
        )
        return
    with pytest.raises(ConfigurationError, match=r"base_url|http") as info:
        EmbeddingsClient("nebius", api_key=SECRET, base_url=url)
    assert "\n" not in str(info.value)
    assert "\r" not in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:url-pass-9876@127.0.0.1:8000/v1",
        "http://:url-pass-9876@127.0.0.1/v1",
        "http://user:url-pass-9876@127.0.0.1:99999/v1",  # refused for its port: still masked
        "http://user:url-pass-9876@127.0.0.1:8000/v\n1",
    ],
)
def test_a_base_url_with_a_password_is_refused_unshown(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    # httpx would send the URL's user and password as Basic auth in place of the API key.
    with pytest.raises(ConfigurationError, match="base_url") as info:
        nebius(url)
    no_secret(caplog, info.value, secret="url-pass-9876")


# ------------------------------------------------------------------ 7. a fresh token budget


def test_a_fresh_client_spends_the_first_minutes_tokens_at_once(emulator: Any, clock: Any) -> None:
    client = nebius(emulator.base_url("nebius"), tokens_per_minute=60_000)
    assert client.request_tokens(["x" * 128_000]) == [32_001]
    client.embed(["x" * 128_000])
    assert clock() < 2.0
    # ...but not the next minute's too: a second such request waits for the window.
    with pytest.raises(DeadlineExceededError, match="quota"):
        nebius(
            emulator.base_url("nebius"), tokens_per_minute=60_000, batch_size=1, deadline=3
        ).embed(["x" * 128_000, "y" * 128_000])
    assert clock() < 4.0
    # the first client's request, and perhaps the second's first (cancelled as it went out)
    assert 1 <= len(emulator.requests) <= 2


# ------------------------------------------------------------------ also mend


def test_a_429_with_code_insufficient_quota_is_final(server: ScriptedServer, clock: Any) -> None:
    body = {"error": {"message": "Please try later.", "code": "insufficient_quota"}}
    server.script(Reply(429, body=body), Reply(200))
    with pytest.raises(QuotaExhaustedError) as info:
        nebius(server.base_url).embed(["hello"])
    assert server.requests == 1
    assert info.value.attempts == 1
    assert info.value.status_code == 429


def test_a_quota_exhausted_429_from_the_emulator_is_final(emulator: Any) -> None:
    emulator.script("nebius", ["quota", 200])
    with pytest.raises(QuotaExhaustedError):
        nebius(emulator.base_url("nebius")).embed(["hello"])
    assert len(emulator.requests) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "nan"},
        {"retry-after": "inf"},
        {"retry-after": "-inf"},
        {"retry-after": "Infinity"},
        {"retry-after": "-5"},
        {"retry-after": "soon"},
        {"retry-after": "1e999"},
        {"retry-after-ms": "nan"},
        {"retry-after-ms": "inf", "retry-after": "nan"},
        {"retry-after": "Fri, 31 Dec 99999 23:59:59 GMT"},
        {"retry-after": "\x00"},
    ],
    ids=lambda h: repr(h),
)
def test_a_retry_after_that_is_not_a_finite_number_falls_back_to_backoff(
    server: ScriptedServer, clock: Any, headers: dict[str, str]
) -> None:
    server.script(Reply(429, headers=headers), Reply(503, headers=headers))
    result = nebius(server.base_url).embed_with_result(["hello"])
    assert result.retries == 2
    assert server.requests == 3
    assert clock() < 1.5


@MODES
async def test_a_huge_retry_after_cannot_outlast_the_deadline(
    server: ScriptedServer, clock: Any, mode: str
) -> None:
    server.script(Reply(429, headers={"retry-after": "1e308"}))
    client = nebius(server.base_url, deadline=2)
    with pytest.raises(DeadlineExceededError):
        await embed(client, ["hello"], mode)
    assert clock() < 1.0
    assert server.requests == 1


def test_a_huge_retry_after_is_capped(server: ScriptedServer, clock: Any) -> None:
    server.script(Reply(429, headers={"retry-after-ms": "1e308"}))
    policy = RetryPolicy(max_retries=1, retry_after_cap=0.2)
    nebius(server.base_url, retry_policy=policy).embed(["hello"])
    assert 0.15 < clock() < 1.5
    assert server.requests == 2


def test_errors_carry_their_attempts(server: ScriptedServer) -> None:
    server.script(Reply(400, body={"detail": "no"}))
    with pytest.raises(BadRequestError) as info:
        nebius(server.base_url).embed(["a"])
    assert info.value.attempts == 1
    server.script(*[Reply(429) for _ in range(4)])
    with pytest.raises(RateLimitError) as rate:
        nebius(server.base_url).embed(["a"])
    assert rate.value.attempts == 4
    server.script(Reply(503), Reply(body={"data": [None]}))
    with pytest.raises(ResponseError) as bad:
        nebius(server.base_url).embed(["a"])
    assert bad.value.attempts == 2


@pytest.mark.parametrize("texts", [None, {"a": 1}, {"text": "x"}, "one string", b"bytes"])
async def test_texts_that_are_not_a_list_are_a_type_error(
    server: ScriptedServer, texts: Any
) -> None:
    client = nebius(server.base_url)
    with pytest.raises(TypeError, match="texts"):
        client.embed(texts)
    with pytest.raises(TypeError, match="texts"):
        await client.aembed(texts)
    assert server.requests == 0
