"""The core's modules, each on its own: settings, credentials, the classifier, the wire, the gate."""

from __future__ import annotations

import asyncio
import pickle
import threading
from typing import Any

import httpx2
import openai
import pytest

from studio_embeddings import (
    NEBIUS,
    YANDEX,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
)
from studio_embeddings._auth import Credential, SecretValue, check_header_value
from studio_embeddings._classify import Context, classify
from studio_embeddings._loop import Gate
from studio_embeddings._retry import TransientError
from studio_embeddings._settings import QUOTA_STORE_ENV, Settings
from studio_embeddings._wire import check_texts, plan

# ------------------------------------------------------------------ settings


def test_settings_resolve_argument_then_variable_then_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings.resolve("nebius", api_key="k").base_url == NEBIUS.base_url
    monkeypatch.setenv("NEBIUS_API_BASE", "https://env.example/v1")
    monkeypatch.setenv("NEBIUS_API_KEY", "from-env")
    s = Settings.resolve("nebius")
    assert (s.base_url, s.credential.header()) == ("https://env.example/v1", "Bearer from-env")
    s = Settings.resolve("nebius", api_key="arg", base_url="https://arg.example/v1")
    assert (s.base_url, s.credential.header()) == ("https://arg.example/v1", "Bearer arg")
    assert s.value_of("api_key").get_secret_value() == "arg"
    assert s.value_of("iam_token") is None
    assert s.value_of("max_retries") == 5


