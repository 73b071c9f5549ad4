"""Offline tests of the LlamaIndex shells: construction, validation, env, secrets, pickling.

Nothing here opens a socket: every check happens at construction or before a request.
"""

from __future__ import annotations

import asyncio
import json
import pickle

import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import SecretStr

from studio_embeddings import NEBIUS, YANDEX, ConfigurationError, RetryPolicy
from studio_embeddings.llama_index import NebiusEmbedding, YandexEmbedding

SECRET = "sk-very-secret-key-123"
TOKEN = "t1.iam-very-secret-token"
# A loopback port nobody listens on: a request would fail loudly, none is expected.
DEAD_URL = "http://127.0.0.1:9/v1"


def nebius(**kwargs: object) -> NebiusEmbedding:
    return NebiusEmbedding(**{"api_key": SECRET, **kwargs})  # type: ignore[arg-type]


def yandex(**kwargs: object) -> YandexEmbedding:
    return YandexEmbedding(**{"api_key": SECRET, "folder_id": "b1gfolder", **kwargs})  # type: ignore[arg-type]


# ------------------------------------------------------------------ defaults


def test_both_are_llama_index_embeddings() -> None:
    assert issubclass(NebiusEmbedding, BaseEmbedding)
    assert issubclass(YandexEmbedding, BaseEmbedding)
    assert NebiusEmbedding.class_name() == "NebiusEmbedding"
    assert YandexEmbedding.class_name() == "YandexEmbedding"


def test_nebius_defaults_come_from_the_provider_table() -> None:
    e = nebius()
    assert e.model_name == NEBIUS.default_doc_model == "Qwen/Qwen3-Embedding-8B"
    assert e.embed_batch_size == NEBIUS.default_batch_size
    assert e.encoding_format == NEBIUS.default_encoding == "base64"
    assert e.base_url == NEBIUS.base_url
    assert e.max_concurrency == NEBIUS.default_max_concurrency
    assert e.project_id is None
    assert e.query_instruction is None
    assert e.client.provider is NEBIUS


def test_yandex_defaults_come_from_the_provider_table() -> None:
    e = yandex()
    assert e.model_name == e.doc_model == YANDEX.default_doc_model == "text-search-doc"
    assert e.query_model == YANDEX.default_query_model == "text-search-query"
    assert e.model_version == "latest"
    assert e.embed_batch_size == 1
    assert e.encoding_format == "float"
    assert e.requests_per_second == YANDEX.requests_per_second == 10
    assert e.base_url.rstrip("/") == YANDEX.base_url.rstrip("/")
    assert e.client.model_for("document") == "emb://b1gfolder/text-search-doc/latest"
    assert e.client.model_for("query") == "emb://b1gfolder/text-search-query/latest"


@pytest.mark.parametrize(
    ("cls", "field", "env"),
    [
        (NebiusEmbedding, "api_key", "NEBIUS_API_KEY"),
        (NebiusEmbedding, "base_url", "NEBIUS_API_BASE"),
        (NebiusEmbedding, "project_id", "NEBIUS_PROJECT_ID"),
        (YandexEmbedding, "api_key", "YC_API_KEY"),
        (YandexEmbedding, "iam_token", "YC_IAM_TOKEN"),
        (YandexEmbedding, "folder_id", "YC_FOLDER_ID"),
        (YandexEmbedding, "base_url", "YC_API_BASE"),
    ],
)
def test_field_descriptions_name_the_env_variable(cls: type, field: str, env: str) -> None:
    assert env in (cls.model_fields[field].description or "")


# ---------------------------------------------------------------- env resolution


def test_nebius_resolves_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEBIUS_API_KEY", SECRET)
    monkeypatch.setenv("NEBIUS_API_BASE", "http://127.0.0.1:8/v1")
    monkeypatch.setenv("NEBIUS_PROJECT_ID", "project-from-env")
    e = NebiusEmbedding()
    assert e.base_url == "http://127.0.0.1:8/v1"
    assert e.project_id == "project-from-env"
    assert e.client.settings.credential.header() == f"Bearer {SECRET}"


