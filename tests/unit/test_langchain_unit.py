"""The LangChain shells offline: fields, env fallbacks, defaults, secrets, serialization.

Sockets are disabled for this module (pytest-socket): constructing a class, pickling it and
``embed_documents([])`` must open no connection. What reaches the wire is tested in
``tests/e2e/test_langchain.py`` against the emulator.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import typing
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from langchain_core.embeddings import Embeddings
from langchain_core.load import dumpd, dumps, loads
from langchain_tests.unit_tests import EmbeddingsUnitTests
from pydantic import SecretStr
from pytest_socket import SocketBlockedError, disable_socket, enable_socket

from studio_embeddings import NEBIUS, YANDEX, RetryPolicy
from studio_embeddings._transport import client_kwargs
from studio_embeddings.langchain import NebiusEmbeddings, YandexEmbeddings

NB_KEY = "nb-unit-secret-key-1234"
YC_KEY = "yc-unit-secret-key-5678"
YC_TOKEN = "t1.unit-secret-iam-token"


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()


def nebius(**kwargs: Any) -> NebiusEmbeddings:
    kwargs.setdefault("api_key", NB_KEY)
    return NebiusEmbeddings(**kwargs)


def yandex(**kwargs: Any) -> YandexEmbeddings:
    kwargs.setdefault("api_key", YC_KEY)
    kwargs.setdefault("folder_id", "b1gunitfolder")
    return YandexEmbeddings(**kwargs)


def fresh_token() -> str:
    """A module-level token source: picklable, unlike a lambda."""
    return YC_TOKEN


# ------------------------------------------------------------ standard suites


class TestNebiusStandardUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[Embeddings]:
        return NebiusEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"api_key": NB_KEY, "model": "Qwen/Qwen3-Embedding-8B"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {
                "NEBIUS_API_KEY": "nb-env-key",
                "NEBIUS_PROJECT_ID": "project-from-env",
                "NEBIUS_API_BASE": "https://nebius.example/v1",
            },
            {},
            {
                "api_key": "nb-env-key",
                "project_id": "project-from-env",
                "base_url": "https://nebius.example/v1",
            },
        )


class TestYandexStandardUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[Embeddings]:
        return YandexEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"api_key": YC_KEY, "folder_id": "b1gunitfolder"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {
                "YC_API_KEY": "yc-env-key",
                "YC_FOLDER_ID": "b1genvfolder",
                "YC_API_BASE": "https://yandex.example/v1",
            },
            {},
            {
                "api_key": "yc-env-key",
                "folder_id": "b1genvfolder",
                "base_url": "https://yandex.example/v1",
            },
        )


class TestYandexIamStandardUnit(TestYandexStandardUnit):
    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"YC_IAM_TOKEN": "t1.env-token", "YC_FOLDER_ID": "b1genvfolder"},
            {},
            {"iam_token": "t1.env-token", "folder_id": "b1genvfolder", "api_key": None},
        )


# ------------------------------------------------------------------ defaults


def test_nebius_defaults_come_from_the_provider_table() -> None:
    emb = nebius()
    assert emb.model == NEBIUS.default_doc_model == "Qwen/Qwen3-Embedding-8B"
    assert emb.base_url == NEBIUS.base_url
    assert emb.chunk_size == NEBIUS.default_batch_size
    assert emb.max_concurrency == NEBIUS.default_max_concurrency
    assert emb.encoding_format == NEBIUS.default_encoding
    assert emb.requests_per_second == NEBIUS.requests_per_second
    assert emb.max_retries == RetryPolicy().max_retries == 5
    assert emb.project_id is None
    client = emb.client
    assert client.provider is NEBIUS
    assert client.model_for("document") == client.model_for("query") == emb.model
    assert client.batch_size == NEBIUS.default_batch_size
    assert client.retry_policy.max_retries == 5


def test_yandex_defaults_come_from_the_provider_table() -> None:
    emb = yandex()
    assert emb.doc_model == YANDEX.default_doc_model == "text-search-doc"
    assert emb.query_model == YANDEX.default_query_model == "text-search-query"
    assert emb.model_version == YANDEX.default_model_version == "latest"
    assert emb.base_url == YANDEX.base_url
    assert emb.chunk_size == YANDEX.default_batch_size == 1
    assert emb.requests_per_second == YANDEX.requests_per_second == 10
    assert emb.encoding_format == "float"
    client = emb.client
    assert client.model_for("document") == "emb://b1gunitfolder/text-search-doc/latest"
    assert client.model_for("query") == "emb://b1gunitfolder/text-search-query/latest"
    assert client.limiter.limited


def test_service_tier_literal_matches_provider_data() -> None:
    annotation = typing.get_type_hints(NebiusEmbeddings)["service_tier"]
    literal = next(a for a in typing.get_args(annotation) if typing.get_origin(a) is typing.Literal)
    assert set(typing.get_args(literal)) == set(NEBIUS.service_tiers)


# ------------------------------------------------------- fields reach the core


def test_every_shared_field_reaches_the_core() -> None:
    sync_http, async_http = httpx2.Client(), httpx2.AsyncClient()
    emb = nebius(
        base_url="https://nebius.example/v1",
        timeout=7.5,
        max_retries=2,
        chunk_size=3,
        max_concurrency=2,
        show_progress_bar=True,
        encoding_format="float",
        default_headers={"x-trace": "abc"},
        http_client=sync_http,
        http_async_client=async_http,
        deadline=30.0,
        requests_per_second=4,
        requests_per_minute=120,
        tokens_per_minute=10_000,
    )
    client = emb.client
    assert client.base_url == "https://nebius.example/v1"
    assert client.timeout == 7.5
    assert client.retry_policy.max_retries == 2
    assert client.batch_size == 3
    assert client.max_concurrency == 2
    assert client.show_progress_bar is True
    assert client.encoding_format == "float"
    assert client.default_headers == {"x-trace": "abc"}
    assert client.http_client is sync_http
    assert client.http_async_client is async_http
    assert client.deadline == 30.0
    assert (client.requests_per_second, client.requests_per_minute) == (4, 120)
    assert client.tokens_per_minute == 10_000
    # The token limiter is live: a call larger than its burst has to wait.
    assert client.limiter.reserve(tokens=10_000, now=0.0) > 0
    sync_http.close()


def test_nebius_fields_reach_the_core() -> None:
    emb = nebius(
        model="intfloat/e5-mistral-7b-instruct",
        project_id="project-1",
        service_tier="flex",
        query_instruction="Find the recipe",
    )
    client = emb.client
    assert client.model == "intfloat/e5-mistral-7b-instruct"
    assert client.project == "project-1"
    assert client.service_tier == "flex"
    assert client.prepare(["soup"], "query") == ["Instruct: Find the recipe\nQuery: soup"]
    assert client.prepare(["soup"], "document") == ["soup"]
    assert nebius(dimensions=512).client.dimensions == 512


def test_nebius_query_instruction_default_and_off() -> None:
    task = NEBIUS.default_query_task
    assert nebius().client.prepare(["q"], "query") == [f"Instruct: {task}\nQuery:q"]
    assert nebius(query_instruction="").client.prepare(["q"], "query") == ["q"]


def test_yandex_fields_reach_the_core() -> None:
    emb = yandex(
        doc_model="text-search-query",
        query_model="text-search-doc",
        model_version="rc",
        data_logging=False,
        chunk_size=50,
        requests_per_second=0,
    )
    client = emb.client
    assert client.model_for("document") == "emb://b1gunitfolder/text-search-query/rc"
    assert client.model_for("query") == "emb://b1gunitfolder/text-search-doc/rc"
    assert client.data_logging is False
    assert client.batch_size == 1  # capped at Yandex's one input per request
    assert not client.limiter.limited
    assert client_kwargs(client.settings)["default_headers"]["x-data-logging-enabled"] == "false"
    assert "x-data-logging-enabled" not in client_kwargs(yandex().client.settings)["default_headers"]


def test_yandex_accepts_model_as_the_document_model() -> None:
    emb = yandex(model="text-search-query")
    assert emb.doc_model == "text-search-query"
    assert emb.client.model_for("document").endswith("/text-search-query/latest")


def test_yandex_credentials() -> None:
    assert yandex().client.settings.credential.header() == f"Api-Key {YC_KEY}"
    token = yandex(api_key=None, iam_token=YC_TOKEN)
    assert isinstance(token.iam_token, SecretStr)
    assert token.client.settings.credential.header() == f"Bearer {YC_TOKEN}"
    calls: list[int] = []

    def source() -> str:
        calls.append(1)
        return f"t1.fresh-{len(calls)}"

    refreshing = yandex(api_key=None, iam_token=source)
    assert refreshing.iam_token is source
    assert calls == []  # nothing is fetched before the first request
    assert refreshing.client.settings.credential.header() == "Bearer t1.fresh-1"


def test_yandex_explicit_token_beats_env_key_in_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YC_API_KEY", "yc-env-key")
    emb = YandexEmbeddings(iam_token=YC_TOKEN, folder_id="b1g")
    assert emb.api_key is None


def test_yandex_explicit_token_beats_env_key_on_the_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YC_API_KEY", "yc-env-key")
    emb = YandexEmbeddings(iam_token=YC_TOKEN, folder_id="b1g")
    assert emb.client.settings.credential.header() == f"Bearer {YC_TOKEN}"


def test_retry_policy_and_max_retries() -> None:
    fast = RetryPolicy(max_retries=1, initial_wait=0.001, max_wait=0.01)
    assert nebius(retry_policy=fast).client.retry_policy is fast
    combined = nebius(retry_policy=fast, max_retries=3).client.retry_policy
    assert (combined.max_retries, combined.initial_wait) == (3, 0.001)
    assert nebius(max_retries=0).client.retry_policy.max_retries == 0


def test_allow_insecure_http() -> None:
    with pytest.raises(ValueError, match="allow_insecure_http"):
        nebius(base_url="http://gateway.internal/v1")
    emb = nebius(base_url="http://gateway.internal/v1", allow_insecure_http=True)
    assert emb.client.base_url == "http://gateway.internal/v1"
    assert nebius(base_url="http://127.0.0.1:9/v1").client.base_url.startswith("http://127")


def test_assignment_rebuilds_the_client_and_a_refused_one_changes_nothing() -> None:
    emb = nebius()
    emb.chunk_size = 5
    assert emb.client.batch_size == 5
    with pytest.raises(ValueError, match="chunk_size"):
        emb.chunk_size = 0
    with pytest.raises(ValueError, match="service_tier"):
        emb.service_tier = "gold"  # type: ignore[assignment]
    y = yandex()
    with pytest.raises(ValueError, match="encoding_format"):
        y.encoding_format = "base64"
    assert (emb.chunk_size, emb.client.batch_size, emb.service_tier) == (5, 5, None)
    assert (y.encoding_format, y.client.encoding_format) == ("float", "float")


def test_copies_get_a_client_of_their_own_settings() -> None:
    emb = nebius()
    updated = emb.model_copy(update={"chunk_size": 2})
    assert (updated.client.batch_size, emb.client.batch_size) == (2, 64)
    with pytest.raises(ValueError, match="service_tier"):
        emb.model_copy(update={"service_tier": "gold"})
    deep = copy.deepcopy(emb)
    assert deep.client is not emb.client
    assert deep.client.settings.credential.header() == f"Bearer {NB_KEY}"


# ------------------------------------------------------------------ env vars


def test_env_fallbacks_and_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEBIUS_API_KEY", "nb-env")
    monkeypatch.setenv("NEBIUS_API_BASE", "https://env.example/v1")
    monkeypatch.setenv("NEBIUS_PROJECT_ID", "project-env")
    env = NebiusEmbeddings()
    assert env.api_key is not None
    assert env.api_key.get_secret_value() == "nb-env"
    assert (env.base_url, env.project_id) == ("https://env.example/v1", "project-env")
    arg = NebiusEmbeddings(api_key="nb-arg", base_url="https://arg.example/v1", project_id="p")
    assert arg.client.settings.credential.header() == "Bearer nb-arg"
    assert (arg.client.base_url, arg.client.project) == ("https://arg.example/v1", "p")

    monkeypatch.setenv("YC_API_KEY", "yc-env")
    monkeypatch.setenv("YC_FOLDER_ID", "b1genv")
    monkeypatch.setenv("YC_API_BASE", "https://yc-env.example/v1")
    y = YandexEmbeddings()
    assert y.client.settings.credential.header() == "Api-Key yc-env"
    assert (y.client.project, y.client.base_url) == ("b1genv", "https://yc-env.example/v1")


def test_openai_env_is_never_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-should-not-be-used")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    with pytest.raises(ValueError, match="NEBIUS_API_KEY") as nb:
        NebiusEmbeddings()
    with pytest.raises(ValueError, match="YC_API_KEY") as yc:
        YandexEmbeddings(folder_id="b1g")
    assert "sk-openai" not in str(nb.value) + str(yc.value)
    assert nebius().base_url == NEBIUS.base_url


# -------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (yandex, {"encoding_format": "base64"}, "encoding_format"),
        (yandex, {"folder_id": None}, "YC_FOLDER_ID"),
        (yandex, {"model_version": "beta"}, "model_version"),
        (yandex, {"folder_id": "bad/folder"}, "folder_id"),
        (nebius, {"service_tier": "gold"}, "service_tier"),
        (nebius, {"dimensions": 8}, "dimensions"),
        (nebius, {"chunk_size": 0}, "chunk_size"),
        (nebius, {"max_concurrency": 0}, "max_concurrency"),
        (nebius, {"timeout": 0}, "timeout"),
        (nebius, {"deadline": -1}, "deadline"),
        (nebius, {"max_retries": -1}, "max_retries"),
        (nebius, {"requests_per_second": -1}, "requests_per_second"),
        (nebius, {"base_url": "ftp://x/v1"}, "base_url"),
        (nebius, {"default_headers": {"Authorization": "Bearer x"}}, "default_headers"),
        (nebius, {"openai_api_key": "x"}, "openai_api_key"),
    ],
)
def test_bad_settings_fail_at_construction_without_leaking_the_key(
    factory: Any, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match) as info:
        factory(**kwargs)
    text = str(info.value) + repr(info.value)
    assert NB_KEY not in text
    assert YC_KEY not in text


def test_missing_key_names_the_env_vars() -> None:
    with pytest.raises(ValueError, match="NEBIUS_API_KEY"):
        NebiusEmbeddings()
    with pytest.raises(ValueError, match="YC_API_KEY or YC_IAM_TOKEN"):
        YandexEmbeddings(folder_id="b1g")


# ---------------------------------------------------------------- secrets


def _all_text(obj: Any) -> str:
    return "\n".join([repr(obj), str(obj), json.dumps(dumpd(obj)), dumps(obj), f"{obj}"])


@pytest.mark.parametrize(
    "emb",
    [
        pytest.param(lambda: nebius(project_id="p1"), id="nebius"),
        pytest.param(lambda: yandex(), id="yandex-key"),
        pytest.param(lambda: yandex(api_key=None, iam_token=YC_TOKEN), id="yandex-iam"),
        pytest.param(lambda: yandex(api_key=None, iam_token=fresh_token), id="yandex-callable"),
    ],
)
def test_no_secret_in_repr_str_or_dumps(emb: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        obj = emb()
        text = _all_text(obj) + repr(obj._client) + repr(obj.client.settings.credential)
    for secret in (NB_KEY, YC_KEY, YC_TOKEN):
        assert secret not in text
        assert secret not in caplog.text


def test_lc_secrets_and_dumpd() -> None:
    store = {"quota_store": "STUDIO_EMBEDDINGS_QUOTA_STORE"}
    assert nebius().lc_secrets == {"api_key": "NEBIUS_API_KEY", **store}
    assert yandex().lc_secrets == {"api_key": "YC_API_KEY", "iam_token": "YC_IAM_TOKEN", **store}
    kwargs = dumpd(nebius(project_id="p1"))["kwargs"]
    assert kwargs["api_key"] == {"lc": 1, "type": "secret", "id": ["NEBIUS_API_KEY"]}
    assert kwargs["project_id"] == "p1"
    token_kwargs = dumpd(yandex(api_key=None, iam_token=YC_TOKEN))["kwargs"]
    assert token_kwargs["iam_token"] == {"lc": 1, "type": "secret", "id": ["YC_IAM_TOKEN"]}
    assert "retry_policy" not in dumpd(nebius(retry_policy=RetryPolicy()))["kwargs"]


@pytest.mark.parametrize(
    ("obj", "secrets"),
    [
        (lambda: nebius(project_id="p1", chunk_size=7), {"NEBIUS_API_KEY": "nb-revived"}),
        (lambda: yandex(data_logging=False), {"YC_API_KEY": "yc-revived"}),
    ],
)
@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_dumps_loads_round_trip_takes_the_key_from_secrets(
    obj: Any, secrets: dict[str, str]
) -> None:
    original = obj()
    revived = loads(
        dumps(original),
        secrets_map=secrets,
        valid_namespaces=["studio_embeddings"],
        allowed_objects=[type(original)],
    )
    assert type(revived) is type(original)
    assert revived.api_key.get_secret_value() == next(iter(secrets.values()))
    assert revived.model_dump(exclude={"api_key"}) == original.model_dump(exclude={"api_key"})


# ----------------------------------------------------------------- pickle


def test_pickle_round_trip_offline() -> None:
    http = httpx2.Client()
    emb = nebius(project_id="p1", chunk_size=3, http_client=http)
    copy = pickle.loads(pickle.dumps(emb))
    assert copy.model_dump(exclude={"http_client"}) == emb.model_dump(exclude={"http_client"})
    assert copy.http_client is None  # live pools stay behind; the copy builds its own
    assert (copy.client.batch_size, copy.client.project) == (3, "p1")
    assert copy.client.settings.credential.header() == f"Bearer {NB_KEY}"
    assert emb.http_client is http
    http.close()

    token = pickle.loads(pickle.dumps(yandex(api_key=None, iam_token=fresh_token)))
    assert token.iam_token is fresh_token
    assert token.client.settings.credential.header() == f"Bearer {YC_TOKEN}"


# ---------------------------------------------------------------- calls


def test_empty_input_sends_nothing() -> None:
    # Sockets are disabled: any request would fail loudly.
    assert nebius().embed_documents([]) == []
    assert yandex().embed_documents([]) == []


async def test_empty_input_sends_nothing_async() -> None:
    assert await nebius().aembed_documents([]) == []
    assert await yandex().aembed_documents([]) == []


def test_bad_texts_are_refused_before_sending() -> None:
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        nebius().embed_documents(["ok", "  "])
    with pytest.raises(TypeError, match="texts"):
        nebius().embed_documents("not a list")  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_the_socket_guard_is_live() -> None:
    # Proves the two tests above are meaningful: a real request here cannot get out.
    with pytest.raises(Exception) as caught:  # noqa: PT011 - checked below
        nebius(base_url="http://127.0.0.1:9/v1", max_retries=0).embed_documents(["x"])
    # On an event loop, anyio's connect reports it inside an exception group.
    error = caught.value
    while not isinstance(error, SocketBlockedError) and getattr(error, "exceptions", None):
        error = error.exceptions[0]  # type: ignore[attr-defined]
    assert isinstance(error, SocketBlockedError)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"service_tier": "gold"}, "service_tier"),
        ({"timeout": -1}, "timeout"),
        ({"dimensions": 5}, "dimensions"),
        ({"base_url": "http://127.0.0.1:99999/v1"}, "base_url"),
        ({"chunk_sise": 5}, "chunk_sise"),
    ],
)
def test_bad_settings_raise_configuration_error_without_the_key(
    kwargs: dict[str, Any], names: str
) -> None:
    from studio_embeddings import ConfigurationError

    with pytest.raises(ConfigurationError, match=names) as info:
        NebiusEmbeddings(api_key=NB_KEY, **kwargs)
    assert NB_KEY not in str(info.value)
    with pytest.raises(ConfigurationError):
        YandexEmbeddings(api_key=YC_KEY, folder_id="b1g", encoding_format="base64")
