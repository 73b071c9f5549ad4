"""Issue 12 through the four framework classes: bad settings, bad texts, close and ``with``.

Each runs against the emulator on loopback; what the shells do not hold yet (pydantic's own
field constraints raising ``ValidationError``, a dict passed to LlamaIndex's batch call) is
left to the shells' owner and not asserted here.
"""

from __future__ import annotations

from typing import Any

import pytest

from studio_embeddings import ConfigurationError
from studio_embeddings.langchain import NebiusEmbeddings, YandexEmbeddings
from studio_embeddings.llama_index import NebiusEmbedding, YandexEmbedding

SECRET = "sk-shell-secret-4242"
CLASSES = [NebiusEmbeddings, YandexEmbeddings, NebiusEmbedding, YandexEmbedding]


def build(cls: type, emulator: Any, **kwargs: Any) -> Any:
    provider = "nebius" if cls.__name__.startswith("Nebius") else "yandex"
    kwargs.setdefault("api_key", SECRET)
    kwargs.setdefault("base_url", emulator.base_url(provider))
    if provider == "yandex":
        kwargs.setdefault("folder_id", "b1gshells")
    return cls(**kwargs)


def embed_many(shell: Any, texts: Any) -> Any:
    if hasattr(shell, "embed_documents"):
        return shell.embed_documents(texts)
    return shell.get_text_embedding_batch(texts)


async def aembed_many(shell: Any, texts: Any) -> Any:
    if hasattr(shell, "aembed_documents"):
        return await shell.aembed_documents(texts)
    return await shell.aget_text_embedding_batch(texts)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ({"api_key": f"{SECRET}\nsecond-line"}, "api_key"),
        ({"api_key": "   "}, "api_key"),
        ({"base_url": "http://127.0.0.1:99999/v1"}, "base_url"),
        ({"base_url": "http://127.0.0.1:8000/v1\r\nX-Injected: 1"}, "base_url"),
        ({"base_url": f"http://user:{SECRET}@127.0.0.1:8000/v1"}, "base_url"),
        ({"default_headers": {"x-trace": "a\r\nb"}}, "default_headers"),
        ({"default_headers": {"x bad": "v"}}, "default_headers"),
    ],
)
def test_bad_settings_are_a_configuration_error_without_the_secret(
    emulator: Any, cls: type, setting: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        build(cls, emulator, **setting)
    assert SECRET not in str(info.value)
    assert len(emulator.requests) == 0


@pytest.mark.parametrize("cls", [NebiusEmbeddings, YandexEmbeddings])
@pytest.mark.parametrize("texts", [None, {"a": "b"}])
async def test_langchain_texts_that_are_not_a_list_are_a_type_error(
    emulator: Any, cls: type, texts: Any
) -> None:
    shell = build(cls, emulator)
    with pytest.raises(TypeError, match="texts"):
        embed_many(shell, texts)
    with pytest.raises(TypeError, match="texts"):
        await aembed_many(shell, texts)
    assert len(emulator.requests) == 0


@pytest.mark.parametrize("cls", [NebiusEmbedding, YandexEmbedding])
async def test_llama_index_none_texts_are_a_type_error(emulator: Any, cls: type) -> None:
    shell = build(cls, emulator)
    with pytest.raises(TypeError):
        embed_many(shell, None)
    with pytest.raises(TypeError):
        await aembed_many(shell, None)
    assert len(emulator.requests) == 0


@pytest.mark.parametrize("cls", CLASSES)
def test_a_lone_surrogate_is_refused_before_sending(emulator: Any, cls: type) -> None:
    batch = "chunk_size" if cls.__name__.endswith("Embeddings") else "embed_batch_size"
    shell = build(cls, emulator, **{batch: 1})
    with pytest.raises(ValueError, match=r"UTF-8"):
        embed_many(shell, ["fine", "also fine", "not \udc80 fine"])
    assert len(emulator.requests) == 0


@pytest.mark.parametrize("cls", CLASSES)
def test_close_and_the_sync_context_manager(emulator: Any, cls: type) -> None:
    with build(cls, emulator) as shell:
        assert isinstance(shell, cls)
        assert len(embed_many(shell, ["a", "b"])) == 2
    shell.close()  # closing twice is harmless
    assert len(embed_many(shell, ["c"])) == 1  # a closed shell reconnects when used again
    shell.close()


@pytest.mark.parametrize("cls", CLASSES)
async def test_aclose_and_the_async_context_manager(emulator: Any, cls: type) -> None:
    async with build(cls, emulator) as shell:
        assert isinstance(shell, cls)
        assert len(await aembed_many(shell, ["a", "b"])) == 2
    await shell.aclose()
    assert len(await aembed_many(shell, ["c"])) == 1
    await shell.aclose()