def test_arguments_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEBIUS_API_KEY", "env-key")
    monkeypatch.setenv("NEBIUS_PROJECT_ID", "env-project")
    e = NebiusEmbedding(api_key="arg-key", project_id="arg-project")
    assert e.project_id == "arg-project"
    assert e.client.settings.credential.header() == "Bearer arg-key"


def test_yandex_resolves_key_token_and_folder_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YC_FOLDER_ID", "b1genv")
    monkeypatch.setenv("YC_IAM_TOKEN", TOKEN)
    e = YandexEmbedding()
    assert e.folder_id == "b1genv"
    assert e.client.settings.credential.header() == f"Bearer {TOKEN}"
    monkeypatch.setenv("YC_API_KEY", SECRET)
    assert YandexEmbedding().client.settings.credential.header() == f"Api-Key {SECRET}"


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(ValueError, match="NEBIUS_API_KEY"):
        NebiusEmbedding()
    with pytest.raises(ValueError, match="YC_API_KEY"):
        YandexEmbedding(folder_id="b1g")


def test_openai_key_is_never_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    with pytest.raises(ConfigurationError, match="NEBIUS_API_KEY"):
        NebiusEmbedding()
    e = nebius()
    assert "openai.com" not in str(e.base_url)


def test_yandex_needs_a_folder() -> None:
    with pytest.raises(ConfigurationError, match="YC_FOLDER_ID"):
        YandexEmbedding(api_key=SECRET)


# ---------------------------------------------------------------- validation


def test_yandex_refuses_base64() -> None:
    with pytest.raises(ValueError, match="encoding_format"):
        yandex(encoding_format="base64")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"service_tier": "gold"}, "service_tier"),
        ({"dimensions": 5000}, "dimensions"),
        ({"base_url": "ftp://example.com/v1"}, "base_url"),
        ({"base_url": "http://example.com/v1"}, "allow_insecure_http"),
        ({"default_headers": {"Authorization": "Bearer x"}}, "Authorization"),
        ({"project_id": "bad/project"}, "project_id"),
        ({"timeout": 0}, "timeout"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"embed_batch_size": 0}, "embed_batch_size"),
        ({"requests_per_second": -1}, "requests_per_second"),
    ],
)
def test_nebius_bad_settings_raise_value_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nebius(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model_version": "beta"}, "model_version"),
        ({"encoding_format": "base64"}, "float"),
        ({"folder_id": "with space"}, "folder_id"),
    ],
)
def test_yandex_bad_settings_raise_value_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        yandex(**kwargs)


def test_insecure_http_needs_opt_in() -> None:
    e = nebius(base_url="http://example.com/v1", allow_insecure_http=True)
    assert e.base_url == "http://example.com/v1"


def test_embed_batch_size_is_capped_by_the_provider() -> None:
    assert yandex(embed_batch_size=10).embed_batch_size == YANDEX.max_inputs_per_request == 1
    assert yandex(embed_batch_size=10).client.batch_size == 1
    big = nebius(embed_batch_size=NEBIUS.max_inputs_per_request + 100)
    assert big.embed_batch_size == NEBIUS.max_inputs_per_request
    assert nebius(embed_batch_size=7).client.batch_size == 7


def test_num_workers_bounds_concurrency_when_max_concurrency_unset() -> None:
    assert nebius(num_workers=3).client.max_concurrency == 3
    assert nebius(num_workers=3, max_concurrency=5).client.max_concurrency == 5


