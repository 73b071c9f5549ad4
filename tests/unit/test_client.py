"""The core's settings, validation, planning and decoding, offline (no request is sent)."""

from __future__ import annotations

import base64
import json
import pickle
from array import array

import pytest

from studio_embeddings import NEBIUS, YANDEX, ConfigurationError, EmbeddingsClient
from studio_embeddings._retry import retry_after as _retry_after
from studio_embeddings._wire import ListRows, parse_answer, plan, request_kwargs
from studio_embeddings._wire import decode as _decode
from studio_embeddings._wire import parse_body as _parse_body
from studio_embeddings.errors import ResponseError


def nebius(**kwargs: object) -> EmbeddingsClient:
    return EmbeddingsClient("nebius", api_key="nb-secret-key", **kwargs)  # type: ignore[arg-type]


def yandex(**kwargs: object) -> EmbeddingsClient:
    kwargs.setdefault("project", "b1gfolder")
    return EmbeddingsClient("yandex", api_key="yc-secret-key", **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------- resolution


def test_argument_beats_env_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert nebius().base_url == NEBIUS.base_url
    monkeypatch.setenv("NEBIUS_API_BASE", "https://env.example/v1")
    monkeypatch.setenv("NEBIUS_PROJECT_ID", "project-env")
    client = nebius()
    assert client.base_url == "https://env.example/v1"
    assert client.project == "project-env"
    client = nebius(base_url="https://arg.example/v1", project="project-arg")
    assert client.base_url == "https://arg.example/v1"
    assert client.project == "project-arg"


def test_key_from_provider_env_never_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    with pytest.raises(ConfigurationError, match="NEBIUS_API_KEY"):
        EmbeddingsClient("nebius")
    monkeypatch.setenv("NEBIUS_API_KEY", "nb-env")
    client = EmbeddingsClient("nebius")
    assert client.settings.credential.header() == "Bearer nb-env"


def test_yandex_credentials_and_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert yandex().settings.credential.header() == "Api-Key yc-secret-key"
    token = EmbeddingsClient("yandex", iam_token="t1.iam", project="b1g")
    assert token.settings.credential.header() == "Bearer t1.iam"
    monkeypatch.setenv("YC_IAM_TOKEN", "t1.env")
    monkeypatch.setenv("YC_FOLDER_ID", "b1genv")
    from_env = EmbeddingsClient("yandex")
    assert from_env.settings.credential.header() == "Bearer t1.env"
    assert from_env.project == "b1genv"
    monkeypatch.setenv("YC_API_KEY", "key-env")
    assert EmbeddingsClient("yandex").settings.credential.header() == "Api-Key key-env"


def test_callable_token_is_fetched_lazily_and_refreshed() -> None:
    calls: list[int] = []

    def fresh() -> str:
        calls.append(1)
        return f"token-{len(calls)}"

    client = EmbeddingsClient("yandex", iam_token=fresh, project="b1g")
    assert calls == []
    assert client.settings.credential.header() == "Bearer token-1"
    assert client.settings.credential.header() == "Bearer token-1"
    client.settings.credential.refresh()
    assert client.settings.credential.header() == "Bearer token-2"


def test_missing_settings_name_the_fix() -> None:
    with pytest.raises(ConfigurationError, match=r"YC_API_KEY or YC_IAM_TOKEN"):
        EmbeddingsClient("yandex", project="b1g")
    with pytest.raises(ConfigurationError, match=r"folder_id= or set YC_FOLDER_ID"):
        EmbeddingsClient("yandex", api_key="k")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"max_concurrency": 0}, "max_concurrency"),
        (
            {"service_tier": "turbo"},
            r"service_tier must be one of \['auto', 'default', 'flex', 'no-limit'\]",
        ),
        ({"service_tier": "over-limit"}, "service_tier must be one of"),
        ({"dimensions": 8}, "between 32 and 4096"),
        ({"dimensions": 5000}, "between 32 and 4096"),
        ({"model": "BAAI/bge-multilingual-gemma2", "dimensions": 512}, "3584-dimensional"),
        ({"timeout": 0}, "timeout"),
        ({"deadline": -1}, "deadline"),
        ({"requests_per_second": -1}, "requests_per_second"),
        ({"base_url": "ftp://x/v1"}, "http"),
        ({"base_url": "http://api.example.com/v1"}, "allow_insecure_http"),
        ({"default_headers": {"Authorization": "Bearer x"}}, "api_key="),
        ({"encoding_format": "binary"}, "encoding_format"),
    ],
)
def test_bad_nebius_settings_fail_at_construction(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nebius(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"encoding_format": "base64"}, r"encoding_format in \['float'\] only"),
        ({"project": "b1g/other"}, "no '/'"),
        ({"project": "b1g folder"}, "no '/' or spaces"),
        ({"model_version": "v9"}, r"\['latest', 'rc', 'deprecated'\]"),
        ({"dimensions": 512}, "256-dimensional"),
        ({"service_tier": "flex"}, "no tiers"),
    ],
)
def test_bad_yandex_settings_fail_at_construction(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        yandex(**kwargs)


def test_insecure_http_allowed_on_loopback_or_on_request() -> None:
    assert nebius(base_url="http://127.0.0.1:9/v1").base_url.startswith("http://127.0.0.1")
    assert nebius(base_url="http://localhost:9/v1")
    assert nebius(base_url="http://[::1]:9/v1")
    assert nebius(base_url="http://10.0.0.1/v1", allow_insecure_http=True)


def test_batch_size_is_capped_by_the_provider() -> None:
    assert yandex(batch_size=64).batch_size == 1
    assert nebius(batch_size=100_000).batch_size == NEBIUS.max_inputs_per_request
    assert nebius().batch_size == NEBIUS.default_batch_size


def test_max_retries_overrides_the_policy() -> None:
    from studio_embeddings import RetryPolicy

    assert nebius(max_retries=0).retry_policy.max_retries == 0
    policy = RetryPolicy(initial_wait=0.01)
    merged = nebius(retry_policy=policy, max_retries=1).retry_policy
    assert (merged.max_retries, merged.initial_wait) == (1, 0.01)


# --------------------------------------------------------------- secrets


def test_no_secret_in_repr_str_or_pickle_text() -> None:
    client = yandex()
    for text in (repr(client), str(client), repr(client.settings.credential), repr(vars(client))):
        assert "yc-secret-key" not in text


def test_client_pickles_and_keeps_settings() -> None:
    client = nebius(project="p1", dimensions=64, batch_size=7)
    client.transport.sync_client()
    copy = pickle.loads(pickle.dumps(client))
    assert (copy.project, copy.dimensions, copy.batch_size) == ("p1", 64, 7)
    assert copy.transport._sync_client is None
    assert copy.settings.credential.header() == "Bearer nb-secret-key"


def test_client_kwargs_never_inherit_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-x")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-x")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "X-Leak: 1\nOpenAI-Beta: yes")
    sdk = yandex().transport.sync_client()
    headers = sdk.default_headers
    assert headers["OpenAI-Project"] == "b1gfolder"
    assert "org-x" not in str(headers)
    assert "X-Leak" not in {k for k, v in headers.items() if isinstance(v, str)}
    assert str(sdk.base_url) == YANDEX.base_url + "/"
    assert sdk.max_retries == 0


