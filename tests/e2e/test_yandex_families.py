"""The Yandex ``text-embeddings-v2`` pair end to end on the emulator, beside ``text-search``."""

from __future__ import annotations

from typing import Any

import pytest

from studio_embeddings import EmbeddingsClient
from studio_embeddings.emulator import Emulator, embed_text
from studio_embeddings.langchain import YandexEmbeddings
from studio_embeddings.llama_index import YandexEmbedding

FOLDER = "b1gfamilies"
V2 = {"doc_model": "text-embeddings-v2-doc", "query_model": "text-embeddings-v2-query"}
DOCS = ["The Eiffel Tower stands in Paris.", "Cats purr and sleep a lot."]
QUESTION = "Which tower is in Paris?"


def _settings(emu: Emulator) -> dict[str, Any]:
    return {"api_key": "k", "folder_id": FOLDER, "base_url": emu.base_url("yandex")}


def _uri(name: str) -> str:
    return f"emb://{FOLDER}/{name}/latest"


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _through_langchain(emu: Emulator) -> tuple[list[list[float]], list[float]]:
    embeddings = YandexEmbeddings(**_settings(emu), **V2)
    return embeddings.embed_documents(DOCS), embeddings.embed_query(QUESTION)


def _through_llama_index(emu: Emulator) -> tuple[list[list[float]], list[float]]:
    embed_model = YandexEmbedding(**_settings(emu), **V2)
    return embed_model.get_text_embedding_batch(DOCS), embed_model.get_query_embedding(QUESTION)


@pytest.mark.parametrize("embed", [_through_langchain, _through_llama_index])
def test_v2_pair_end_to_end(emulator: Emulator, embed: Any) -> None:
    docs, query = embed(emulator)
    assert docs == [embed_text("yandex", _uri(V2["doc_model"]), t) for t in DOCS]
    assert query == embed_text("yandex", _uri(V2["query_model"]), QUESTION)
    assert len(query) == 256
    assert _dot(query, docs[0]) > _dot(query, docs[1])  # the question retrieves its answer
    sent = {r.body["model"] for r in emulator.requests if r.body}
    assert sent == {_uri(V2["doc_model"]), _uri(V2["query_model"])}


def test_v1_and_v2_vectors_differ_for_the_same_text(emulator: Emulator) -> None:
    settings = {"api_key": "k", "project": FOLDER, "base_url": emulator.base_url("yandex")}
    v1 = EmbeddingsClient("yandex", **settings).embed(DOCS, kind="document")
    v2 = EmbeddingsClient(
        "yandex", **settings, model=V2["doc_model"], query_model=V2["query_model"]
    ).embed(DOCS, kind="document")
    assert [len(v) for v in v1] == [len(v) for v in v2] == [256, 256]
    for a, b in zip(v1, v2, strict=True):
        assert a != b
        assert abs(_dot(a, b)) < 0.5  # different spaces: not comparable
