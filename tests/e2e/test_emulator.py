"""The emulator itself, over loopback: both dialects, knobs, scripts, faults and vectors.

Talks to it with plain ``httpx2`` and with the official ``openai`` client (explicit key
and base URL, ``max_retries=0``), never through the library's own client.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import logging
import math
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from studio_embeddings.emulator import Emulator, Faults, RecordedRequest, embed_text
from studio_embeddings.providers import NEBIUS, YANDEX

QWEN = "Qwen/Qwen3-Embedding-8B"
E5 = "intfloat/e5-mistral-7b-instruct"
BGE = "BAAI/bge-en-icl"
FOLDER = "b1gfolder"
DOC = f"emb://{FOLDER}/text-search-doc/latest"
QUERY = f"emb://{FOLDER}/text-search-query/latest"
TASK = NEBIUS.default_query_task

CORPUS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "Photosynthesis is how plants turn sunlight, water and carbon dioxide into sugar.",
    "Python is a popular programming language known for its readable syntax.",
    "Football is a team sport in which two teams try to score goals with a ball.",
    "To cook pasta, boil salted water and simmer the noodles until al dente.",
    "In 1969 the Apollo 11 astronauts landed on the Moon and walked on its surface.",
    "The stock market lets investors buy and sell shares of public companies.",
    "Cats are small domesticated carnivores that purr and sleep a lot.",
]
QUESTIONS = [
    ("Which tower is in Paris?", 0),
    ("How do plants make sugar from sunlight?", 1),
    ("Which programming language has a readable syntax?", 2),
    ("What sport is about scoring goals?", 3),
    ("How long should I boil pasta?", 4),
    ("When did astronauts land on the Moon?", 5),
    ("Where do investors trade shares?", 6),
    ("Why do cats purr?", 7),
]


# --- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: Emulator) -> Iterator[Emulator]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=10.0) as client:
        yield client


def nebius_post(
    http: httpx2.Client,
    emu: Emulator,
    body: dict[str, Any],
    *,
    auth: str | None = "Bearer neb-key",
    params: dict[str, str] | None = None,
) -> httpx2.Response:
    headers = {} if auth is None else {"Authorization": auth}
    return http.post(
        emu.base_url("nebius") + "/embeddings", json=body, headers=headers, params=params
    )


def yandex_post(
    http: httpx2.Client,
    emu: Emulator,
    body: dict[str, Any],
    *,
    auth: str | None = "Api-Key ya-key",
    headers: dict[str, str] | None = None,
) -> httpx2.Response:
    all_headers = dict(headers or {})
    if auth is not None:
        all_headers["Authorization"] = auth
    return http.post(emu.base_url("yandex") + "/embeddings", json=body, headers=all_headers)


def yandex_body(text: Any = "hello world", model: str = DOC, **extra: Any) -> dict[str, Any]:
    return {"model": model, "input": text, "encoding_format": "float", **extra}


def ordered(payload: dict[str, Any]) -> list[Any]:
    return [item["embedding"] for item in sorted(payload["data"], key=lambda d: d["index"])]


def decode_b64(value: str) -> list[float]:
    raw = base64.b64decode(value)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def norm(a: list[float]) -> float:
    return math.sqrt(sum(x * x for x in a))


def grpc(response: httpx2.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"grpcCode", "httpCode", "message", "httpStatus", "details"}
    assert error["httpCode"] == response.status_code
    return error


def openai_client(emu: Emulator, provider: str, **kwargs: Any) -> openai.OpenAI:
    key = "neb-key" if provider == "nebius" else "ya-key"
    return openai.OpenAI(api_key=key, base_url=emu.base_url(provider), max_retries=0, **kwargs)


# --- lifecycle and addresses ------------------------------------------------------------


def test_addresses_and_lifecycle() -> None:
    with Emulator() as first, Emulator() as second:
        assert first.port != second.port
        assert first.url == f"http://127.0.0.1:{first.port}"
        assert first.base_url("nebius") == f"{first.url}/nebius/v1"
        assert first.base_url("yandex") == f"{first.url}/yandex/v1"
        with pytest.raises(ValueError, match="nebius"):
            first.base_url("openai")
        url = first.base_url("nebius") + "/models"
        assert httpx2.get(url, headers={"Authorization": "Bearer k"}).status_code == 200
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(url, headers={"Authorization": "Bearer k"}, timeout=2.0)


def test_emulator_imports_nothing_of_the_client() -> None:
    package = Path(__file__).parents[2] / "src" / "studio_embeddings" / "emulator"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "studio_embeddings"
            ):
                module = node.module or ""
                assert module == "studio_embeddings.providers" or module.startswith(
                    "studio_embeddings.emulator"
                ), f"{path.name} imports {module}"


# --- Nebius dialect ---------------------------------------------------------------------


def test_nebius_float_matches_embed_text_and_is_shuffled(
    http: httpx2.Client, emu: Emulator
) -> None:
    texts = ["first text", "second one here", "third", "and the fourth text"]
    response = nebius_post(http, emu, {"model": QWEN, "input": texts, "encoding_format": "float"})
    assert response.status_code == 200
    payload = response.json()
    assert payload["object"] == "list"
    assert payload["model"] == QWEN
    assert payload["service_tier"] == "default"
    assert payload["usage"] == {"prompt_tokens": 10, "total_tokens": 10}
    indices = [item["index"] for item in payload["data"]]
    assert sorted(indices) == [0, 1, 2, 3]
    assert indices != [0, 1, 2, 3]
    assert all(item["object"] == "embedding" for item in payload["data"])
    vectors = ordered(payload)
    assert vectors == [embed_text("nebius", QWEN, t) for t in texts]
    assert all(len(v) == 4096 and abs(norm(v) - 1.0) < 1e-5 for v in vectors)
    assert int(response.headers["x-ratelimit-remaining-requests"]) > 0
    assert int(response.headers["x-ratelimit-remaining-tokens"]) > 0


def test_nebius_base64_decodes_to_the_same_floats(http: httpx2.Client, emu: Emulator) -> None:
    texts = ["alpha beta", "gamma"]
    as_float = nebius_post(http, emu, {"model": QWEN, "input": texts, "encoding_format": "float"})
    as_b64 = nebius_post(http, emu, {"model": QWEN, "input": texts, "encoding_format": "base64"})
    decoded = [decode_b64(v) for v in ordered(as_b64.json())]
    assert decoded == ordered(as_float.json())
    assert decoded == [embed_text("nebius", QWEN, t) for t in texts]


def test_nebius_single_string_and_no_shuffle_knob(http: httpx2.Client, emu: Emulator) -> None:
    single = nebius_post(http, emu, {"model": E5, "input": "just one", "encoding_format": "float"})
    assert [d["index"] for d in single.json()["data"]] == [0]
    assert ordered(single.json()) == [embed_text("nebius", E5, "just one")]
    emu.configure(shuffle=False)
    several = nebius_post(http, emu, {"model": E5, "input": ["a", "b", "c"]})
    assert [d["index"] for d in several.json()["data"]] == [0, 1, 2]


def test_openai_client_default_base64_against_nebius(emu: Emulator) -> None:
    client = openai_client(emu, "nebius")
    texts = ["one text", "another text", "a third"]
    result = client.embeddings.create(model=QWEN, input=texts, extra_query={"ai_project_id": "p"})
    by_index = sorted(result.data, key=lambda d: d.index)
    assert [list(d.embedding) for d in by_index] == [embed_text("nebius", QWEN, t) for t in texts]
    (recorded,) = emu.requests
    assert recorded.body is not None
    assert recorded.body["encoding_format"] == "base64"
    assert recorded.query == {"ai_project_id": "p"}


def test_nebius_dimensions_truncate_and_renormalise(http: httpx2.Client, emu: Emulator) -> None:
    text = "Matryoshka embeddings keep the first dimensions"
    response = nebius_post(http, emu, {"model": QWEN, "input": text, "dimensions": 64})
    assert response.status_code == 200
    (vector,) = ordered(response.json())
    assert len(vector) == 64
    assert vector == embed_text("nebius", QWEN, text, dimensions=64)
    full = embed_text("nebius", QWEN, text)
    head = full[:64]
    expected = [x / norm(head) for x in head]
    assert max(abs(a - b) for a, b in zip(vector, expected, strict=True)) < 1e-6
    assert abs(norm(vector) - 1.0) < 1e-5


@pytest.mark.parametrize(
    ("model", "dimensions", "status"),
    [
        (QWEN, 16, 400),
        (QWEN, 5000, 400),
        (BGE, 128, 400),
        (QWEN, "64", 422),
        (QWEN, True, 422),
    ],
)
def test_nebius_invalid_dimensions(
    http: httpx2.Client, emu: Emulator, model: str, dimensions: Any, status: int
) -> None:
    response = nebius_post(http, emu, {"model": model, "input": "x", "dimensions": dimensions})
    assert response.status_code == status
    assert "detail" in response.json()


def test_nebius_native_dimensions_are_accepted_for_any_model(
    http: httpx2.Client, emu: Emulator
) -> None:
    response = nebius_post(http, emu, {"model": BGE, "input": "x", "dimensions": 4096})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("asked", "served"),
    [
        (None, "default"),
        ("auto", "default"),
        ("default", "default"),
        ("flex", "flex"),
        ("no-limit", "no-limit"),
    ],
)
def test_nebius_service_tier_echo(
    http: httpx2.Client, emu: Emulator, asked: str | None, served: str
) -> None:
    body: dict[str, Any] = {"model": QWEN, "input": "x"}
    if asked is not None:
        body["service_tier"] = asked
    response = nebius_post(http, emu, body)
    assert response.status_code == 200
    assert response.json()["service_tier"] == served


def test_nebius_over_limit_knob_serves_past_the_limit_and_says_so(
    http: httpx2.Client, emu: Emulator
) -> None:
    emu.configure(nebius_over_limit_after=2, nebius_rpm=2)
    body = {"model": QWEN, "input": "x"}
    tiers = [
        nebius_post(http, emu, body, params={"ai_project_id": "p1"}).json()["service_tier"]
        for _ in range(3)
    ]
    # Past the limit the request is still served (200, not the nebius_rpm 429), marked over-limit.
    assert tiers == ["default", "default", "over-limit"]
    assert emu.stats.statuses == {200: 3}
    # Per project, and flex spends no credit, so it is never over the limit.
    other = nebius_post(http, emu, body, params={"ai_project_id": "p2"})
    assert other.json()["service_tier"] == "default"
    flex = nebius_post(http, emu, {**body, "service_tier": "flex"}, params={"ai_project_id": "p1"})
    assert flex.json()["service_tier"] == "flex"
    emu.configure(nebius_over_limit_after=None)
    emu.clear()
    assert nebius_post(http, emu, body).json()["service_tier"] == "default"


def test_nebius_over_limit_knob_is_validated(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="nebius_over_limit_after"):
        emu.configure(nebius_over_limit_after=0)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"model": QWEN, "input": "x", "service_tier": "over-limit"}, ["body", "service_tier"]),
        ({"model": QWEN, "input": []}, ["body", "input"]),
        ({"model": QWEN}, ["body", "input"]),
        ({"input": "x"}, ["body", "model"]),
        ({"model": QWEN, "input": ["ok", 3]}, ["body", "input", 1]),
        ({"model": QWEN, "input": 42}, ["body", "input"]),
        ({"model": QWEN, "input": "x", "encoding_format": "int8"}, ["body", "encoding_format"]),
        ({"model": QWEN, "input": "x", "user": 5}, ["body", "user"]),
    ],
)
def test_nebius_validation_errors_are_fastapi_422(
    http: httpx2.Client, emu: Emulator, body: dict[str, Any], loc: list[Any]
) -> None:
    response = nebius_post(http, emu, body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    assert loc in [item["loc"] for item in detail]
    assert all({"loc", "msg", "type"} <= set(item) for item in detail)


def test_nebius_invalid_json_is_422(http: httpx2.Client, emu: Emulator) -> None:
    response = http.post(
        emu.base_url("nebius") + "/embeddings",
        content=b"{not json",
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_nebius_unknown_model_is_404(http: httpx2.Client, emu: Emulator) -> None:
    response = nebius_post(http, emu, {"model": "text-embedding-3-small", "input": "x"})
    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


@pytest.mark.parametrize("auth", [None, "Bearer", "Basic abc", "Api-Key abc", "abc"])
def test_nebius_auth_failures(http: httpx2.Client, emu: Emulator, auth: str | None) -> None:
    response = nebius_post(http, emu, {"model": QWEN, "input": "x"}, auth=auth)
    assert response.status_code == 401
    assert isinstance(response.json()["detail"], str)


def test_valid_keys_both_providers(http: httpx2.Client, emu: Emulator) -> None:
    emu.configure(valid_keys={"good"})
    assert (
        nebius_post(http, emu, {"model": QWEN, "input": "x"}, auth="Bearer bad").status_code == 401
    )
    assert (
        nebius_post(http, emu, {"model": QWEN, "input": "x"}, auth="Bearer good").status_code == 200
    )
    bad = yandex_post(http, emu, yandex_body(), auth="Api-Key bad")
    assert bad.status_code == 401
    assert grpc(bad)["grpcCode"] == 16
    assert "bad" not in bad.text  # keys are never echoed
    assert yandex_post(http, emu, yandex_body(), auth="Api-Key good").status_code == 200
    assert yandex_post(http, emu, yandex_body(), auth="Bearer good").status_code == 200


def test_nebius_models_listing(http: httpx2.Client, emu: Emulator) -> None:
    url = emu.base_url("nebius") + "/models"
    assert http.get(url).status_code == 401
    response = http.get(url, headers={"Authorization": "Bearer k"})
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == list(NEBIUS.model_dimensions)


# --- Yandex dialect ---------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["Api-Key ya-key", "Bearer t1.iam-token", "api-key lower"])
def test_yandex_float_matches_embed_text(http: httpx2.Client, emu: Emulator, auth: str) -> None:
    response = yandex_post(http, emu, yandex_body("Moscow is big"), auth=auth)
    assert response.status_code == 200
    payload = response.json()
    assert payload["model"] == DOC
    assert payload["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    (vector,) = ordered(payload)
    assert len(vector) == YANDEX.model_dimensions["text-search-doc"] == 256
    assert vector == embed_text("yandex", DOC, "Moscow is big")
    assert vector == embed_text("yandex", "text-search-doc", "Moscow is big")
    assert vector == embed_text("yandex", "emb://other/text-search-doc/rc", "Moscow is big")


def test_yandex_v2_family_is_served_and_differs_from_v1(
    http: httpx2.Client, emu: Emulator
) -> None:
    text = "The Eiffel Tower is in Paris."
    vectors = {}
    for name in ("text-search-doc", "text-embeddings-v2-doc", "text-embeddings-v2-query"):
        model = f"emb://{FOLDER}/{name}/latest"
        response = yandex_post(http, emu, yandex_body(text, model))
        assert response.status_code == 200, response.text
        vectors[name] = response.json()["data"][0]["embedding"]
        assert vectors[name] == embed_text("yandex", model, text)
        assert len(vectors[name]) == YANDEX.model_dimensions[name] == 256
        # Deterministic: the same answer again.
        assert yandex_post(http, emu, yandex_body(text, model)).json()["data"][0][
            "embedding"
        ] == vectors[name]
    # Another family: another vector for the same text, not comparable with v1's.
    assert vectors["text-search-doc"] != vectors["text-embeddings-v2-doc"]
    assert abs(cosine(vectors["text-search-doc"], vectors["text-embeddings-v2-doc"])) < 0.5
    # Within v2, doc and query share one space.
    assert cosine(vectors["text-embeddings-v2-doc"], vectors["text-embeddings-v2-query"]) > 0.9


def test_yandex_list_of_one_and_fine_tuned_model(http: httpx2.Client, emu: Emulator) -> None:
    one = yandex_post(http, emu, yandex_body(["a single text"]))
    assert ordered(one.json()) == [embed_text("yandex", DOC, "a single text")]
    tuned = f"gpt://{FOLDER}/text-embeddings/latest@tuned123"
    response = yandex_post(http, emu, yandex_body("a single text", model=tuned))
    assert response.status_code == 200
    assert ordered(response.json()) == [embed_text("yandex", tuned, "a single text")]


def test_yandex_doc_and_query_models_differ_but_share_a_space(
    http: httpx2.Client, emu: Emulator
) -> None:
    text = "the same words for both models"
    (doc,) = ordered(yandex_post(http, emu, yandex_body(text)).json())
    (query,) = ordered(yandex_post(http, emu, yandex_body(text, model=QUERY)).json())
    assert doc != query
    assert 0.98 < cosine(doc, query) < 0.9999


def test_openai_client_against_yandex(emu: Emulator) -> None:
    client = openai_client(emu, "yandex", project=FOLDER)
    result = client.embeddings.create(
        model=QUERY,
        input="где находится Эйфелева башня?",
        encoding_format="float",
        extra_headers={"x-data-logging-enabled": "false"},
    )
    assert list(result.data[0].embedding) == embed_text(
        "yandex", QUERY, "где находится Эйфелева башня?"
    )
    (recorded,) = emu.requests
    assert recorded.headers["openai-project"] == FOLDER
    assert recorded.headers["x-data-logging-enabled"] == "false"
    assert recorded.headers["authorization"] == "Bearer ya-key"
    with pytest.raises(openai.BadRequestError, match="base64"):
        client.embeddings.create(model=QUERY, input="x")  # the SDK's default is base64


def test_yandex_base64_is_rejected(http: httpx2.Client, emu: Emulator) -> None:
    response = yandex_post(http, emu, yandex_body(encoding_format="base64"))
    assert response.status_code == 400
    error = grpc(response)
    assert error["grpcCode"] == 3
    assert "base64" in error["message"]
    assert "not supported" in error["message"]


@pytest.mark.parametrize("text", [["one", "two"], [], "", "   ", [""], None, 7, [3]])
def test_yandex_input_must_be_exactly_one_text(
    http: httpx2.Client, emu: Emulator, text: Any
) -> None:
    response = yandex_post(http, emu, yandex_body(text))
    assert response.status_code == 400
    assert grpc(response)["grpcCode"] == 3


def test_yandex_folder_mismatch(http: httpx2.Client, emu: Emulator) -> None:
    same = yandex_post(http, emu, yandex_body(), headers={"OpenAI-Project": FOLDER})
    assert same.status_code == 200
    other = yandex_post(http, emu, yandex_body(), headers={"OpenAI-Project": "b1gother"})
    assert other.status_code == 400
    error = grpc(other)
    assert error["grpcCode"] == 3
    assert "mismatch" in error["message"]


@pytest.mark.parametrize(
    "model",
    [
        "text-search-doc",
        f"emb://{FOLDER}/text-search-doc",
        f"emb://{FOLDER}/text-search-doc/v7",
        f"emb://{FOLDER}/unknown-model/latest",
        "emb:///text-search-doc/latest",
        f"gpt://{FOLDER}/text-embeddings/latest",
        f"gpt://{FOLDER}/yandexgpt/latest@x",
        f"https://{FOLDER}/text-search-doc/latest",
    ],
)
def test_yandex_bad_model_uri(http: httpx2.Client, emu: Emulator, model: str) -> None:
    response = yandex_post(http, emu, yandex_body(model=model))
    assert response.status_code == 400
    assert "model URI" in grpc(response)["message"]


def test_yandex_dimensions_other_than_native(http: httpx2.Client, emu: Emulator) -> None:
    assert yandex_post(http, emu, yandex_body(dimensions=256)).status_code == 200
    assert yandex_post(http, emu, yandex_body(dimensions=128)).status_code == 400


@pytest.mark.parametrize("auth", [None, "Basic abc", "Api-Key", "Bearer", "Token abc"])
def test_yandex_auth_failures(http: httpx2.Client, emu: Emulator, auth: str | None) -> None:
    response = yandex_post(http, emu, yandex_body(), auth=auth)
    assert response.status_code == 401
    error = grpc(response)
    assert error["grpcCode"] == 16
    assert "UNAUTHENTICATED" in error["message"]


# --- rate limits ------------------------------------------------------------------------


def test_yandex_rate_limit_per_folder(http: httpx2.Client, emu: Emulator) -> None:
    statuses = [yandex_post(http, emu, yandex_body(f"text {i}")).status_code for i in range(10)]
    assert statuses == [200] * 10
    limited = yandex_post(http, emu, yandex_body("one too many"))
    assert limited.status_code == 429
    error = grpc(limited)
    assert error["grpcCode"] == 8
    assert error["httpStatus"] == "Too Many Requests"
    assert "rate quota limit exceed: allowed 10 requests" in error["message"]
    other_folder = yandex_post(
        http, emu, yandex_body(model="emb://b1gother/text-search-doc/latest")
    )
    assert other_folder.status_code == 200
    time.sleep(1.05)  # the window slides
    assert yandex_post(http, emu, yandex_body("again")).status_code == 200


def test_yandex_rate_limit_knob(http: httpx2.Client, emu: Emulator) -> None:
    emu.configure(yandex_rps=2)
    statuses = [yandex_post(http, emu, yandex_body()).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    emu.configure(yandex_rps=None)
    statuses = [yandex_post(http, emu, yandex_body()).status_code for _ in range(15)]
    assert statuses == [200] * 15


def test_nebius_requests_per_minute(http: httpx2.Client, emu: Emulator) -> None:
    emu.configure(nebius_rpm=3)
    body = {"model": QWEN, "input": "x"}
    remaining = []
    for _ in range(3):
        response = nebius_post(http, emu, body, params={"ai_project_id": "p1"})
        assert response.status_code == 200
        remaining.append(response.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    limited = nebius_post(http, emu, body, params={"ai_project_id": "p1"})
    assert limited.status_code == 429
    assert "Rate limit exceeded" in limited.json()["detail"]
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert nebius_post(http, emu, body, params={"ai_project_id": "p2"}).status_code == 200
    flex = nebius_post(http, emu, {**body, "service_tier": "flex"}, params={"ai_project_id": "p1"})
    assert flex.status_code == 200  # the flex tier spends no rate-limit credit
    emu.clear()
    assert nebius_post(http, emu, body, params={"ai_project_id": "p1"}).status_code == 200


def test_nebius_tokens_per_minute(http: httpx2.Client, emu: Emulator) -> None:
    emu.configure(nebius_tpm=10)
    first = nebius_post(
        http, emu, {"model": QWEN, "input": ["one two three", "four five six seven eight"]}
    )
    assert first.status_code == 200
    assert first.json()["usage"]["total_tokens"] == 8
    assert first.headers["x-ratelimit-remaining-tokens"] == "2"
    second = nebius_post(http, emu, {"model": QWEN, "input": "a b c"})
    assert second.status_code == 429
    assert "tokens per minute" in second.json()["detail"]
    assert nebius_post(http, emu, {"model": QWEN, "input": "a b"}).status_code == 200


# --- scripted answers and faults ----------------------------------------------------------


def test_script_sequence_and_headers(http: httpx2.Client, emu: Emulator) -> None:
    emu.script("nebius", [503, (429, {"Retry-After": "2"}), 200, (200, {"x-extra": "1"})])
    assert emu.pending_script("nebius") == 4
    body = {"model": QWEN, "input": "x"}
    responses = [nebius_post(http, emu, body) for _ in range(5)]
    assert [r.status_code for r in responses] == [503, 429, 200, 200, 200]
    assert responses[1].headers["retry-after"] == "2"
    assert "x-ratelimit-remaining-requests" in responses[0].headers
    assert responses[3].headers["x-extra"] == "1"
    assert isinstance(responses[0].json()["detail"], str)
    assert emu.pending_script("nebius") == 0
    assert [r.status for r in emu.requests] == [503, 429, 200, 200, 200]


def test_script_is_per_provider_and_uses_the_provider_error_shape(
    http: httpx2.Client, emu: Emulator
) -> None:
    emu.script("yandex", [503, 500, 504])
    assert nebius_post(http, emu, {"model": QWEN, "input": "x"}).status_code == 200
    codes = []
    for _ in range(3):
        response = yandex_post(http, emu, yandex_body())
        codes.append((response.status_code, grpc(response)["grpcCode"]))
    assert codes == [(503, 14), (500, 13), (504, 4)]


def test_script_quota_answers(http: httpx2.Client, emu: Emulator) -> None:
    emu.script("nebius", ["quota"])
    emu.script("yandex", ["quota"])
    nebius = nebius_post(http, emu, {"model": QWEN, "input": "x"})
    assert nebius.status_code == 429
    assert nebius.json()["error"]["code"] == "insufficient_quota"
    yandex = yandex_post(http, emu, yandex_body())
    assert yandex.status_code == 429
    assert grpc(yandex)["grpcCode"] == 8
    for response in (nebius, yandex):
        assert any(m in response.text.lower() for m in NEBIUS.quota_exhausted_markers)
    rate_limited = [503, 429]
    emu.script("yandex", rate_limited)
    ordinary = [yandex_post(http, emu, yandex_body()) for _ in rate_limited][1]
    assert not any(m in ordinary.text.lower() for m in YANDEX.quota_exhausted_markers)


def test_script_drop_is_a_transport_error(
    http: httpx2.Client, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu.script("nebius", ["drop"])
    emu.script("yandex", ["drop"])
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(httpx2.TransportError):
            nebius_post(http, emu, {"model": QWEN, "input": "x"})
        with pytest.raises(httpx2.TransportError):
            yandex_post(http, emu, yandex_body())
    assert not [r for r in caplog.records if "completing response" in r.getMessage()]
    assert nebius_post(http, emu, {"model": QWEN, "input": "x"}).status_code == 200
    assert emu.stats.drops == 2
    assert [r.status for r in emu.requests] == [0, 0, 200]


def test_drop_through_openai_is_a_connection_error(emu: Emulator) -> None:
    emu.script("nebius", ["drop", (429, {"retry-after-ms": "1500"})])
    client = openai_client(emu, "nebius")
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model=QWEN, input="x", encoding_format="float")
    with pytest.raises(openai.RateLimitError) as caught:
        client.embeddings.create(model=QWEN, input="x", encoding_format="float")
    assert caught.value.response.headers["retry-after-ms"] == "1500"


@pytest.mark.parametrize("entry", [302, 600, "boom", (429,), (429, "x"), True])
def test_script_rejects_unknown_entries(emu: Emulator, entry: Any) -> None:
    with pytest.raises(ValueError, match="scripted"):
        emu.script("nebius", [200, entry])
    assert emu.pending_script("nebius") == 0
    with pytest.raises(ValueError, match="provider"):
        emu.script("openai", [200])


def run_faults(http: httpx2.Client, emu: Emulator, n: int) -> list[tuple[int, str | None]]:
    seen: list[tuple[int, str | None]] = []
    for _ in range(n):
        try:
            response = nebius_post(http, emu, {"model": QWEN, "input": "x"})
        except httpx2.TransportError:
            seen.append((0, None))
        else:
            seen.append((response.status_code, response.headers.get("retry-after")))
    return seen


def test_random_faults_follow_their_probabilities(http: httpx2.Client, emu: Emulator) -> None:
    faults = Faults(
        p503=0.2, p429=0.1, p429_retry_after=0.1, p500=0.05, p_drop=0.05, retry_after_s=0.25, seed=3
    )
    emu.configure(faults=faults)
    seen = run_faults(http, emu, 200)
    count = {status: sum(1 for s, _ in seen if s == status) for status in (200, 503, 429, 500, 0)}
    assert abs(count[200] - 100) <= 25
    assert abs(count[503] - 40) <= 18
    assert abs(count[429] - 40) <= 18
    assert abs(count[500] - 10) <= 9
    assert 1 <= count[0] <= 22
    with_header = [h for s, h in seen if s == 429 and h is not None]
    assert set(with_header) == {"0.25"}
    assert abs(len(with_header) - 20) <= 13
    assert 0 < len(with_header) < count[429]
    stats = emu.stats
    assert stats.drops == count[0]
    assert stats.requests == {"nebius": 200}
    assert stats.statuses[503] == count[503]
    # The same seed replays the same sequence after clear().
    emu.clear()
    assert run_faults(http, emu, 40) == seen[:40]


def test_faults_validate() -> None:
    with pytest.raises(ValueError, match="probabilit"):
        Faults(p503=0.7, p500=0.5)
    with pytest.raises(ValueError, match="p_drop"):
        Faults(p_drop=1.5)
    with pytest.raises(ValueError, match="retry_after_s"):
        Faults(retry_after_s=-1)


# --- latency and runtime configuration --------------------------------------------------


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_latency_knobs(http: httpx2.Client, emu: Emulator) -> None:
    body = {"model": QWEN, "input": ["a", "b", "c", "d", "e"]}
    baseline = timed(lambda: nebius_post(http, emu, body))
    emu.configure(latency_ms=150)
    assert timed(lambda: nebius_post(http, emu, body)) >= 0.15
    emu.configure(latency_ms=0, per_input_ms=40)
    assert timed(lambda: nebius_post(http, emu, body)) >= 0.2
    assert timed(lambda: yandex_post(http, emu, yandex_body())) >= 0.04
    emu.configure(per_input_ms=0)
    assert timed(lambda: nebius_post(http, emu, body)) < baseline + 0.1


async def test_latency_does_not_block_other_requests(emu: Emulator) -> None:
    emu.configure(latency_ms=300)
    async with httpx2.AsyncClient(timeout=10.0) as client:
        start = time.perf_counter()
        responses = await asyncio.gather(
            *[
                client.post(
                    emu.base_url("nebius") + "/embeddings",
                    json={"model": QWEN, "input": f"text {i}"},
                    headers={"Authorization": "Bearer k"},
                )
                for i in range(8)
            ]
        )
        elapsed = time.perf_counter() - start
    assert [r.status_code for r in responses] == [200] * 8
    assert 0.3 <= elapsed < 1.2  # sequential sleeping would take 2.4 s


def test_configure_validates_and_reset_restores() -> None:
    emulator = Emulator(yandex_rps=5, latency_ms=1)
    emulator.configure(yandex_rps=None, faults=Faults(p503=1.0), valid_keys=["k"])
    assert emulator.knobs.yandex_rps is None
    assert emulator.knobs.valid_keys == frozenset({"k"})
    assert emulator.knobs.latency_ms == 1  # untouched knobs keep their value
    with pytest.raises(ValueError, match="latency_ms"):
        emulator.configure(latency_ms=-1)
    with pytest.raises(ValueError, match="nebius_rpm"):
        emulator.configure(nebius_rpm=0)
    emulator.configure(faults=None)
    assert emulator.knobs.faults == Faults()
    emulator.reset()
    assert emulator.knobs.yandex_rps == 5
    assert emulator.knobs.valid_keys is None


# --- recording ----------------------------------------------------------------------------


def test_recorded_requests_and_stats(http: httpx2.Client, emu: Emulator) -> None:
    before = time.monotonic()
    nebius_post(
        http, emu, {"model": QWEN, "input": "x", "user": "u1"}, params={"ai_project_id": "proj-1"}
    )
    yandex_post(
        http,
        emu,
        yandex_body("hi"),
        headers={"x-data-logging-enabled": "false", "OpenAI-Project": FOLDER},
    )
    yandex_post(http, emu, yandex_body(encoding_format="base64"))
    first, second, third = emu.requests
    assert isinstance(first, RecordedRequest)
    assert first.provider == "nebius"
    assert first.method == "POST"
    assert first.path == "/nebius/v1/embeddings"
    assert first.query == {"ai_project_id": "proj-1"}
    assert first.headers["authorization"] == "Bearer neb-key"
    assert first.body == {"model": QWEN, "input": "x", "user": "u1"}
    assert first.status == 200
    assert before <= first.time <= second.time <= time.monotonic()
    assert second.headers["x-data-logging-enabled"] == "false"
    assert second.headers["openai-project"] == FOLDER
    assert all(name == name.lower() for name in second.headers)
    assert third.status == 400
    stats = emu.stats
    assert stats.requests == {"nebius": 1, "yandex": 2}
    assert stats.by_provider["yandex"] == {200: 1, 400: 1}
    assert stats.statuses == {200: 2, 400: 1}
    assert stats.total == 3
    assert stats.drops == 0
    with pytest.raises(AttributeError):
        first.status = 500  # type: ignore[misc]
    emu.clear()
    assert emu.requests == []
    assert emu.stats.total == 0


# --- vectors --------------------------------------------------------------------------------


def test_embed_text_is_deterministic_float32_and_normalised() -> None:
    for provider, model in (
        ("nebius", QWEN),
        ("nebius", "BAAI/bge-multilingual-gemma2"),
        ("yandex", QUERY),
    ):
        vector = embed_text(provider, model, "Deterministic vectors, please!")
        assert vector == embed_text(provider, model, "Deterministic vectors, please!")
        packed = struct.pack(f"<{len(vector)}f", *vector)
        assert list(struct.unpack(f"<{len(vector)}f", packed)) == vector
        assert abs(norm(vector) - 1.0) < 1e-5
    assert len(embed_text("nebius", "BAAI/bge-multilingual-gemma2", "x")) == 3584
    empty = embed_text("nebius", QWEN, "")
    assert abs(norm(empty) - 1.0) < 1e-5
    assert embed_text("nebius", QWEN, "!!!") != embed_text("nebius", QWEN, "???")


def test_embed_text_models_differ() -> None:
    text = "the same text for every model"
    vectors = [embed_text("nebius", m, text) for m in (QWEN, E5, BGE)]
    assert cosine(vectors[0], vectors[1]) < 0.5
    assert cosine(vectors[1], vectors[2]) < 0.5


def test_embed_text_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="provider"):
        embed_text("openai", QWEN, "x")
    with pytest.raises(ValueError, match="Nebius model"):
        embed_text("nebius", "nope", "x")
    with pytest.raises(ValueError, match="Yandex model"):
        embed_text("yandex", "emb://f/nope/latest", "x")
    with pytest.raises(ValueError, match="dimensions"):
        embed_text("nebius", QWEN, "x", dimensions=16)
    with pytest.raises(ValueError, match="dimensions"):
        embed_text("nebius", BGE, "x", dimensions=128)
    with pytest.raises(ValueError, match="dimensions"):
        embed_text("yandex", DOC, "x", dimensions=128)
    assert embed_text("yandex", DOC, "x", dimensions=256) == embed_text("yandex", DOC, "x")


def test_embed_text_is_fast() -> None:
    texts = [
        f"benchmark sentence number {i} with several distinct words {i * 31}" for i in range(64)
    ]
    elapsed = timed(lambda: [embed_text("nebius", QWEN, t) for t in texts])
    assert elapsed < 0.25  # typically ~20 ms; generous for slow CI machines


def test_similar_texts_are_near() -> None:
    a = embed_text("nebius", QWEN, "The cat sat on the mat.")
    b = embed_text("nebius", QWEN, "A cat was sitting on a mat.")
    c = embed_text("nebius", QWEN, "Quarterly earnings beat analyst expectations.")
    assert cosine(a, b) > cosine(a, c) + 0.3


def retrieve(queries: list[list[float]], docs: list[list[float]]) -> list[int]:
    return [max(range(len(docs)), key=lambda i: cosine(q, docs[i])) for q in queries]


def test_retrieval_sanity_nebius_qwen3_with_instructions(
    http: httpx2.Client, emu: Emulator
) -> None:
    template = NEBIUS.query_templates[QWEN]
    queries = [template.format(task=TASK, query=q) for q, _ in QUESTIONS]
    docs = ordered(nebius_post(http, emu, {"model": QWEN, "input": CORPUS}).json())
    found = ordered(nebius_post(http, emu, {"model": QWEN, "input": queries}).json())
    assert retrieve(found, docs) == [answer for _, answer in QUESTIONS]


@pytest.mark.parametrize("model", [E5, BGE])
def test_retrieval_sanity_other_nebius_templates(model: str) -> None:
    template = NEBIUS.query_templates[model]
    docs = [embed_text("nebius", model, d) for d in CORPUS]
    queries = [
        embed_text("nebius", model, template.format(task=TASK, query=q)) for q, _ in QUESTIONS
    ]
    assert retrieve(queries, docs) == [answer for _, answer in QUESTIONS]


def test_retrieval_sanity_matryoshka() -> None:
    template = NEBIUS.query_templates[QWEN]
    docs = [embed_text("nebius", QWEN, d, dimensions=256) for d in CORPUS]
    queries = [
        embed_text("nebius", QWEN, template.format(task=TASK, query=q), dimensions=256)
        for q, _ in QUESTIONS
    ]
    assert retrieve(queries, docs) == [answer for _, answer in QUESTIONS]


def test_retrieval_sanity_yandex_query_vs_doc(http: httpx2.Client, emu: Emulator) -> None:
    emu.configure(yandex_rps=None)
    docs = [ordered(yandex_post(http, emu, yandex_body(d)).json())[0] for d in CORPUS]
    queries = [
        ordered(yandex_post(http, emu, yandex_body(q, model=QUERY)).json())[0] for q, _ in QUESTIONS
    ]
    assert retrieve(queries, docs) == [answer for _, answer in QUESTIONS]


def test_keep_alive_answers_are_not_delayed(http: httpx2.Client, emu: Emulator) -> None:
    nebius_post(http, emu, {"model": QWEN, "input": "warm up"})
    elapsed = timed(
        lambda: [nebius_post(http, emu, {"model": QWEN, "input": "x"}) for _ in range(20)]
    )
    assert elapsed < 0.6  # ~40 ms each if Nagle and delayed ACKs met on a keep-alive connection


def test_embed_text_works_without_the_emulator_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['starlette'] = None\n"
        "sys.modules['uvicorn'] = None\n"
        "from studio_embeddings.emulator import Emulator, embed_text\n"
        "assert len(embed_text('yandex', 'text-search-doc', 'x')) == 256\n"
        "try:\n"
        "    Emulator().start()\n"
        "except ImportError as exc:\n"
        "    assert 'studio-embeddings[emulator]' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('started without uvicorn')\n"
    )
    src = str(Path(__file__).parents[2] / "src")
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": src},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_serve_runs_in_the_foreground(served_emulator: dict[str, str]) -> None:
    assert set(served_emulator) == {"nebius", "yandex"}
    assert served_emulator["nebius"].startswith("http://127.0.0.1:")
    base_url = served_emulator["yandex"]
    assert base_url.endswith("/yandex/v1")
    assert not base_url.startswith("http://127.0.0.1:0/")
    deadline = time.monotonic() + 10
    while True:
        try:
            response = httpx2.post(
                base_url + "/embeddings",
                json=yandex_body("served"),
                headers={"Authorization": "Api-Key k"},
            )
            break
        except httpx2.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert response.status_code == 200
    assert ordered(response.json()) == [embed_text("yandex", DOC, "served")]


def test_client_leaving_mid_body_is_quietly_ignored(
    http: httpx2.Client, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    head = (
        "POST /nebius/v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    with caplog.at_level(logging.DEBUG):
        with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as raw:
            raw.sendall(head.encode() + b'{"model": ')
        time.sleep(0.2)
        assert nebius_post(http, emu, {"model": QWEN, "input": "x"}).status_code == 200
    assert "Exception in ASGI application" not in caplog.text
    assert [r.status for r in emu.requests] == [200]
