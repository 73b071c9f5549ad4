"""The wire rules against the real services. Skipped unless their credentials are set.

NEBIUS_API_KEY=... [NEBIUS_PROJECT_ID=...] pytest tests/live -q
YC_API_KEY=... YC_FOLDER_ID=... pytest tests/live -q
"""

from __future__ import annotations

import math
import os

import pytest

from studio_embeddings import ConfigurationError, EmbeddingsClient

pytestmark = pytest.mark.live


def _has(*names: str) -> bool:
    return all(os.environ.get(n) for n in names)


requires_nebius = pytest.mark.skipif(not _has("NEBIUS_API_KEY"), reason="NEBIUS_API_KEY is not set")
requires_yandex = pytest.mark.skipif(
    not (_has("YC_FOLDER_ID") and (_has("YC_API_KEY") or _has("YC_IAM_TOKEN"))),
    reason="YC_FOLDER_ID and YC_API_KEY or YC_IAM_TOKEN are not set",
)

DOCS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "Python is a programming language with a large standard library.",
]
QUESTION = "Which tower stands in Paris?"


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _best(client: EmbeddingsClient) -> str:
    docs = client.embed(DOCS, kind="document")
    (query,) = client.embed([QUESTION], kind="query")
    return max(zip(DOCS, docs, strict=True), key=lambda pair: _cosine(query, pair[1]))[0]


@requires_nebius
def test_nebius_live_retrieval_and_encodings() -> None:
    client = EmbeddingsClient("nebius", max_retries=2)
    assert _best(client) == DOCS[0]
    as_b64 = client.embed(DOCS[:1])
    as_float = EmbeddingsClient("nebius", encoding_format="float").embed(DOCS[:1])
    assert len(as_b64[0]) == len(as_float[0])
    assert _cosine(as_b64[0], as_float[0]) > 0.999


@requires_nebius
def test_nebius_live_dimensions() -> None:
    (vec,) = EmbeddingsClient("nebius", dimensions=256).embed(["hello"])
    assert len(vec) == 256


@requires_yandex
def test_yandex_live_doc_and_query_models() -> None:
    client = EmbeddingsClient("yandex", max_retries=3)
    assert _best(client) == DOCS[0]
    (doc,) = client.embed(["same text"], kind="document")
    (query,) = client.embed(["same text"], kind="query")
    assert len(doc) == len(query) == 256
    assert doc != query


@requires_yandex
def test_yandex_live_refuses_base64_before_sending() -> None:
    with pytest.raises(ConfigurationError):
        EmbeddingsClient("yandex", encoding_format="base64")


@requires_yandex
async def test_yandex_live_async_paced() -> None:
    texts = [f"sentence number {i}" for i in range(12)]
    client = EmbeddingsClient("yandex", max_retries=3)
    assert len(await client.aembed(texts)) == 12
    assert os.environ.get("YC_FOLDER_ID")
