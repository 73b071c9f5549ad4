"""LlamaIndex embeddings for Nebius AI Studio and Yandex AI Studio.

:class:`NebiusEmbedding` and :class:`YandexEmbedding` are ``BaseEmbedding`` subclasses and thin
shells over :class:`~studio_embeddings._client.EmbeddingsClient`: their fields are mapped to the
core's settings once, at construction (so a bad setting raises ``ValueError`` right there), and
every call is handed to the core, which batches, paces, fans out, retries and decodes.

What differs from a stock LlamaIndex embedding:

| LlamaIndex default | here |
| --- | --- |
| ``get_text_embedding_batch`` calls the provider once per ``embed_batch_size`` slice, one after the other | the whole list goes to the core in one call; it sends ``embed_batch_size`` texts per request, up to ``max_concurrency`` requests at once, paced to the quota, in input order |
| ``aget_text_embedding_batch`` gathers every slice at once, unbounded | the same bounded, paced fan-out, on the event loop (no blocking sleep) |
| one ``EMBEDDING`` callback event per slice | one per call, with every chunk and vector, plus the provider's token count |
| ``embeddings_cache`` shares one collection for queries and documents | queries are cached in ``"query_embeddings"``: a query vector (another model or an instruction) never answers for a document |

Token usage: the ``EMBEDDING`` end payload carries, under ``EventPayload.ADDITIONAL_KWARGS``,
a dict ``{"total_tokens", "requests", "retries", "model"}`` as the provider reported it (the
emulator and Nebius report ``usage.total_tokens``; 0 where a provider reports nothing). The
payload also keeps LlamaIndex's own ``CHUNKS`` and ``EMBEDDINGS`` keys, so a stock
``TokenCountingHandler`` keeps working (it estimates tokens with its own tokenizer).

Settings resolve argument -> provider environment variable -> provider default; ``OPENAI_*``
variables are never read. Secrets (``api_key``, ``iam_token``) are excluded from ``to_dict()``,
``to_json()`` and ``repr``; the objects pickle and work after unpickling.

Example:
    >>> from studio_embeddings.emulator import Emulator
    >>> from studio_embeddings.llama_index import NebiusEmbedding
    >>> with Emulator() as emu:
    ...     embed = NebiusEmbedding(api_key="key", base_url=emu.base_url("nebius"))
    ...     vectors = embed.get_text_embedding_batch(["Paris", "Moscow"])
    ...     query = embed.get_query_embedding("Which city is the capital of France?")
    >>> len(vectors), len(query)
    (2, 4096)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    model_validator,
)
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from typing_extensions import Self

from studio_embeddings import _shell
from studio_embeddings._client import DEFAULT_TIMEOUT, EmbeddingsClient, EmbedResult, Kind
from studio_embeddings._retry import RetryPolicy
from studio_embeddings._wire import check_texts
from studio_embeddings.providers import NEBIUS, YANDEX, EncodingFormat, Provider

if TYPE_CHECKING:
    pass

__all__ = ["NebiusEmbedding", "YandexEmbedding"]

# get_dispatcher is re-exported by llama_index.core.instrumentation without __all__: mypy
# needs the ignore on its import.
dispatcher = get_dispatcher(__name__)

#: ``embeddings_cache`` collection of documents (LlamaIndex's own name) and of queries (ours).
_COLLECTIONS: dict[str, str] = {"document": "embeddings", "query": "query_embeddings"}


def _env_doc(provider: Provider, what: str, envs: tuple[str, ...]) -> str:
    names = " or ".join(envs)
    return f"{provider.display_name} {what}; falls back to the {names} environment variable."


class _StudioEmbedding(_shell.ShellMixin, BaseEmbedding):
    """What both classes share: fields mapped to one core client, batch paths handed to it."""

    _provider: ClassVar[Provider]

    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    base_url: str | None = Field(default=None)
    encoding_format: EncodingFormat | None = Field(
        default=None,
        description="Wire encoding, 'float' or 'base64' where the provider accepts it; "
        "None for the provider's default.",
    )
    timeout: float = Field(
        default=DEFAULT_TIMEOUT, gt=0, description="Seconds one HTTP request may take."
    )
    max_retries: int | None = Field(
        default=None,
        ge=0,
        description="Retries of a failed request (at most max_retries + 1 attempts); "
        "None for the retry policy's default.",
    )
    max_concurrency: int | None = Field(
        default=None,
        gt=0,
        description="Requests in flight at once, sync (threads) and async alike; None uses "
        "num_workers if set, else the provider's default.",
    )
    deadline: float | None = Field(
        default=None,
        gt=0,
        description="Seconds one call (all its requests and retries) may take; None: unbounded.",
    )
    requests_per_second: float | None = Field(
        default=None,
        ge=0,
        description="Client-side request pacing; 0 for none, None for the provider's quota.",
    )
    requests_per_minute: float | None = Field(
        default=None, ge=0, description="Client-side requests per minute; 0 or None for none."
    )
    tokens_per_minute: float | None = Field(
        default=None,
        ge=0,
        description="Client-side tokens per minute (estimated as characters / 4); 0 or None "
        "for none.",
    )
    default_headers: dict[str, str] | None = Field(
        default=None, description="Extra headers sent with every request (not Authorization)."
    )
    allow_insecure_http: bool = Field(
        default=False,
        description="Allow credentials over plain http:// to a non-loopback host.",
    )
    quota_store: SecretStr | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description="A quota shared by every process and machine using the same project / "
        "folder: a redis://, rediss:// or unix:// URL (the redis extra); falls back to "
        "STUDIO_EMBEDDINGS_QUOTA_STORE. None: pacing in this process only.",
    )
    retry_policy: RetryPolicy | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description="Advanced: a full RetryPolicy (waits, caps); max_retries still applies.",
    )

    _client: EmbeddingsClient | None = PrivateAttr(default=None)

    #: field -> core settings keyword; each provider class adds its own fields.
    _fields: ClassVar[dict[str, str]] = _shell.fields(
        "api_key",
        "base_url",
        "encoding_format",
        "max_concurrency",
        "timeout",
        "max_retries",
        "deadline",
        "requests_per_second",
        "requests_per_minute",
        "tokens_per_minute",
        "default_headers",
        "allow_insecure_http",
        "retry_policy",
        "quota_store",
        embed_batch_size="batch_size",
    )

    model_config = ConfigDict(
        # A misspelt setting (dimension=256) is an error, not silently ignored.
        extra="forbid",
        # Errors would otherwise echo every constructor argument, keys included.
        hide_input_in_errors=True,
        protected_namespaces=(),
        # Assigning a setting rebuilds the core client at once (a refused one changes nothing).
        validate_assignment=True,
    )

    def _overrides(self) -> dict[str, Any]:
        # num_workers is LlamaIndex's own name for parallel requests: a fallback.
        return {"max_concurrency": self.max_concurrency or self.num_workers}

    def to_payload(self) -> dict[str, Any]:
        """Non-secret description for callback and instrumentation events."""
        return {**super().to_payload(), "provider": self._provider.name}

    # ------------------------------------------------------------- LlamaIndex

    def _get_query_embedding(self, query: str) -> Embedding:
        return self.client.embed([query], "query")[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self.client.aembed([query], "query"))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self.client.embed([text], "document")[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self.client.aembed([text], "document"))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self.client.embed(texts, "document")

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self.client.aembed(texts, "document")

    def get_query_embedding(self, query: str) -> Embedding:
        """Embed one query with the query model (and, for Nebius, the query instruction)."""
        return self._embed([query], "query", False)[0]

    async def aget_query_embedding(self, query: str) -> Embedding:
        """Async twin of :meth:`get_query_embedding`."""
        return (await self._aembed([query], "query", False))[0]

    def get_text_embedding(self, text: str) -> Embedding:
        """Embed one document text with the document model."""
        return self._embed([text], "document", False)[0]

    async def aget_text_embedding(self, text: str) -> Embedding:
        """Async twin of :meth:`get_text_embedding`."""
        return (await self._aembed([text], "document", False))[0]

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Embed document texts in one core call: batched, bounded, paced, in input order."""
        return self._embed(check_texts(texts), "document", show_progress)

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Async twin of :meth:`get_text_embedding_batch`; never blocks the event loop."""
        return await self._aembed(check_texts(texts), "document", show_progress)

    # ------------------------------------------------------------ one call
    # Each public method is one core call, with LlamaIndex's events around it and its cache
    # in front of it; the sync and async drivers differ only in the awaits.

    @contextmanager
    def _events(self, texts: list[str]) -> Iterator[_shell.CacheFill]:
        model_dict = self.to_payload()
        dispatcher.event(EmbeddingStartEvent(model_dict=model_dict))
        outcome = _shell.CacheFill()
        with self.callback_manager.event(
            CBEventType.EMBEDDING, payload={EventPayload.SERIALIZED: model_dict}
        ) as event:
            yield outcome
            event.on_end(payload=_end_payload(texts, outcome.vectors, outcome.result))
        dispatcher.event(_end_event(texts, outcome.vectors))

    def _embed(self, texts: list[str], kind: Kind, show_progress: bool) -> list[Embedding]:
        if not texts:
            return []
        cache, collection = self.embeddings_cache, _COLLECTIONS[kind]
        with self._events(texts) as outcome:
            found = [cache.get(key=t, collection=collection) for t in texts] if cache else []
            todo = outcome.start(texts, found)
            if todo:
                if self.rate_limiter is not None:
                    for tokens in self.client.request_tokens(todo):
                        self.rate_limiter.acquire(tokens)
                result = self.client.embed_with_result(
                    todo, kind, show_progress_bar=show_progress or None
                )
                for text, vec in outcome.finish(result):
                    if cache is not None:
                        cache.put(key=text, val={"vector": vec}, collection=collection)
        return outcome.vectors

    async def _aembed(self, texts: list[str], kind: Kind, show_progress: bool) -> list[Embedding]:
        if not texts:
            return []
        cache, collection = self.embeddings_cache, _COLLECTIONS[kind]
        with self._events(texts) as outcome:
            found = [await cache.aget(key=t, collection=collection) for t in texts] if cache else []
            todo = outcome.start(texts, found)
            if todo:
                if self.rate_limiter is not None:
                    for tokens in self.client.request_tokens(todo):
                        await self.rate_limiter.async_acquire(tokens)
                result = await self.client.aembed_with_result(
                    todo, kind, show_progress_bar=show_progress or None
                )
                for text, vec in outcome.finish(result):
                    if cache is not None:
                        await cache.aput(key=text, val={"vector": vec}, collection=collection)
        return outcome.vectors


def _end_event(texts: list[str], vectors: list[Embedding]) -> EmbeddingEndEvent:
    # model_construct: validating would check and copy every float (0.2 s per 2,000 4096-dim
    # vectors, and a second copy of them in memory); these lists come from the core, checked.
    return EmbeddingEndEvent.model_construct(chunks=texts, embeddings=vectors)


def _end_payload(
    texts: list[str], vectors: list[Embedding], result: EmbedResult | None
) -> dict[str, Any]:
    usage = {
        "total_tokens": result.total_tokens if result else 0,
        "requests": result.requests if result else 0,
        "retries": result.retries if result else 0,
        "model": result.model if result else "",
    }
    return {
        EventPayload.CHUNKS: texts,
        EventPayload.EMBEDDINGS: vectors,
        EventPayload.ADDITIONAL_KWARGS: usage,
    }


class NebiusEmbedding(_StudioEmbedding):
    """Nebius AI Studio (Token Factory) embeddings for LlamaIndex.

    Setup:
        ``pip install "studio-embeddings[llama-index]"`` and set ``NEBIUS_API_KEY``
        (optionally ``NEBIUS_PROJECT_ID`` and ``NEBIUS_API_BASE``).

    Key init args:
        model_name: ``Qwen/Qwen3-Embedding-8B`` by default.
        api_key / base_url / project_id: see the fields; each falls back to its variable.
        dimensions: Matryoshka truncation (Qwen3: 32..4096).
        query_instruction: None for the model's retrieval instruction, ``""`` for none.
        embed_batch_size / max_concurrency: texts per request, requests at once.

    Queries get the model's instruction prefix; documents are sent as they are. Vectors come
    as ``base64`` by default (about 4x smaller on the wire) and decode to the same floats.

    Example:
        >>> from studio_embeddings.emulator import Emulator
        >>> with Emulator() as emu:
        ...     embed = NebiusEmbedding(api_key="key", base_url=emu.base_url("nebius"),
        ...                             dimensions=256)
        ...     docs = embed.get_text_embedding_batch(["The Eiffel Tower is in Paris."])
        ...     query = embed.get_query_embedding("Which tower stands in Paris?")
        >>> len(docs[0]), len(query)
        (256, 256)
    """

    _provider: ClassVar[Provider] = NEBIUS

    model_name: str = Field(
        default=NEBIUS.default_doc_model,
        description=f"Embedding model; known: {', '.join(NEBIUS.model_dimensions)}.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description=_env_doc(NEBIUS, "API key", NEBIUS.api_key_envs),
    )
    base_url: str | None = Field(
        default=None,
        description=_env_doc(NEBIUS, "base URL", (NEBIUS.base_url_env or "",))
        + f" Default {NEBIUS.base_url}.",
    )
    project_id: str | None = Field(
        default=None,
        description=_env_doc(
            NEBIUS,
            "project id, sent as the ai_project_id query parameter",
            (NEBIUS.project_env or "",),
        ),
    )
    embed_batch_size: int = Field(
        default=NEBIUS.default_batch_size,
        gt=0,
        description=f"Texts per request, capped at {NEBIUS.max_inputs_per_request}.",
    )
    dimensions: int | None = Field(
        default=None, gt=0, description="Output length (Matryoshka models only); None: native."
    )
    service_tier: str | None = Field(
        default=None,
        description=f"Nebius service tier, one of {list(NEBIUS.service_tiers)}; None: server default.",
    )
    query_instruction: str | None = Field(
        default=None,
        description="Task put into the model's query template; None for the model's recommended "
        "retrieval instruction, '' to send queries as they are. Documents are never prefixed.",
    )

    @classmethod
    def class_name(cls) -> str:
        """Serialization id."""
        return "NebiusEmbedding"

    _fields: ClassVar[dict[str, str]] = {
        **_StudioEmbedding._fields,
        **_shell.fields(
            "dimensions",
            "service_tier",
            "query_instruction",
            model_name="model",
            project_id="project",
        ),
    }


class YandexEmbedding(_StudioEmbedding):
    """Yandex AI Studio (Yandex Cloud) embeddings for LlamaIndex.

    Setup:
        ``pip install "studio-embeddings[llama-index]"`` and set ``YC_FOLDER_ID`` plus
        ``YC_API_KEY`` (a service-account API key) or ``YC_IAM_TOKEN``.

    Key init args:
        folder_id: the Yandex Cloud folder; it goes into the model URI and ``OpenAI-Project``.
        api_key or iam_token: an IAM token may be a callable returning a fresh token; it is
            called again when the service answers 401.
        doc_model / query_model / model_version: ``text-search-doc`` for documents,
            ``text-search-query`` for queries, ``latest``.
        requests_per_second: the folder's quota (10 by default).

    Yandex takes one text per request and ``float`` only: ``embed_batch_size`` is capped at 1
    and ``encoding_format="base64"`` raises ``ValueError``. Requests fan out concurrently,
    paced to ``requests_per_second``. ``model_name`` mirrors ``doc_model``.

    Example:
        >>> from studio_embeddings.emulator import Emulator
        >>> with Emulator() as emu:
        ...     embed = YandexEmbedding(api_key="key", folder_id="b1gexample",
        ...                             base_url=emu.base_url("yandex"))
        ...     docs = embed.get_text_embedding_batch(["The Eiffel Tower is in Paris."])
        ...     query = embed.get_query_embedding("Which tower stands in Paris?")
        >>> len(docs[0]), len(query), embed.model_name
        (256, 256, 'text-search-doc')
    """

    _provider: ClassVar[Provider] = YANDEX

    model_name: str = Field(
        default=YANDEX.default_doc_model,
        description="Mirrors doc_model (the model of documents); passing it sets doc_model.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description=_env_doc(
            YANDEX, "service-account API key (Api-Key scheme)", YANDEX.api_key_envs
        ),
    )
    iam_token: SecretStr | Callable[[], str] | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description=_env_doc(
            YANDEX,
            "IAM token (Bearer), used when no API key is set; a str or a zero-argument "
            "callable returning a fresh token, called again on a 401",
            (YANDEX.token_env or "",),
        ),
    )
    base_url: str | None = Field(
        default=None,
        description=_env_doc(YANDEX, "base URL", (YANDEX.base_url_env or "",))
        + f" Default {YANDEX.base_url}.",
    )
    folder_id: str | None = Field(
        default=None,
        description=_env_doc(
            YANDEX,
            "folder id (required), put into the emb:// model URI",
            (YANDEX.project_env or "",),
        ),
    )
    doc_model: str = Field(
        default=YANDEX.default_doc_model, description="Model of documents (texts)."
    )
    query_model: str = Field(
        default=YANDEX.default_query_model or YANDEX.default_doc_model,
        description="Model of queries.",
    )
    model_version: str = Field(
        default=YANDEX.default_model_version,
        description=f"Model version in the URI, one of {list(YANDEX.model_versions)}.",
    )
    embed_batch_size: int = Field(
        default=YANDEX.default_batch_size,
        gt=0,
        description=f"Texts per request, capped at {YANDEX.max_inputs_per_request} "
        "(Yandex takes one text per request).",
    )
    requests_per_second: float | None = Field(
        default=YANDEX.requests_per_second,
        ge=0,
        description="Client-side pacing to the folder's quota; 0 for none.",
    )
    data_logging: bool | None = Field(
        default=None,
        description=f"False sends {YANDEX.data_logging_header}: false (do not log requests); "
        "None sends nothing.",
    )

    @model_validator(mode="before")
    @classmethod
    def _model_name_is_doc_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("model_name") is not None:
            name, doc = data["model_name"], data.get("doc_model")
            if doc is not None and doc != name:
                msg = (
                    f"model_name={name!r} and doc_model={doc!r} disagree: model_name mirrors "
                    "doc_model for Yandex, pass only doc_model=."
                )
                raise ValueError(msg)
            data = {**data, "doc_model": name}
        return data

    @classmethod
    def class_name(cls) -> str:
        """Serialization id."""
        return "YandexEmbedding"

    _fields: ClassVar[dict[str, str]] = {
        **_StudioEmbedding._fields,
        **_shell.fields(
            "iam_token",
            "query_model",
            "model_version",
            "data_logging",
            folder_id="project",
            doc_model="model",
        ),
    }

    @model_validator(mode="after")
    def _model_name_mirrors_doc_model(self) -> Self:
        self.__dict__["model_name"] = self.doc_model
        return self
