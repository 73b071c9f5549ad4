"""Nebius AI Studio and Yandex AI Studio embeddings for LangChain and LlamaIndex.

The framework classes live in their own modules so that importing this package pulls in
neither framework::

    from studio_embeddings.langchain import NebiusEmbeddings, YandexEmbeddings
    from studio_embeddings.llama_index import NebiusEmbedding, YandexEmbedding

This module exports the provider-neutral core, the provider table, the retry policy and the
errors.
"""

from __future__ import annotations

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
