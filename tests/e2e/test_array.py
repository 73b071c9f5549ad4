"""The numpy array path: one float32 matrix, equal bit for bit to the list path cast to float32.

Through the emulator on loopback (it answers ``data`` shuffled), on both providers, sync and
async, the core and every shell, with faults; plus the service-tier counts of a call.
"""

from __future__ import annotations

import base64
import builtins
import json
import logging
import struct
from typing import Any

import numpy as np
import pytest

from studio_embeddings import EmbeddingsClient, ResponseError, RetryPolicy
from studio_embeddings._wire import ArrayRows, ListRows, parse_answer
from studio_embeddings.emulator import Faults, embed_text
from studio_embeddings.langchain import NebiusEmbeddings, YandexEmbeddings
from studio_embeddings.llama_index import NebiusEmbedding, YandexEmbedding

FAST = RetryPolicy(max_retries=8, initial_wait=0.001, max_wait=0.01)
QWEN = "Qwen/Qwen3-Embedding-8B"
FOLDER = "b1garrayfolder"
DOCS = [f"document {i} on topic {i % 5}" for i in range(37)]


def _core(emu: Any, provider: str, **kwargs: Any) -> EmbeddingsClient:
    if provider == "yandex":
        emu.configure(yandex_rps=None)  # fast: the pacing is tested elsewhere
        kwargs.setdefault("project", FOLDER)
        kwargs.setdefault("requests_per_second", 0)
    kwargs.setdefault("retry_policy", FAST)
    return EmbeddingsClient(provider, api_key="k", base_url=emu.base_url(provider), **kwargs)


def _shell(emu: Any, cls: type, **kwargs: Any) -> Any:
    provider = "yandex" if cls in (YandexEmbeddings, YandexEmbedding) else "nebius"
    if provider == "yandex":
        emu.configure(yandex_rps=None)
        kwargs.update(folder_id=FOLDER, requests_per_second=0)
    return cls(api_key="k", base_url=emu.base_url(provider), retry_policy=FAST, **kwargs)


def _expected(provider: str, texts: list[str], *, kind: str = "document") -> np.ndarray:
    model = (
        QWEN
        if provider == "nebius"
        else f"emb://{FOLDER}/text-search-{'query' if kind == 'query' else 'doc'}/latest"
    )
    return np.asarray([embed_text(provider, model, t) for t in texts], dtype=np.float32)


def _check(matrix: np.ndarray, lists: list[list[float]]) -> None:
    assert matrix.dtype == np.float32
    assert matrix.flags["C_CONTIGUOUS"]
    assert matrix.shape == (len(lists), len(lists[0]))
    # Bit for bit: the float32 values the provider sent, as the list path's floats cast.
    assert matrix.tobytes() == np.asarray(lists, dtype=np.float32).tobytes()


@pytest.mark.parametrize("provider", ["nebius", "yandex"])
def test_core_array_equals_list_path(emulator: Any, provider: str) -> None:
    client = _core(emulator, provider, batch_size=8)
    lists = client.embed(DOCS)
    matrix = client.embed_array(DOCS)
    _check(matrix, lists)
    assert matrix.tobytes() == _expected(provider, DOCS).tobytes()


@pytest.mark.parametrize("provider", ["nebius", "yandex"])
async def test_core_async_array_and_query_side(emulator: Any, provider: str) -> None:
    client = _core(emulator, provider, batch_size=8)
    matrix = await client.aembed_array(DOCS)
    _check(matrix, await client.aembed(DOCS))
    query = await client.aembed_array(["a question?"], kind="query")
    _check(query, await client.aembed(["a question?"], kind="query"))
    assert not np.array_equal(query[0], matrix[0])


def test_nebius_float_encoding_fills_the_matrix_too(emulator: Any) -> None:
    client = _core(emulator, "nebius", encoding_format="float", dimensions=64)
    _check(client.embed_array(DOCS), client.embed(DOCS))
    assert client.embed_array(DOCS).shape == (len(DOCS), 64)


