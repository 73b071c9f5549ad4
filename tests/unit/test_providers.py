"""Provider data that users meet on day one: hosts, model families, service tiers, listing."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding

from studio_embeddings import NEBIUS, YANDEX, ConfigurationError, EmbeddingsClient
from studio_embeddings.langchain import YandexEmbeddings
from studio_embeddings.llama_index import YandexEmbedding

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no tomllib
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
FOLDER = "b1gfolder"
V1 = ("text-search-doc", "text-search-query")
V2 = ("text-embeddings-v2-doc", "text-embeddings-v2-query")


# --------------------------------------------------------------- hosts


def test_yandex_default_host_is_the_ai_studio_one() -> None:
    assert YANDEX.base_url == "https://ai.api.cloud.yandex.net/v1"
    client = EmbeddingsClient("yandex", api_key="k", project=FOLDER)
    assert client.base_url == "https://ai.api.cloud.yandex.net/v1"
    assert YandexEmbeddings(api_key="k", folder_id=FOLDER).base_url == YANDEX.base_url  # type: ignore[arg-type]
    llama_index = YandexEmbedding(api_key="k", folder_id=FOLDER)  # type: ignore[arg-type]
    assert llama_index.base_url == YANDEX.base_url


def test_yandex_older_host_is_an_alternative(monkeypatch: pytest.MonkeyPatch) -> None:
    old = "https://llm.api.cloud.yandex.net/v1"
    assert EmbeddingsClient("yandex", api_key="k", project=FOLDER, base_url=old).base_url == old
    monkeypatch.setenv("YC_API_BASE", old)
    assert EmbeddingsClient("yandex", api_key="k", project=FOLDER).base_url == old


# --------------------------------------------------------------- model families


@pytest.mark.parametrize(
    ("wire", "name"),
    [
        ("emb://b1gabc/text-search-doc/latest", "text-search-doc"),
        ("emb://b1gabc/text-embeddings-v2-query/rc", "text-embeddings-v2-query"),
        ("text-embeddings-v2-doc", "text-embeddings-v2-doc"),
        ("gpt://b1gabc/text-embeddings/v1@tuned", "gpt://b1gabc/text-embeddings/v1@tuned"),
    ],
)
def test_model_name_from_wire(wire: str, name: str) -> None:
    assert YANDEX.model_name_from_wire(wire) == name


def test_model_families_are_data() -> None:
    assert {YANDEX.model_family(m) for m in V1} == {"text-search"}
    assert {YANDEX.model_family(m) for m in V2} == {"text-embeddings-v2"}
    assert all(YANDEX.model_dimensions[m] == 256 for m in V1 + V2)
    assert NEBIUS.model_family("Qwen/Qwen3-Embedding-8B") is None
    assert YANDEX.model_family("gpt://b1gabc/text-embeddings/v1@tuned") is None


@pytest.mark.parametrize("pair", [V1, V2, (V1[1], V1[0]), (V2[0], "gpt://b1g/text-embeddings/v@s")])
def test_pairs_of_one_family_or_unknown_are_accepted(pair: tuple[str, str]) -> None:
    YANDEX.check_model_pair(*pair)


@pytest.mark.parametrize(
    ("doc", "query"),
    [
        (V1[0], V2[1]),
        (V2[0], V1[1]),
        (f"emb://{FOLDER}/{V1[0]}/latest", f"emb://{FOLDER}/{V2[1]}/rc"),
    ],
)
def test_mixed_families_are_refused_everywhere(doc: str, query: str) -> None:
    # The core raises ConfigurationError; the pydantic shells wrap it in a ValidationError,
    # a ValueError too, as every other construction error of theirs.
    builders: list[tuple[type[ValueError], Any]] = [
        (ConfigurationError, lambda: YANDEX.check_model_pair(doc, query)),
        (
            ConfigurationError,
            lambda: EmbeddingsClient(
                "yandex", api_key="k", project=FOLDER, model=doc, query_model=query
            ),
        ),
        (
            ValueError,
            lambda: YandexEmbeddings(api_key="k", folder_id=FOLDER, doc_model=doc, query_model=query),
        ),
        (
            ValueError,
            lambda: YandexEmbedding(api_key="k", folder_id=FOLDER, doc_model=doc, query_model=query),
        ),
    ]
    for error, build in builders:
        with pytest.raises(error) as caught:
            build()
        message = str(caught.value)
        assert doc in message, message
        assert query in message, message
        assert "not comparable" in message


def test_v2_pair_builds_wire_models() -> None:
    client = EmbeddingsClient("yandex", api_key="k", project=FOLDER, model=V2[0], query_model=V2[1])
    assert client.model_for("document") == f"emb://{FOLDER}/{V2[0]}/latest"
    assert client.model_for("query") == f"emb://{FOLDER}/{V2[1]}/latest"


# --------------------------------------------------------------- service tiers


def test_nebius_request_and_response_tiers() -> None:
    assert NEBIUS.service_tiers == ("auto", "default", "flex", "no-limit")
    assert NEBIUS.response_service_tiers == ("over-limit",)
    assert "over-limit" not in NEBIUS.service_tiers
    assert EmbeddingsClient("nebius", api_key="k", service_tier="no-limit").service_tier == (
        "no-limit"
    )
    with pytest.raises(ConfigurationError, match="service_tier"):
        EmbeddingsClient("nebius", api_key="k", service_tier="over-limit")


def test_a_provider_cannot_ask_for_a_response_only_tier() -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match="response-only"):
        replace(NEBIUS, service_tiers=("auto", "over-limit"))


# --------------------------------------------------------------- LlamaHub listing


def test_llamahub_table_names_importable_classes() -> None:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "llamahub"
    ]
    assert isinstance(table["contains_example"], bool)
    module = importlib.import_module(table["import_path"])
    authors = table["class_authors"]
    assert set(authors) >= {"NebiusEmbedding", "YandexEmbedding"}
    for name, author in authors.items():
        assert isinstance(author, str)
        assert author
        assert name in module.__all__
        assert issubclass(getattr(module, name), BaseEmbedding)
