"""Nebius AI Studio and Yandex AI Studio embeddings for LangChain and LlamaIndex.

The framework classes live in their own modules so that importing this package pulls in
neither framework::

    from studio_embeddings.langchain import NebiusEmbeddings, YandexEmbeddings
    from studio_embeddings.llama_index import NebiusEmbedding, YandexEmbedding

This module exports the provider-neutral core, the provider table, the retry policy and the
errors.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio_embeddings._client import EmbeddingsClient, EmbedResult, Kind
    from studio_embeddings._retry import RetryPolicy
    from studio_embeddings.errors import (
        AuthenticationError,
        BadRequestError,
        ConfigurationError,
        ConnectionFailedError,
        DeadlineExceededError,
        NotFoundError,
        PermissionDeniedError,
        ProviderError,
        QuotaExhaustedError,
        QuotaStoreError,
        RateLimitError,
        ResponseError,
        ServerError,
        StudioEmbeddingsError,
    )
    from studio_embeddings.providers import NEBIUS, PROVIDERS, YANDEX, Provider, get_provider

# Where each public name lives: imported on first use, so that ``import studio_embeddings``
# (and the command line's start, which a Ctrl-C may interrupt) stays quick.
_HOMES = {
    "EmbeddingsClient": "_client",
    "EmbedResult": "_client",
    "Kind": "_client",
    "RetryPolicy": "_retry",
    "NEBIUS": "providers",
    "PROVIDERS": "providers",
    "YANDEX": "providers",
    "Provider": "providers",
    "get_provider": "providers",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES or (name.endswith("Error") and name in __all__):
        module = importlib.import_module(f"studio_embeddings.{_HOMES.get(name, 'errors')}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    msg = f"module 'studio_embeddings' has no attribute {name!r}"
    raise AttributeError(msg)


__version__ = "0.1.0"

__all__ = [
    "NEBIUS",
    "PROVIDERS",
    "YANDEX",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConnectionFailedError",
    "DeadlineExceededError",
    "EmbedResult",
    "EmbeddingsClient",
    "Kind",
    "NotFoundError",
    "PermissionDeniedError",
    "Provider",
    "ProviderError",
    "QuotaExhaustedError",
    "QuotaStoreError",
    "RateLimitError",
    "ResponseError",
    "RetryPolicy",
    "ServerError",
    "StudioEmbeddingsError",
    "__version__",
    "get_provider",
]