# -------------------------------------------------------------- planning


def test_models_per_side() -> None:
    client = yandex()
    assert client.model_for("document") == "emb://b1gfolder/text-search-doc/latest"
    assert client.model_for("query") == "emb://b1gfolder/text-search-query/latest"
    assert yandex(model_version="rc").model_for("query").endswith("/rc")
    uri = "gpt://b1gfolder/text-embeddings/latest@tuned"
    assert yandex(model=uri).model_for("document") == uri
    assert nebius().model_for("query") == "Qwen/Qwen3-Embedding-8B"


def test_query_instruction_applies_to_queries_only() -> None:
    client = nebius()
    assert client.prepare(["doc"], "document") == ["doc"]
    assert client.prepare(["q"], "query") == [f"Instruct: {NEBIUS.default_query_task}\nQuery:q"]
    assert nebius(query_instruction="Find code").prepare(["q"], "query") == [
        "Instruct: Find code\nQuery:q"
    ]
    assert nebius(query_instruction="").prepare(["q"], "query") == ["q"]
    e5 = nebius(model="intfloat/e5-mistral-7b-instruct", query_instruction="T")
    assert e5.prepare(["q"], "query") == ["Instruct: T\nQuery: q"]
    bge = nebius(model="BAAI/bge-en-icl", query_instruction="T")
    assert bge.prepare(["q {x}"], "query") == ["<instruct>T\n<query>q {x}"]
    assert nebius(model="BAAI/bge-multilingual-gemma2").prepare(["q"], "query") == ["q"]
    assert yandex().prepare(["q"], "query") == ["q"]


