"""LangChain embeddings for Nebius AI Studio and Yandex AI Studio.

Drop-in replacements for ``langchain_openai.OpenAIEmbeddings``::

    from studio_embeddings.langchain import NebiusEmbeddings, YandexEmbeddings

Both classes are thin pydantic shells over :class:`~studio_embeddings.EmbeddingsClient`: the
fields are read (argument, then environment variable, then the provider's default from
:mod:`studio_embeddings.providers`), handed to the core once at construction, and every call
becomes one core request (``kind="document"`` or ``kind="query"``). Batching, pacing, retries,
decoding and the order of results all live in the core. Constructing a class validates every
setting and opens no connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from langchain_core.embeddings import Embeddings
from langchain_core.load.serializable import Serializable
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr
from typing_extensions import Self

from studio_embeddings import _shell
from studio_embeddings._client import EmbeddingsClient
from studio_embeddings._retry import RetryPolicy
from studio_embeddings._settings import QUOTA_STORE_ENV
from studio_embeddings.providers import NEBIUS, YANDEX, EncodingFormat, Provider

if TYPE_CHECKING:
    pass

__all__ = ["NebiusEmbeddings", "YandexEmbeddings"]

_DEFAULT_RETRIES = RetryPolicy().max_retries

# Checked here too (the core checks again) so that errors name the LangChain field.
_Count = Annotated[int, Field(ge=1)]
_Seconds = Annotated[float, Field(gt=0)]
_Rate = Annotated[float, Field(ge=0)]


class _StudioEmbeddings(_shell.ShellMixin, Serializable, Embeddings):
    """What both provider classes share: the fields the core needs and the four calls.

    ``Serializable`` (a pydantic ``BaseModel``) rather than a bare ``BaseModel`` so that
    ``langchain_core.load.dumpd`` writes constructor kwargs with the keys replaced by
    ``lc_secrets`` markers, and ``load`` can revive the object from the environment.
    """

    _provider: ClassVar[Provider]

    # Declared here with neutral defaults; each provider class re-declares them with the
    # defaults of its Provider profile. Environment variables are read by the core's settings,
    # and the values they resolve to are shown on the fields.
    api_key: SecretStr | None = None
    """API key; never shown in ``repr``, ``str``, logs, errors or ``dumpd``."""
    base_url: str | None = None
    """Service root ending in ``/v1``."""
    chunk_size: _Count | None = None
    """Texts per request, capped at the provider's maximum inputs per request."""
    max_concurrency: _Count | None = None
    """Requests in flight at once (threads for sync calls, tasks for async ones)."""
    encoding_format: EncodingFormat | None = None
    """Wire encoding of the vectors: ``"float"`` or ``"base64"``; results are floats either way."""
    requests_per_second: _Rate | None = None
    """Client-side pacing of requests; 0 turns pacing off."""

    timeout: _Seconds | None = None
    """Seconds one HTTP request may take; None means 60 s."""
    max_retries: Annotated[int, Field(ge=0)] = _DEFAULT_RETRIES
    """Retries of a failed request: at most ``max_retries + 1`` attempts per request."""
    deadline: _Seconds | None = None
    """Seconds one call (all its requests, waits and retries) may take; None: unbounded."""
    requests_per_minute: _Rate | None = None
    """Client-side pacing: requests per minute; None or 0 for no limit."""
    tokens_per_minute: _Rate | None = None
    """Client-side pacing: estimated tokens per minute; None or 0 for no limit."""
    show_progress_bar: bool = False
    """Show a tqdm progress bar over the texts of a call (sync and async)."""
    default_headers: dict[str, str] | None = None
    """Extra headers on every request (``Authorization`` is refused: use ``api_key``)."""
    http_client: Any = None
    """Optional ``httpx.Client`` (openai 2.x) or ``httpx2.Client`` (openai 3.x) for sync calls.
    Not pickled: a copy builds its own."""
    http_async_client: Any = None
    """Optional async twin of ``http_client`` for async calls. Not pickled."""
    allow_insecure_http: bool = False
    """Allow sending credentials over plain ``http://`` to a host that is not loopback."""
    quota_store: SecretStr | None = None
    """A quota shared by every process and machine that uses the same project / folder: a
    ``redis://``, ``rediss://`` or ``unix://`` URL (the ``redis`` extra); read from
    ``STUDIO_EMBEDDINGS_QUOTA_STORE``. None: pacing in this process only. Masked like a key."""
    retry_policy: RetryPolicy | None = Field(default=None, exclude=True)
    """Advanced: a full :class:`~studio_embeddings.RetryPolicy` (backoff, caps, sleep hooks).
    Its ``max_retries`` applies unless ``max_retries`` is passed too. Not serialized."""

    _client: EmbeddingsClient | None = PrivateAttr(default=None)

    #: field -> core settings keyword; each provider class adds its own fields.
    _fields: ClassVar[dict[str, str]] = _shell.fields(
        "api_key",
        "base_url",
        "max_concurrency",
        "encoding_format",
        "requests_per_second",
        "requests_per_minute",
        "tokens_per_minute",
        "timeout",
        "max_retries",
        "retry_policy",
        "deadline",
        "show_progress_bar",
        "default_headers",
        "http_client",
        "http_async_client",
        "allow_insecure_http",
        "quota_store",
        chunk_size="batch_size",
    )

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        protected_namespaces=(),
        # Assigning a field rebuilds the core client, so the object never runs stale settings.
        validate_assignment=True,
        # Errors would otherwise echo every constructor argument, keys included.
        hide_input_in_errors=True,
    )

    def validate_environment(self) -> Self:
        """Check every setting and (re)build the core client; construction does it already."""
        self._apply()
        return self

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Whether ``langchain_core.load.dumpd`` writes constructor kwargs (secrets masked)."""
        return True

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents; one vector per text, in input order. ``[]`` sends nothing."""
        return self.client.embed(texts, kind="document")

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query (with the query model / instruction where there is one)."""
        return self.client.embed([text], kind="query")[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async twin of :meth:`embed_documents`: concurrent requests, never blocks the loop."""
        return await self.client.aembed(texts, kind="document")

    async def aembed_query(self, text: str) -> list[float]:
        """Async twin of :meth:`embed_query`."""
        return (await self.client.aembed([text], kind="query"))[0]