def test_fields_map_to_the_core() -> None:
    policy = RetryPolicy(max_retries=1, initial_wait=0.001)
    e = nebius(
        project_id="p-1",
        dimensions=64,
        service_tier="flex",
        query_instruction="",
        timeout=3.5,
        max_retries=2,
        deadline=9.0,
        requests_per_second=4,
        requests_per_minute=100,
        tokens_per_minute=1000,
        default_headers={"x-trace": "1"},
        retry_policy=policy,
        encoding_format="float",
    )
    c = e.client
    assert (c.project, c.dimensions, c.service_tier, c.query_instruction) == ("p-1", 64, "flex", "")
    assert (c.timeout, c.deadline, c.encoding_format) == (3.5, 9.0, "float")
    assert c.retry_policy.max_retries == 2 == e.max_retries
    assert c.retry_policy.initial_wait == 0.001
    assert (c.requests_per_second, c.requests_per_minute, c.tokens_per_minute) == (4, 100, 1000)
    assert c.default_headers == {"x-trace": "1"}


def test_yandex_fields_map_to_the_core() -> None:
    e = yandex(
        query_model="text-search-doc", model_version="rc", data_logging=False, requests_per_second=0
    )
    c = e.client
    assert c.model_for("query") == "emb://b1gfolder/text-search-doc/rc"
    assert c.data_logging is False
    assert c.requests_per_second == 0
    assert not c.limiter.limited


def test_yandex_model_name_mirrors_doc_model() -> None:
    assert yandex(doc_model="text-search-query").model_name == "text-search-query"
    named = yandex(model_name="text-search-query")
    assert named.doc_model == "text-search-query"
    assert named.client.model_for("document").endswith("/text-search-query/latest")
    with pytest.raises(ValueError, match="doc_model"):
        yandex(model_name="text-search-query", doc_model="text-search-doc")


def test_iam_token_may_be_a_callable_or_secret() -> None:
    e = YandexEmbedding(iam_token=lambda: TOKEN, folder_id="b1g")
    assert e.client.settings.credential.refreshable
    assert e.client.settings.credential.header() == f"Bearer {TOKEN}"
    s = YandexEmbedding(iam_token=SecretStr(TOKEN), folder_id="b1g")
    assert s.client.settings.credential.header() == f"Bearer {TOKEN}"