@pytest.mark.parametrize(
    ("texts", "error", "match"),
    [
        (["ok", ""], ValueError, r"texts\[1\] is empty"),
        (["ok", "  \n\t"], ValueError, r"texts\[1\] is empty"),
        (["ok", None], TypeError, r"texts\[1\] is NoneType"),
        ([3], TypeError, r"texts\[0\] is int"),
        ("a string", TypeError, "a single string"),
    ],
)
def test_bad_texts_are_refused_before_sending(texts: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        nebius().prepare(texts, "document")  # type: ignore[arg-type]


def test_texts_are_never_altered() -> None:
    texts = ["line one\nline two", "tab\there", "emoji 🚀", "NUL\x00byte", "Ελληνικά 中文 عربى"]
    assert nebius().prepare(texts, "document") == texts


def test_batches_cover_every_text_once() -> None:
    client = nebius(batch_size=3)
    batches = plan([str(i) for i in range(10)], client.settings.batch_size)
    assert [b.start for b in batches] == [0, 3, 6, 9]
    assert [t for b in batches for t in b.texts] == [str(i) for i in range(10)]


def test_request_kwargs_are_explicit() -> None:
    client = nebius(dimensions=256, service_tier="flex", user="u1")
    batch = plan(["a", "b"], client.settings.batch_size)[0]
    auth = client.settings.credential.header()
    kwargs = request_kwargs(client.settings, batch, "Qwen/Qwen3-Embedding-8B", 5.0, auth)
    assert kwargs["encoding_format"] == "base64"
    # The list rides in the body extras (which replace the placeholder) to skip the SDK's
    # per-item transform; the e2e tests check the body that reaches the wire.
    assert kwargs["extra_body"] == {"input": ["a", "b"], "service_tier": "flex"}
    assert kwargs["dimensions"] == 256
    assert kwargs["user"] == "u1"
    assert kwargs["extra_headers"] == {"Authorization": "Bearer nb-secret-key"}
    one = yandex()
    auth = one.settings.credential.header()
    kwargs = request_kwargs(one.settings, plan(["a"], 1)[0], "emb://x/text-search-doc/latest", 5.0, auth)
    assert kwargs["input"] == "a"
    assert kwargs["encoding_format"] == "float"


# --------------------------------------------------------------- decoding


def test_decode_base64_and_float() -> None:
    values = [0.5, -1.25, 3.0]
    encoded = base64.b64encode(array("f", values).tobytes()).decode()
    assert _decode(encoded, "P") == values
    assert _decode(values, "P") == values
    with pytest.raises(ResponseError):
        _decode(None, "P")


def test_decode_refuses_empty_and_malformed_base64() -> None:
    with pytest.raises(ResponseError, match="empty"):
        _decode("", "P")
    with pytest.raises(ResponseError, match="empty"):
        _decode([], "P")
    with pytest.raises(ResponseError, match="not base64"):
        _decode("AAA", "P")  # ragged
    with pytest.raises(ResponseError, match="not base64"):
        _decode("AAAA AAA", "P")  # not the alphabet
    with pytest.raises(ResponseError, match="not base64"):
        _decode(base64.b64encode(b"abcdef").decode(), "P")  # not whole float32 values


def _b64(values: list[float]) -> str:
    return base64.b64encode(array("f", values).tobytes()).decode()


def test_parse_body_lifts_base64_and_keeps_the_rest() -> None:
    body = (
        '{"object": "list", "data": [{"object": "embedding", "index": 1, "embedding" :\n "'
        + _b64([1.0, 2.0])
        + '"}, {"index": 0, "object": "embedding", "embedding": "'
        + _b64([3.0, 4.0])
        + '"}], "model": "embedding", "usage": {"total_tokens": 7}}'
    ).encode()
    payload, lifted = _parse_body(body)
    assert payload["model"] == "embedding"
    assert payload["usage"] == {"total_tokens": 7}
    assert [item["embedding"] for item in payload["data"]] == [0, 1]
    assert payload["data"][0]["object"] == "embedding"
    assert _decode(0, "P", lifted) == [1.0, 2.0]
    assert _decode(1, "P", lifted) == [3.0, 4.0]
    with pytest.raises(ResponseError, match="type int"):
        _decode(1, "P", lifted)  # each lifted string feeds one vector only


def test_parse_body_leaves_escaped_and_float_values_to_json() -> None:
    values = array("f", [3.4028234663852886e38, -8.0, 1e-3]).tolist()
    escaped = _b64(values).replace("/", "\\/")  # JSON may escape "/"; some encoders do
    assert "\\/" in escaped
    body = {"data": [{"index": 0, "embedding": [0.5, 1.5]}, {"index": 1, "embedding": "X"}]}
    text = json.dumps(body).replace('"X"', '"' + escaped + '"')
    payload, lifted = _parse_body(text.encode())
    assert lifted.spans == []
    assert payload["data"][0]["embedding"] == [0.5, 1.5]
    assert _decode(payload["data"][1]["embedding"], "P") == values
    # Not JSON at all, or cut off inside a vector: refused by json as before.
    for broken in (b"<html>502</html>", b'{"data": [{"index": 0, "embedding": "AAAA'):
        with pytest.raises(json.JSONDecodeError):
            _parse_body(broken)


def _store(client: EmbeddingsClient, texts: list[str], body: object) -> list[list[float]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    rows = ListRows(len(texts))
    answer = parse_answer(raw, len(texts), "P")
    for row, embedding in enumerate(answer.embeddings):
        rows.put(row, embedding, answer.lifted, "P")
    return rows.vectors()


def test_store_places_vectors_by_index_and_checks_the_answer() -> None:
    client = nebius()
    data = [{"index": 1, "embedding": _b64([1.0])}, {"index": 0, "embedding": _b64([2.0])}]
    assert _store(client, ["a", "b"], {"data": data}) == [[2.0], [1.0]]
    bad_answers = {
        "not an embeddings list": b"<html>bad gateway</html>",
        "returned 1 vectors for 2": {"data": data[:1]},
        "duplicate or out-of-range index 0": {"data": [data[1], data[1]]},
        "index 2": {"data": [data[0], {"index": 2, "embedding": _b64([2.0])}]},
        "type int": {"data": [data[0], {"index": 0, "embedding": 0}]},
        "different lengths": {"data": [data[0], {"index": 0, "embedding": _b64([1.0, 2.0])}]},
    }
    for message, answer in bad_answers.items():
        with pytest.raises(ResponseError, match=message):
            _store(client, ["a", "b"], answer)


def test_retry_after_headers() -> None:
    assert _retry_after({"retry-after-ms": "250"}) == 0.25
    assert _retry_after({"retry-after": "3"}) == 3.0
    assert _retry_after({}) is None
    assert _retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def test_explicit_token_beats_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YC_API_KEY", "key-env")
    client = EmbeddingsClient("yandex", iam_token="t1.explicit", project="b1g")
    assert client.settings.credential.header() == "Bearer t1.explicit"
