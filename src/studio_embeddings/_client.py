"""The core front: :class:`EmbeddingsClient`, what every shell and the CLI call.

A call: check the texts and apply the query instruction (:meth:`EmbeddingsClient.prepare`),
then the engine (``_engine.py``) plans the requests, fans them out (bounded, paced, retried)
and writes each checked answer into the call's rows: a ``list[list[float]]`` for the
frameworks, or one float32 matrix (:meth:`EmbeddingsClient.embed_array`) for bulk ingestion.
Sync calls run the same coroutine on the package's own event loop (``_loop.py``). Nothing here
knows which provider it talks to beyond the :class:`~studio_embeddings.providers.Provider`
data in its :class:`~studio_embeddings._settings.Settings`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studio_embeddings import _loop
from studio_embeddings._engine import Call, Engine, default_limiter
from studio_embeddings._pacing import Limiter
from studio_embeddings._settings import DEFAULT_TIMEOUT, Kind, Settings
from studio_embeddings._transport import Transport
from studio_embeddings._wire import ArrayRows, ListRows, Rows, check_texts

if TYPE_CHECKING:
    import numpy

__all__ = ["DEFAULT_TIMEOUT", "EmbedResult", "EmbeddingsClient", "Kind"]


@dataclass
class EmbedResult:
    """Vectors of one call, in input order, with what the provider reported."""

    vectors: list[list[float]]  # empty when the call filled ``array`` instead
    total_tokens: int = 0
    requests: int = 0
    retries: int = 0
    model: str = ""
    #: how many requests each service tier served, as the provider reported it (Nebius)
    service_tiers: dict[str, int] = field(default_factory=dict)
    #: the float32 matrix of :meth:`EmbeddingsClient.embed_array_with_result`, else None
    array: numpy.ndarray | None = None


def _numpy() -> Any:
    try:
        return importlib.import_module("numpy")
    except ImportError as e:
        msg = "embed_array needs numpy: pip install 'studio-embeddings[numpy]'"
        raise ImportError(msg) from e


class EmbeddingsClient:
    """The provider-neutral embedding engine behind every class of this package.

    Settings resolve in one order: the argument, then the provider's environment variable
    (``NEBIUS_API_KEY``, ``YC_FOLDER_ID``, ...), then the provider's default; see
    :meth:`Settings.resolve <studio_embeddings._settings.Settings.resolve>` for every keyword
    (``api_key``, ``iam_token``, ``base_url``, ``project``, ``model``, ``query_model``,
    ``model_version``, ``dimensions``, ``encoding_format``, ``batch_size``,
    ``max_concurrency``, ``timeout``, ``max_retries``, ``deadline``, ``requests_per_second``,
    ``requests_per_minute``, ``tokens_per_minute``, ``service_tier``, ``query_instruction``,
    ``user``, ``data_logging``, ``default_headers``, ``show_progress_bar``, ``retry_policy``,
    ``allow_insecure_http``, ``quota_store``). ``OPENAI_*`` variables are never read. The
    resolved settings read as attributes too (``client.batch_size``, ``client.base_url``).

    Args:
        provider: ``"nebius"``, ``"yandex"`` or a :class:`~studio_embeddings.providers.Provider`.
        http_client / http_async_client: httpx (openai 2.x) or httpx2 (openai 3.x) clients of
            your own; with either, sync calls send through the sync one from worker threads.
        limiter: the quota to pace to; by default an in-process pacer of the settings' rates,
            or the Redis one when ``quota_store`` is set.
        **settings: the settings named above.

    Example:
        >>> from studio_embeddings.emulator import Emulator
        >>> with Emulator() as emu, EmbeddingsClient(
        ...     "nebius", api_key="k", base_url=emu.base_url("nebius")
        ... ) as client:
        ...     len(client.embed(["hello", "world"], kind="document"))
        2
    """

    def __init__(
        self,
        provider: str | Any = "nebius",
        *,
        http_client: Any = None,
        http_async_client: Any = None,
        limiter: Limiter | None = None,
        **settings: Any,
    ) -> None:
        self.settings = Settings.resolve(provider, **settings)
        self.http_client = http_client
        self.http_async_client = http_async_client
        self._limiter = limiter
        self._init_runtime()

    def _init_runtime(self) -> None:
        s = self.settings
        self.transport = Transport(s, self.http_client, self.http_async_client)
        self.limiter: Limiter = self._limiter or default_limiter(s)
        self.engine = Engine(s, self.transport, self.limiter)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or "settings" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.settings, name)

    def __getstate__(self) -> dict[str, Any]:
        # Live connection pools cannot cross a pickle; the copy builds its own.
        return {"settings": self.settings, "_limiter": self._limiter}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, http_client=None, http_async_client=None)
        self._init_runtime()

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"EmbeddingsClient(provider={s.provider.name!r}, base_url={s.base_url!r}, "
            f"model={s.model!r}, project={s.project!r})"
        )

    # ---------------------------------------------------------------- public

    def model_for(self, kind: Kind) -> str:
        """The wire ``model`` value for documents or queries."""
        return self.settings.wire_model(kind)

    def prepare(self, texts: Iterable[str], kind: Kind) -> list[str]:
        """Check ``texts`` and apply the query instruction; nothing is altered otherwise."""
        if kind not in ("document", "query"):
            msg = f"kind must be 'document' or 'query', got {kind!r}."
            raise ValueError(msg)
        out = check_texts(texts)
        s = self.settings
        if kind == "query" and s.query_instruction != "":
            template = s.provider.query_template(s.query_model)
            if template is not None:
                task = s.query_instruction or s.provider.default_query_task
                out = [template.format(task=task, query=t) for t in out]
        return out

    def request_tokens(self, texts: Iterable[str]) -> list[int]:
        """The estimated input tokens of each request a call with ``texts`` would send."""
        return [batch.tokens for batch in self.engine.plan(list(texts))]

    def embed_with_result(
        self,
        texts: Iterable[str],
        kind: Kind = "document",
        *,
        show_progress_bar: bool | None = None,
    ) -> EmbedResult:
        """Embed ``texts`` on the ``kind`` side; vectors in input order, with usage counts."""
        prepared = self.prepare(texts, kind)
        rows = ListRows(len(prepared))
        return self._result(self._run_sync(prepared, kind, rows, show_progress_bar), rows)

    async def aembed_with_result(
        self,
        texts: Iterable[str],
        kind: Kind = "document",
        *,
        show_progress_bar: bool | None = None,
    ) -> EmbedResult:
        """Async twin of :meth:`embed_with_result`: bounded concurrency, never blocks the loop."""
        prepared = self.prepare(texts, kind)
        rows = ListRows(len(prepared))
        return self._result(await self.engine.run(prepared, kind, rows, show_progress_bar), rows)

    def embed(self, texts: Iterable[str], kind: Kind = "document") -> list[list[float]]:
        """Embed ``texts`` on the ``kind`` side; one vector per text, in input order."""
        return self.embed_with_result(texts, kind).vectors

    async def aembed(self, texts: Iterable[str], kind: Kind = "document") -> list[list[float]]:
        """Async twin of :meth:`embed`."""
        return (await self.aembed_with_result(texts, kind)).vectors

    def embed_array(self, texts: Iterable[str], *, kind: Kind = "document") -> numpy.ndarray:
        """Embed ``texts`` into one C-contiguous float32 matrix of shape ``(len(texts), dims)``.

        Rows in input order; the same batching, concurrency, pacing, retries and checks as
        :meth:`embed`, without building a Python float: base64 answers are decoded straight
        into their rows. The values are the float32 values the provider sent. Needs numpy.
        """
        return self._matrix(self.embed_array_with_result(texts, kind=kind))

    async def aembed_array(self, texts: Iterable[str], *, kind: Kind = "document") -> numpy.ndarray:
        """Async twin of :meth:`embed_array`."""
        return self._matrix(await self.aembed_array_with_result(texts, kind=kind))

    def embed_array_with_result(
        self,
        texts: Iterable[str],
        *,
        kind: Kind = "document",
        show_progress_bar: bool | None = None,
    ) -> EmbedResult:
        """:meth:`embed_array` with the call's counts; the matrix is ``result.array``."""
        prepared, rows = self._array_call(texts, kind)
        return self._result(self._run_sync(prepared, kind, rows, show_progress_bar), rows)

    async def aembed_array_with_result(
        self,
        texts: Iterable[str],
        *,
        kind: Kind = "document",
        show_progress_bar: bool | None = None,
    ) -> EmbedResult:
        """Async twin of :meth:`embed_array_with_result`."""
        prepared, rows = self._array_call(texts, kind)
        return self._result(await self.engine.run(prepared, kind, rows, show_progress_bar), rows)

    def close(self) -> None:
        """Close the connections of sync calls (those of async calls close with their loop),
        and the shared quota store's, if this client opened one."""
        self.transport.close()
        if self._limiter is None and hasattr(self.limiter, "close"):
            self.limiter.close()

    # Older names, kept for code that used them.

    @property
    def pacer(self) -> Limiter:
        """The limiter (the in-process pacer, or the shared quota)."""
        return self.limiter

    @property
    def max_retries(self) -> int:
        return self.settings.retry_policy.max_retries

    def sync_client(self) -> Any:
        """The sync openai client (built on first use)."""
        return self.transport.sync_client()

    async def async_client(self) -> Any:
        """The running event loop's async openai client."""
        return await self.transport.async_client()

    async def aclose(self) -> None:
        """Close the running loop's connections."""
        await self.transport.aclose()

    def __enter__(self) -> EmbeddingsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> EmbeddingsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --------------------------------------------------------------- helpers

    def _run_sync(self, texts: list[str], kind: Kind, rows: Rows, progress: bool | None) -> Call:
        threaded = self.transport.threaded
        if texts and not threaded and _loop.available() and not _loop.in_loop_thread():
            self.transport.entry(_loop.get_loop())  # built here, not on the shared loop
        return _loop.run(self.engine.run(texts, kind, rows, progress, threaded))

    def _array_call(self, texts: Iterable[str], kind: Kind) -> tuple[list[str], ArrayRows]:
        np = _numpy()  # first: without numpy, say which extra before checking the texts
        prepared = self.prepare(texts, kind)
        return prepared, ArrayRows(len(prepared), np)

    def _result(self, call: Call, rows: ListRows | ArrayRows) -> EmbedResult:
        result = EmbedResult(
            [], call.tokens, call.requests, call.retries, call.model, dict(call.tiers)
        )
        if isinstance(rows, ListRows):
            result.vectors = rows.vectors()
        else:
            result.array = rows.array(self.settings.expected_dims(call.kind))
        return result

    @staticmethod
    def _matrix(result: EmbedResult) -> numpy.ndarray:
        assert result.array is not None
        return result.array
