"""The fault-mix ingestion through both frameworks and both providers, sync and async.

300 documents each, with 15% 503, 10% 429 (half with Retry-After), 5% 500 and 5% dropped
connections: every vector must come back exact and in input order.
"""

from __future__ import annotations

from typing import Any

import pytest

from studio_embeddings import RetryPolicy
from studio_embeddings.emulator import Faults, embed_text

FAULTS = Faults(
    p503=0.15, p429=0.05, p429_retry_after=0.05, p500=0.05, p_drop=0.05, retry_after_s=0.01, seed=11
)
# 35% of answers fail: 16 attempts make a request that never succeeds a 1-in-10^7 event.
FAST = RetryPolicy(max_retries=15, initial_wait=0.002, max_wait=0.02)
FOLDER = "b1gframeworkfaults"
WIRE_MODEL = {
    "nebius": "Qwen/Qwen3-Embedding-8B",
    "yandex": f"emb://{FOLDER}/text-search-doc/latest",
}


def build(framework: str, provider: str, emu: Any) -> Any:
    common: dict[str, Any] = {
        "api_key": "fault-key",
        "base_url": emu.base_url(provider),
        "max_concurrency": 8,
        "retry_policy": FAST,
        "max_retries": 15,
    }
    if provider == "yandex":
        common.update(folder_id=FOLDER, requests_per_second=0)
    if framework == "langchain":
        from studio_embeddings.langchain import NebiusEmbeddings, YandexEmbeddings

        cls = {"nebius": NebiusEmbeddings, "yandex": YandexEmbeddings}[provider]
        return cls(chunk_size=8, **common)
    from studio_embeddings.llama_index import NebiusEmbedding, YandexEmbedding

    cls = {"nebius": NebiusEmbedding, "yandex": YandexEmbedding}[provider]
    return cls(embed_batch_size=8, **common)


def corpus(n: int) -> list[str]:
    return [f"ingested record {i} mentions subject {i % 17} and value {i * 31}" for i in range(n)]


CASES = [(f, p) for f in ("langchain", "llama_index") for p in ("nebius", "yandex")]


@pytest.fixture
def faulty(emulator: Any) -> Any:
    emulator.configure(faults=FAULTS, yandex_rps=None)
    return emulator


@pytest.mark.parametrize(("framework", "provider"), CASES)
def test_sync_ingestion_is_exact_under_faults(faulty: Any, framework: str, provider: str) -> None:
    docs = corpus(300)
    model = build(framework, provider, faulty)
    if framework == "langchain":
        got = model.embed_documents(docs)
    else:
        got = model.get_text_embedding_batch(docs)
    assert got == [embed_text(provider, WIRE_MODEL[provider], t) for t in docs]
    assert any(r.status != 200 for r in faulty.requests)


@pytest.mark.parametrize(("framework", "provider"), CASES)
async def test_async_ingestion_is_exact_under_faults(
    faulty: Any, framework: str, provider: str
) -> None:
    docs = corpus(300)
    model = build(framework, provider, faulty)
    if framework == "langchain":
        got = await model.aembed_documents(docs)
    else:
        got = await model.aget_text_embedding_batch(docs)
    assert got == [embed_text(provider, WIRE_MODEL[provider], t) for t in docs]
    assert any(r.status != 200 for r in faulty.requests)