def test_texts_are_validated_before_any_request() -> None:
    e = nebius(base_url=DEAD_URL)
    assert e.get_text_embedding_batch([]) == []
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        e.get_text_embedding_batch(["ok", "   "])
    with pytest.raises(TypeError, match=r"texts\[0\]"):
        e.get_text_embedding_batch([3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list of strings"):
        e.get_text_embedding_batch("not a list")  # type: ignore[arg-type]
    assert asyncio.run(e.aget_text_embedding_batch([])) == []


# ------------------------------------------------------------------- secrets


def _assert_no_secret(text: str) -> None:
    assert SECRET not in text
    assert TOKEN not in text


@pytest.mark.parametrize("make", [nebius, yandex])
def test_api_key_is_not_in_dumps_or_repr(make: object) -> None:
    e = make()  # type: ignore[operator]
    data = e.to_dict()
    assert "api_key" not in data
    assert "retry_policy" not in data
    assert data["class_name"] == e.class_name()
    _assert_no_secret(json.dumps(data))
    _assert_no_secret(e.to_json())
    _assert_no_secret(repr(e))
    _assert_no_secret(str(e))
    _assert_no_secret(repr(e.client))
    _assert_no_secret(json.dumps(e.to_payload()))
    _assert_no_secret(e.model_dump_json())
    assert isinstance(e.api_key, SecretStr)


def test_iam_token_is_not_in_dumps_or_repr() -> None:
    for token in (TOKEN, SecretStr(TOKEN), lambda: TOKEN):
        e = YandexEmbedding(iam_token=token, folder_id="b1g")
        assert "iam_token" not in e.to_dict()
        _assert_no_secret(e.to_json())
        _assert_no_secret(repr(e))
        _assert_no_secret(str(e))


def test_secret_is_not_in_configuration_errors() -> None:
    with pytest.raises(ValueError, match="allow_insecure_http") as info:
        nebius(base_url="http://example.com/v1")
    _assert_no_secret(str(info.value))


def test_round_trip_through_dict_needs_the_key_again(monkeypatch: pytest.MonkeyPatch) -> None:
    e = nebius(project_id="p", embed_batch_size=5, dimensions=128)
    data = e.to_dict()
    with pytest.raises(ValueError, match="NEBIUS_API_KEY"):
        NebiusEmbedding.from_dict(data)
    monkeypatch.setenv("NEBIUS_API_KEY", SECRET)
    again = NebiusEmbedding.from_dict(data)
    assert again.to_dict() == data
    y = YandexEmbedding.from_json(yandex().to_json(), api_key=SECRET)
    assert y.client.model_for("document") == "emb://b1gfolder/text-search-doc/latest"


# -------------------------------------------------------------------- pickle


@pytest.mark.parametrize("make", [nebius, yandex])
def test_pickles_and_keeps_its_settings(make: object) -> None:
    e = make(max_retries=1, embed_batch_size=1, default_headers={"x-a": "b"})  # type: ignore[operator]
    copy = pickle.loads(pickle.dumps(e))
    assert type(copy) is type(e)
    assert copy.to_dict() == e.to_dict()
    assert copy.api_key.get_secret_value() == SECRET
    assert copy.client is not e.client
    assert copy.client.settings.credential.header() == e.client.settings.credential.header()
    assert copy.client.retry_policy.max_retries == 1


def test_pickle_keeps_an_env_key_without_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEBIUS_API_KEY", SECRET)
    blob = pickle.dumps(NebiusEmbedding(project_id="p"))
    monkeypatch.delenv("NEBIUS_API_KEY")
    copy = pickle.loads(blob)
    assert copy.project_id == "p"
    assert copy.client.settings.credential.header() == f"Bearer {SECRET}"


def test_model_validate_builds_the_client_lazily() -> None:
    e = NebiusEmbedding.model_validate({"api_key": SECRET, "project_id": "p"})
    assert e.client.project == "p"


def _module_level_token() -> str:
    return TOKEN


def test_pickles_with_a_token_callable() -> None:
    e = YandexEmbedding(iam_token=_module_level_token, folder_id="b1g")
    copy = pickle.loads(pickle.dumps(e))
    assert copy.iam_token is _module_level_token
    assert copy.client.settings.credential.refreshable
    assert copy.client.settings.credential.header() == f"Bearer {TOKEN}"


def test_an_unpicklable_token_callable_fails_loudly() -> None:
    e = YandexEmbedding(iam_token=lambda: TOKEN, folder_id="b1g")
    with pytest.raises(pickle.PicklingError, match="module-level function"):
        pickle.dumps(e)
    assert e.client.settings.credential.header() == f"Bearer {TOKEN}"  # the original still works


def test_assigning_a_field_rebuilds_the_core_client() -> None:
    from studio_embeddings.llama_index import NebiusEmbedding

    embed = NebiusEmbedding(api_key="k")
    embed.dimensions = 256
    assert embed.client.dimensions == 256
    embed.embed_batch_size = 3
    assert embed.client.batch_size == 3
    with pytest.raises(ValueError, match="between 32 and 4096"):
        embed.dimensions = 5
    assert embed.dimensions == 256
    assert embed.client.dimensions == 256
    copy = embed.model_copy(update={"dimensions": 128})
    assert copy.client.dimensions == 128
    assert embed.client.dimensions == 256


def test_misspelt_settings_and_errors_do_not_echo_the_key() -> None:
    from studio_embeddings.llama_index import NebiusEmbedding, YandexEmbedding

    with pytest.raises(ValueError, match="dimension") as info:
        NebiusEmbedding(api_key="SECRETKEY123", dimension=256)
    assert "SECRETKEY123" not in str(info.value)
    with pytest.raises(ValueError, match="disagree") as info:
        YandexEmbedding(api_key="SECRETKEY123", folder_id="b1g", model_name="a", doc_model="b")
    assert "SECRETKEY123" not in str(info.value)