class NebiusEmbeddings(_StudioEmbeddings):
    """Nebius AI Studio (Token Factory) embedding model integration.

    Setup:
        Install ``studio-embeddings`` with the LangChain extra and set the environment
        variable ``NEBIUS_API_KEY``.

        .. code-block:: bash

            pip install -U "studio-embeddings[langchain]"
            export NEBIUS_API_KEY="your-api-key"

    Key init args — embedding params:
        model: str = "Qwen/Qwen3-Embedding-8B"
            Name of the Nebius model to use.
        dimensions: Optional[int] = None
            Length of the returned vectors; Matryoshka models only (Qwen3: 32 to 4096).
        query_instruction: Optional[str] = None
            Task put into the model's query template (Qwen3, e5-mistral, bge-en-icl).
            None uses the model's recommended retrieval task, ``""`` sends queries as
            they are. Documents are never prefixed.
        service_tier: Optional[str] = None
            ``"auto"``, ``"default"`` or ``"flex"``.

    Key init args — client params:
        api_key: Optional[SecretStr] = None
            Nebius API key. Read from ``NEBIUS_API_KEY`` if not passed.
        base_url: str = "https://api.tokenfactory.nebius.com/v1/"
            Read from ``NEBIUS_API_BASE`` if not passed.
        project_id: Optional[str] = None
            Sent as the ``ai_project_id`` query parameter. Read from ``NEBIUS_PROJECT_ID``.
        chunk_size: int = 64
            Texts per request.
        max_retries: int = 5
            Retries of a failed request (429, 5xx, connection errors).
        timeout: Optional[float] = None
            Seconds one request may take (60 if None).

    See full list of supported init args and their descriptions in the params section.

    Instantiate:
        .. code-block:: python

            from studio_embeddings.langchain import NebiusEmbeddings

            embed = NebiusEmbeddings(
                model="Qwen/Qwen3-Embedding-8B",
                # Qwen3 can return shorter vectors:
                # dimensions=1024,
            )

    Embed single text:
        .. code-block:: python

            input_text = "The meaning of life is 42"
            vector = embed.embed_query(input_text)
            print(len(vector))

        .. code-block:: none

            4096

    Embed multiple texts:
        .. code-block:: python

            input_texts = ["Document 1...", "Document 2..."]
            vectors = embed.embed_documents(input_texts)
            print(len(vectors), len(vectors[0]))

        .. code-block:: none

            2 4096

    Async:
        .. code-block:: python

            vector = await embed.aembed_query(input_text)
            print(len(vector))

            # multiple:
            vectors = await embed.aembed_documents(input_texts)
            print(len(vectors))

        .. code-block:: none

            4096
            2
    """

    _provider: ClassVar[Provider] = NEBIUS

    model: str = NEBIUS.default_doc_model
    """Name of the Nebius embedding model (documents and queries)."""
    api_key: SecretStr | None = None
    """Nebius API key; read from ``NEBIUS_API_KEY`` if not passed."""
    base_url: str | None = None
    """Service root; read from ``NEBIUS_API_BASE``, else the Token Factory URL."""
    project_id: str | None = None
    """Nebius project id, sent as the ``ai_project_id`` query parameter; read from
    ``NEBIUS_PROJECT_ID`` if not passed. Optional: a key already belongs to a project."""
    dimensions: _Count | None = None
    """Length of the returned vectors (Matryoshka models only; Qwen3: 32 to 4096)."""
    service_tier: Literal["auto", "default", "flex", "no-limit"] | None = None
    """Nebius service tier sent in the body; None leaves the choice to the service."""
    query_instruction: str | None = None
    """Task put into the model's query template; None: the model's recommended retrieval
    task, ``""``: queries are sent as they are. Documents are never prefixed."""
    chunk_size: _Count | None = NEBIUS.default_batch_size
    """Texts per request (at most 2048)."""
    max_concurrency: _Count | None = NEBIUS.default_max_concurrency
    """Requests in flight at once."""
    encoding_format: EncodingFormat | None = NEBIUS.default_encoding
    """``"base64"`` (compact, the default) or ``"float"``; vectors come back as floats."""
    requests_per_second: _Rate | None = NEBIUS.requests_per_second
    """Client-side pacing of requests; None or 0: unpaced."""

    @property
    def lc_secrets(self) -> dict[str, str]:
        """Constructor arguments that ``dumpd`` replaces by a secret id."""
        return {"api_key": NEBIUS.api_key_envs[0], "quota_store": QUOTA_STORE_ENV}

    _fields: ClassVar[dict[str, str]] = {
        **_StudioEmbeddings._fields,
        **_shell.fields(
            "model", "dimensions", "service_tier", "query_instruction", project_id="project"
        ),
    }


