"""LangChain's standard embeddings integration suite, run for both classes on the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.embeddings import Embeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests

from studio_embeddings.emulator import Emulator
from studio_embeddings.langchain import NebiusEmbeddings, YandexEmbeddings

_EMU: list[Emulator] = []


@pytest.fixture(autouse=True)
def _bind_emulator(emulator: Emulator) -> Any:
    """The session emulator, reset per test (conftest), for the suites' params below."""
    _EMU[:] = [emulator]
    yield
    # Yandex keeps the emulator's 10 rps quota and the class's default pacing: never refused.
    assert all(r.status == 200 for r in emulator.requests)


class TestNebiusStandardIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[Embeddings]:
        return NebiusEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {
            "base_url": _EMU[0].base_url("nebius"),
            "api_key": "nb-standard-key",
            "project_id": "project-standard",
        }


class TestYandexStandardIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[Embeddings]:
        return YandexEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {
            "base_url": _EMU[0].base_url("yandex"),
            "api_key": "yc-standard-key",
            "folder_id": "b1gstandard",
        }