@pytest.mark.parametrize(
    "cls", [NebiusEmbeddings, YandexEmbeddings, NebiusEmbedding, YandexEmbedding]
)
async def test_every_shell_has_the_array_path(emulator: Any, cls: type) -> None:
    shell = _shell(emulator, cls)
    docs = DOCS[:9]
    lists = (
        shell.embed_documents(docs)
        if hasattr(shell, "embed_documents")
        else shell.get_text_embedding_batch(docs)
    )
    _check(shell.embed_array(docs), lists)
    _check(await shell.aembed_array(docs), lists)


@pytest.mark.parametrize("provider", ["nebius", "yandex"])
def test_array_path_survives_faults_exactly(emulator: Any, provider: str) -> None:
    emulator.configure(faults=Faults(p503=0.2, p429=0.1, p_drop=0.05, seed=11), yandex_rps=None)
    client = _core(emulator, provider, batch_size=4, max_concurrency=4)
    matrix = client.embed_array(DOCS)
    assert matrix.tobytes() == _expected(provider, DOCS).tobytes()
    assert any(r.status != 200 for r in emulator.requests)  # the faults did fire


def test_empty_input_sends_nothing(emulator: Any) -> None:
    client = _core(emulator, "nebius")
    assert client.embed_array([]).shape == (0, 4096)
    assert _core(emulator, "nebius", dimensions=256).embed_array([]).shape == (0, 256)
    assert len(emulator.requests) == 0


@pytest.mark.parametrize(
    ("embedding", "message"),
    [
        ([1.0, float("nan")], "NaN or infinite"),
        (["1", 2.0], "non-number"),
        ([], "empty embedding"),
        (base64.b64encode(struct.pack("<2f", 1.0, float("inf"))).decode(), "NaN or infinite"),
        ("AAAA!", "not base64"),
        (7, "type int"),
    ],
)
def test_array_rows_refuse_what_the_list_path_refuses(embedding: Any, message: str) -> None:
    body = json.dumps({"data": [{"index": 0, "embedding": embedding}]}).encode()
    for rows in (ArrayRows(1, np), ListRows(1)):
        answer = parse_answer(body, 1, "P")  # each lifted base64 string feeds one vector
        with pytest.raises(ResponseError, match=message):
            rows.put(0, answer.embeddings[0], answer.lifted, "P")


def test_without_numpy_the_error_names_the_extra(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_numpy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "numpy" or name.startswith("numpy."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_numpy)
    monkeypatch.delitem(__import__("sys").modules, "numpy")
    client = _core(emulator, "nebius")
    assert client.embed(["still works"])  # the list path needs no numpy
    with pytest.raises(ImportError, match=r"studio-embeddings\[numpy\]"):
        client.embed_array(["x"])


# ------------------------------------------------------------ service tiers


def test_tier_counts_and_one_over_limit_warning(
    emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.configure(nebius_over_limit_after=2)
    client = _core(emulator, "nebius", batch_size=1, max_concurrency=1)
    with caplog.at_level(logging.WARNING, logger="studio_embeddings"):
        result = client.embed_with_result(DOCS[:5])
        again = client.embed_with_result(DOCS[:3])
    assert sum(result.service_tiers.values()) == 5
    assert result.service_tiers.get("over-limit", 0) >= 1
    assert again.service_tiers == {"over-limit": 3}
    warnings = [r for r in caplog.records if "over-limit" in r.getMessage()]
    assert len(warnings) == 1  # once per client
    assert result.vectors == [embed_text("nebius", QWEN, t) for t in DOCS[:5]]


def test_response_only_tier_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="service_tier"):
        EmbeddingsClient("nebius", api_key="k", service_tier="over-limit")
    assert (
        EmbeddingsClient("nebius", api_key="k", service_tier="no-limit").service_tier == "no-limit"
    )