def test_settings_are_frozen_and_pickle_without_showing_secrets() -> None:
    s = Settings.resolve(
        "yandex", api_key="yc-secret", project="b1g", quota_store="redis://:pw@h/0"
    )
    with pytest.raises(AttributeError):
        s.batch_size = 3  # type: ignore[misc]
    copy = pickle.loads(pickle.dumps(s))
    assert copy.credential.header() == "Api-Key yc-secret"
    assert copy.default_headers == s.default_headers
    assert "yc-secret" not in repr(s)
    assert ":pw@" not in repr(s)
    assert copy.quota_store is not None
    assert copy.quota_store.get_secret_value() == "redis://:pw@h/0"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:99999/v1", "not a valid URL"),
        ("http://127.0.0.1:abc/v1", "not a valid URL"),
        ("https://example.com/v1\r\nX-Evil: 1", "line breaks"),
        ("ftp://example.com/v1", "http"),
        ("http://example.com/v1", "allow_insecure_http"),
        ("http://127.0.0.1:0/v1", "port 0"),
    ],
)
def test_bad_base_urls_are_refused_at_construction(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.resolve("nebius", api_key="k", base_url=url)


@pytest.mark.parametrize(
    "key", ["line one\nline two", "key\rwith a CR", "tab\tinside", "ключ", "   ", "nul\0"]
)
def test_keys_that_cannot_be_headers_are_refused_without_echoing(key: str) -> None:
    with pytest.raises(ConfigurationError, match="api_key") as info:
        Settings.resolve("nebius", api_key=key)
    assert key.strip() not in str(info.value) or not key.strip()


def test_a_trailing_newline_is_stripped_and_headers_are_checked_too() -> None:
    assert Settings.resolve("nebius", api_key="key-from-file\n").credential.header() == (
        "Bearer key-from-file"
    )
    with pytest.raises(ConfigurationError, match=r"default_headers\['X-A'\]") as info:
        Settings.resolve("nebius", api_key="k", default_headers={"X-A": "secret\nvalue"})
    assert "secret" not in str(info.value)


def test_quota_store_from_env_and_a_bad_scheme_never_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(QUOTA_STORE_ENV, "redis://127.0.0.1:7000/0")
    s = Settings.resolve("nebius", api_key="k")
    assert s.quota_store is not None
    with pytest.raises(ConfigurationError, match="redis://") as info:
        Settings.resolve("nebius", api_key="k", quota_store="http://user:hunter2@host/")
    assert "hunter2" not in str(info.value)


def test_a_token_callable_is_refreshable_and_not_pickled_with_its_token() -> None:
    calls: list[int] = []

    def token() -> str:
        calls.append(1)
        return f"t{len(calls)}"

    credential = Credential("Bearer", None, token, "iam_token")
    assert credential.header() == "Bearer t1"
    credential.refresh("Bearer t0")  # another request already replaced that one: no fetch
    assert credential.header() == "Bearer t1"
    credential.refresh("Bearer t1")
    assert credential.header() == "Bearer t2"
    revived = pickle.loads(pickle.dumps(Credential("Bearer", None, _module_token, "iam_token")))
    assert revived.given("iam_token") is _module_token
    assert "t2" not in repr(credential)
    assert repr(SecretValue("s3cr3t")) == "SecretValue('**********')"
    with pytest.raises(ConfigurationError, match="line break"):
        check_header_value("the token", "t\n2")


def _module_token() -> str:
    return "t-module"


# ---------------------------------------------------------------- classifier


def _status(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/embeddings")
    response = httpx2.Response(status, headers=headers or {}, json=body, request=request)
    return openai.APIStatusError("refused", response=response, body=body)


CTX = Context(NEBIUS, "Qwen/Qwen3-Embedding-8B", "https://x/v1", "p1", "Bearer", 5.0, None)


@pytest.mark.parametrize(
    ("status", "body", "expected", "retried"),
    [
        (401, {"detail": "bad key"}, AuthenticationError, False),
        (403, None, PermissionDeniedError, False),
        (404, None, NotFoundError, False),
        (400, {"error": {"message": "bad"}}, BadRequestError, False),
        (422, {"detail": [{"loc": ["body"], "msg": "x"}]}, BadRequestError, False),
        (429, {"error": {"message": "slow down"}}, RateLimitError, True),
        (
            429,
            {"error": {"message": "x", "code": "insufficient_quota"}},
            QuotaExhaustedError,
            False,
        ),
        (429, {"error": {"message": "You exceeded your current quota"}}, RateLimitError, True),
        (503, None, ServerError, True),
        (408, None, ServerError, True),
    ],
)
def test_the_classifier_table(status: int, body: Any, expected: type, retried: bool) -> None:
    outcome = classify(_status(status, body), CTX)
    cause = outcome.cause if isinstance(outcome, TransientError) else outcome
    assert isinstance(outcome, TransientError) is retried
    assert isinstance(cause, expected)
    assert cause.status_code == status  # type: ignore[attr-defined]
    assert "Nebius AI Studio" in str(cause)


def test_a_429_carries_its_headers_and_retry_after() -> None:
    outcome = classify(
        _status(429, None, {"retry-after": "2", "x-ratelimit-remaining-requests": "0"}), CTX
    )
    assert isinstance(outcome, TransientError)
    assert outcome.retry_after == 2.0
    assert outcome.headers["x-ratelimit-remaining-requests"] == "0"
    assert classify(_status(429, None, {"retry-after": "inf"}), CTX).retry_after is None  # type: ignore[union-attr]


# ------------------------------------------------------------------ the wire


@pytest.mark.parametrize(
    ("texts", "error", "message"),
    [
        (None, TypeError, "NoneType"),
        ({"a": 1}, TypeError, "dict"),
        ("one text", TypeError, "single string"),
        (["ok", 3], TypeError, r"texts\[1\] is int"),
        (["ok", " "], ValueError, r"texts\[1\] is empty"),
        (["ok", "ok", "bad \ud800"], ValueError, r"texts\[2\] cannot be encoded as UTF-8"),
    ],
)
def test_check_texts_names_the_problem_and_its_position(
    texts: Any, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        check_texts(texts)


def test_plan_covers_every_text_once_in_order() -> None:
    batches = plan([str(i) for i in range(10)], 4)
    assert [(b.start, len(b.texts)) for b in batches] == [(0, 4), (4, 4), (8, 2)]
    assert YANDEX.max_inputs_per_request == 1


# ------------------------------------------------------------------ the gate


def test_the_gate_bounds_tasks_of_several_loops_and_threads() -> None:
    gate = Gate(3)
    lock = threading.Lock()
    now = [0]
    peak = [0]

    async def one() -> None:
        async with gate:
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            await asyncio.sleep(0.01)
            with lock:
                now[0] -= 1

    async def many() -> None:
        await asyncio.gather(*(one() for _ in range(15)))

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert peak[0] == 3
    assert gate.in_flight == 0


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    gate = Gate(1)
    release = asyncio.Event()

    async def holder() -> None:
        async with gate:
            await release.wait()

    first = asyncio.ensure_future(holder())
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(holder())
    await asyncio.sleep(0)
    waiter.cancel()
    release.set()
    await first
    await asyncio.gather(waiter, return_exceptions=True)
    async with gate:  # the slot came back
        assert gate.in_flight == 1
    assert gate.in_flight == 0