class YandexEmbeddings(_StudioEmbeddings):
    """Yandex AI Studio (Yandex Cloud) embedding model integration.

    Documents are embedded with ``text-search-doc`` and queries with ``text-search-query``,
    one text per request, paced to the folder's default quota of 10 requests per second.

    Setup:
        Install ``studio-embeddings`` with the LangChain extra and set ``YC_FOLDER_ID`` and
        either ``YC_API_KEY`` (a service-account API key) or ``YC_IAM_TOKEN``.

        .. code-block:: bash

            pip install -U "studio-embeddings[langchain]"
            export YC_API_KEY="your-api-key"
            export YC_FOLDER_ID="your-folder-id"

    Key init args — embedding params:
        doc_model: str = "text-search-doc"
            Model for documents (also accepted as ``model=``).
        query_model: str = "text-search-query"
            Model for queries.
        model_version: str = "latest"
            ``"latest"``, ``"rc"`` or ``"deprecated"``.

    Key init args — client params:
        folder_id: Optional[str] = None
            Yandex Cloud folder id. Read from ``YC_FOLDER_ID`` if not passed. Required.
        api_key: Optional[SecretStr] = None
            API key, sent as ``Api-Key``. Read from ``YC_API_KEY`` if not passed.
        iam_token: Optional[SecretStr | Callable[[], str]] = None
            IAM token (sent as ``Bearer``), or a function returning a fresh one (called
            again after a 401). Read from ``YC_IAM_TOKEN`` if not passed.
        base_url: str = "https://ai.api.cloud.yandex.net/v1"
            Read from ``YC_API_BASE`` if not passed (``https://llm.api.cloud.yandex.net/v1`` also works).
        requests_per_second: float = 10
            Client-side pacing to the folder's quota.
        data_logging: Optional[bool] = None
            False asks Yandex not to log the request data.

    See full list of supported init args and their descriptions in the params section.

    Instantiate:
        .. code-block:: python

            from studio_embeddings.langchain import YandexEmbeddings

            embed = YandexEmbeddings(
                # folder_id="b1g...",  # or YC_FOLDER_ID
                # data_logging=False,
            )

    Embed single text:
        .. code-block:: python

            input_text = "The meaning of life is 42"
            vector = embed.embed_query(input_text)
            print(len(vector))

        .. code-block:: none

            256

    Embed multiple texts:
        .. code-block:: python

            input_texts = ["Document 1...", "Document 2..."]
            vectors = embed.embed_documents(input_texts)
            print(len(vectors), len(vectors[0]))

        .. code-block:: none

            2 256

    Async:
        .. code-block:: python

            vector = await embed.aembed_query(input_text)
            print(len(vector))

            # multiple:
            vectors = await embed.aembed_documents(input_texts)
            print(len(vectors))

        .. code-block:: none

            256
            2
    """

    _provider: ClassVar[Provider] = YANDEX

    doc_model: str = Field(default=YANDEX.default_doc_model, alias="model")
    """Model for documents (``model=`` is accepted too); a full ``emb://`` or ``gpt://`` URI
    is sent as given."""
    query_model: str = YANDEX.default_query_model or YANDEX.default_doc_model
    """Model for queries."""
    model_version: str = YANDEX.default_model_version
    """Version in the model URI: ``"latest"``, ``"rc"`` or ``"deprecated"``."""
    folder_id: str | None = None
    """Yandex Cloud folder id (put into the model URI and the ``OpenAI-Project`` header);
    read from ``YC_FOLDER_ID`` if not passed. Required."""
    api_key: SecretStr | None = None
    """Service-account API key, sent as ``Authorization: Api-Key``; read from ``YC_API_KEY``."""
    iam_token: SecretStr | Callable[[], str] | None = None
    """IAM token sent as ``Authorization: Bearer`` when no API key is set, or a zero-argument
    function returning a fresh one (called again after a 401). Read from ``YC_IAM_TOKEN``."""
    base_url: str | None = None
    """Service root; read from ``YC_API_BASE``, else ``https://ai.api.cloud.yandex.net/v1``."""
    data_logging: bool | None = None
    """False sends ``x-data-logging-enabled: false`` (do not log request data)."""
    chunk_size: _Count | None = YANDEX.default_batch_size
    """Texts per request; Yandex takes one, so larger values are capped at 1."""
    max_concurrency: _Count | None = YANDEX.default_max_concurrency
    """Requests in flight at once (the pacing still holds the rate)."""
    encoding_format: EncodingFormat | None = YANDEX.default_encoding
    """Only ``"float"``: Yandex rejects base64, so asking for it fails at construction."""
    requests_per_second: _Rate | None = YANDEX.requests_per_second
    """Client-side pacing to the folder's quota (10 requests/s by default); 0: unpaced."""

    @property
    def lc_secrets(self) -> dict[str, str]:
        """Constructor arguments that ``dumpd`` replaces by a secret id."""
        return {
            "api_key": YANDEX.api_key_envs[0],
            "iam_token": YANDEX.token_env or "iam_token",
            "quota_store": QUOTA_STORE_ENV,
        }

    _fields: ClassVar[dict[str, str]] = {
        **_StudioEmbeddings._fields,
        **_shell.fields(
            "query_model",
            "model_version",
            "iam_token",
            "data_logging",
            doc_model="model",
            folder_id="project",
        ),
    }
