"""The core front: prepare the texts, plan the requests, ONE bounded async fan-out, results.

Both framework shells (``langchain.py``, ``llama_index.py``) and the CLI call
:class:`EmbeddingsClient`; nothing here knows which provider it talks to beyond the
:class:`~studio_embeddings.providers.Provider` data inside its
:class:`~studio_embeddings._settings.Settings`.

One call flows as: check the texts and apply the query instruction (``prepare``) -> split into
requests of at most ``batch_size`` texts (``_wire.plan``) -> one task per request, at most
``max_concurrency`` in flight per client (across all its calls) -> each asks the limiter,
sends, and is retried by the policy (``_retry``), its failures classified (``_classify``) ->
each answer is checked and written into the call's rows (``_wire``). Sync calls run the same
coroutine on the package's own loop (``_loop``); with a user's own sync ``http_client``, the
requests go through it from worker threads that the same fan-out awaits. When a request fails
for good, the other requests of the call are cancelled and the call raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import openai
from tenacity import RetryCallState

from studio_embeddings import _loop
from studio_embeddings._classify import Context, classify
from studio_embeddings._pacing import Limiter, LimiterDeadline, Pacer
from studio_embeddings._retry import DeadlineStop, TransientError
from studio_embeddings._settings import DEFAULT_TIMEOUT, Kind, Settings
from studio_embeddings._transport import Transport
from studio_embeddings._wire import (
    Answer,
    Batch,
    ListRows,
    Rows,
    parse_answer,
    plan,
    request_kwargs,
)
from studio_embeddings.errors import (
    DeadlineExceededError,
    RateLimitError,
    ResponseError,
    StudioEmbeddingsError,
)

__all__ = ["DEFAULT_TIMEOUT", "EmbedResult", "EmbeddingsClient", "Kind"]

logger = logging.getLogger("studio_embeddings")


@dataclass
class EmbedResult:
    """Vectors of one call, in input order, with what the provider reported."""

    vectors: list[list[float]]
    total_tokens: int = 0
    requests: int = 0
    retries: int = 0
    model: str = ""
    #: how many requests each service tier served, as the provider reported it (Nebius)
    service_tiers: dict[str, int] = field(default_factory=dict)


@dataclass
class _Call:
    """What the requests of one call share (touched only on the loop running the call)."""

    model: str
    deadline_at: float | None
    rows: Rows
    progress: Any = None
    tokens: int = 0
    requests: int = 0
    retries: int = 0
    tiers: Counter[str] = field(default_factory=Counter)


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
    ``allow_insecure_http``). ``OPENAI_*`` variables are never read.

    Args:
        provider: ``"nebius"``, ``"yandex"`` or a :class:`~studio_embeddings.providers.Provider`.
        http_client / http_async_client: httpx (openai 2.x) or httpx2 (openai 3.x) clients of
            your own; with either, sync calls send through the sync one from worker threads.
        limiter: the quota to pace to; by default an in-process pacer of the settings' rates.
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
        self.limiter: Limiter = self._limiter or Pacer(
            **s.pacing(),
            remaining_headers=s.provider.quota_remaining_headers,
            headroom=s.provider.pacing_headroom,
            name=s.provider.display_name,
        )
        self._gate = _loop.Gate(s.max_concurrency)

    def __getattr__(self, name: str) -> Any:
        # The resolved settings read as attributes: client.batch_size, client.provider, ...
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
        if texts is None or isinstance(texts, (str, bytes, Mapping)):
            what = "a single string: wrap it in a list" if isinstance(texts, str) else "a list"
            msg = f"texts must be a list of strings, not {type(texts).__name__} ({what})."
            raise TypeError(msg)
        out = list(texts)
        for i, text in enumerate(out):
            if not isinstance(text, str):
                msg = f"texts[{i}] is {type(text).__name__}, not str: every text must be a string."
                raise TypeError(msg)
            if not text.strip():
                msg = f"texts[{i}] is empty or whitespace only: providers refuse or mis-embed it."
                raise ValueError(msg)
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as e:
                    msg = (
                        f"texts[{i}] cannot be encoded as UTF-8: {e.reason} at character "
                        f"{e.start} (a lone surrogate such as '\\ud800'?)."
                    )
                    raise ValueError(msg) from None
        s = self.settings
        if kind == "query" and s.query_instruction != "":
            template = s.provider.query_template(s.query_model)
            if template is not None:
                task = s.query_instruction or s.provider.default_query_task
                out = [template.format(task=task, query=t) for t in out]
        return out

    def request_tokens(self, texts: Iterable[str]) -> list[int]:
        """The estimated input tokens of each request a call with ``texts`` would send."""
        return [batch.tokens for batch in plan(list(texts), self.settings.batch_size)]

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
        threaded = self.transport.threaded
        if prepared and not threaded and _loop.available() and not _loop.in_loop_thread():
            self.transport.entry(_loop.get_loop())  # built here, not on the shared loop
        call = _loop.run(self._run(prepared, kind, rows, show_progress_bar, threaded))
        return self._result(call, rows)

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
        return self._result(await self._run(prepared, kind, rows, show_progress_bar, False), rows)

    def embed(self, texts: Iterable[str], kind: Kind = "document") -> list[list[float]]:
        """Embed ``texts`` on the ``kind`` side; one vector per text, in input order."""
        return self.embed_with_result(texts, kind).vectors

    async def aembed(self, texts: Iterable[str], kind: Kind = "document") -> list[list[float]]:
        """Async twin of :meth:`embed`."""
        return (await self.aembed_with_result(texts, kind)).vectors

    def close(self) -> None:
        """Close the connections of sync calls (those of async calls close with their loop)."""
        self.transport.close()

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

    # ---------------------------------------------------------------- engine

    def _result(self, call: _Call, rows: ListRows) -> EmbedResult:
        return EmbedResult(
            rows.vectors(), call.tokens, call.requests, call.retries, call.model, dict(call.tiers)
        )

    async def _run(
        self, texts: list[str], kind: Kind, rows: Rows, progress: bool | None, threaded: bool
    ) -> _Call:
        s = self.settings
        call = _Call(
            model=s.wire_model(kind),
            deadline_at=time.monotonic() + s.deadline if s.deadline else None,
            rows=rows,
        )
        if not texts:
            return call
        if s.show_progress_bar if progress is None else progress:
            from tqdm.auto import tqdm

            call.progress = tqdm(
                total=len(texts), desc=f"Embedding ({s.provider.name})", unit="text"
            )
        tasks = [
            asyncio.ensure_future(self._request(call, batch, threaded))
            for batch in plan(texts, s.batch_size)
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # A request failed for good, or the caller was cancelled: the rest stop now.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            if call.progress is not None:
                call.progress.close()
        return call

    async def _request(self, call: _Call, batch: Batch, threaded: bool) -> None:
        s = self.settings
        attempts = 0

        async def attempt() -> tuple[bytes, Mapping[str, str]]:
            nonlocal attempts
            attempts += 1
            async with self._gate:
                try:
                    await self.limiter.acquire(batch.tokens, deadline_at=call.deadline_at)
                except LimiterDeadline as e:
                    msg_0 = f"waiting {e.wait:.1f} s for the quota"
                    raise self._deadline(msg_0) from None
                return await self._send(call, batch, threaded)

        retrying = s.retry_policy.async_retrying(
            deadline=call.deadline_at, before_sleep=self._before_sleep
        )
        try:
            sent: tuple[bytes, Mapping[str, str]] = await retrying(attempt)
            body, headers = sent
            answer: Answer = parse_answer(body, len(batch.texts), s.provider.display_name)
            for offset, embedding in enumerate(answer.embeddings):
                call.rows.put(
                    batch.start + offset, embedding, answer.lifted, s.provider.display_name
                )
            if s.dimensions is not None and call.rows.dims != s.dimensions:
                msg = (
                    f"{s.provider.display_name} returned {call.rows.dims}-dimensional vectors; "
                    f"dimensions={s.dimensions} was asked."
                )
                raise ResponseError(msg)
        except TransientError as e:
            if isinstance(retrying.stop, DeadlineStop) and retrying.stop.fired:
                msg_0 = f"retrying after {attempts} attempts; last error: {e.cause}"
                raise self._deadline(msg_0, attempts) from e.__cause__
            raise self._gave_up(e.cause, attempts) from e.__cause__
        except StudioEmbeddingsError as e:
            raise self._gave_up(e, attempts) from e.__cause__
        self.limiter.on_success(headers)
        call.tokens += answer.tokens
        call.requests += 1
        call.retries += attempts - 1
        if answer.service_tier is not None:
            call.tiers[answer.service_tier] += 1
        if call.progress is not None:
            call.progress.update(len(batch.texts))

    async def _send(
        self, call: _Call, batch: Batch, threaded: bool
    ) -> tuple[bytes, Mapping[str, str]]:
        s = self.settings
        for resend in (False, True):
            authorization = await self._authorization(call)
            timeout = self._remaining(call)
            kwargs = request_kwargs(s, batch, call.model, timeout, authorization)
            try:
                # The whole request, body included, within the timeout (httpx's own timeout
                # is per read, so a server that trickles its body would outlast it).
                return await asyncio.wait_for(self._post(kwargs, threaded), timeout)
            except openai.OpenAIError as e:
                if not resend and self._wants_refresh(e):
                    # Not an attempt of its own: the same attempt with a fresh token.
                    await _loop.in_thread(s.credential.refresh, authorization)
                    continue
                raise classify(e, self._context(call.model, timeout)) from e
            except asyncio.TimeoutError:
                timed_out = openai.APITimeoutError(request=None)  # type: ignore[arg-type]
                raise classify(timed_out, self._context(call.model, timeout)) from None
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def _post(self, kwargs: dict[str, Any], threaded: bool) -> tuple[bytes, Mapping[str, str]]:
        if threaded:
            create = self.transport.sync_client().embeddings.with_raw_response.create

            def send() -> tuple[bytes, Mapping[str, str]]:
                raw = create(**kwargs)
                return raw.content, raw.headers  # the body read in the worker too

            return await self.transport.in_worker(send)
        client = await self.transport.async_client()
        raw = await client.embeddings.with_raw_response.create(**kwargs)
        return raw.content, raw.headers

    async def _authorization(self, call: _Call) -> str:
        credential = self.settings.credential
        if not credential.needs_fetch:
            return credential.header()
        # The token callable may do I/O: never on the event loop, and within the deadline.
        try:
            return await asyncio.wait_for(_loop.in_thread(credential.header), self._remaining(call))
        except asyncio.TimeoutError:
            msg = "waiting for the iam_token callable"
            raise self._deadline(msg) from None

    def _remaining(self, call: _Call) -> float:
        if call.deadline_at is None:
            return self.settings.timeout
        left = call.deadline_at - time.monotonic()
        if left <= 0:
            msg = "before the next request"
            raise self._deadline(msg)
        return min(self.settings.timeout, left)

    def _deadline(self, where: str, attempts: int = 0) -> DeadlineExceededError:
        s = self.settings
        return DeadlineExceededError(
            f"{s.provider.display_name}: the call's deadline of {s.deadline} s ran out {where}; "
            "raise deadline= or send fewer texts per call.",
            provider=s.provider.name,
            attempts=attempts,
        )

    def _gave_up(self, error: BaseException, attempts: int) -> BaseException:
        if isinstance(error, StudioEmbeddingsError):
            error.provider = error.provider or self.settings.provider.name
            if error.attempts == 0:
                error.attempts = max(1, attempts)
                if attempts > 1:
                    error.message = f"{error.message} (gave up after {attempts} attempts)"
                    error.args = (error.message,)
        return error

    def _context(self, model: str, timeout: float) -> Context:
        s = self.settings
        return Context(
            s.provider, model, s.base_url, s.project, s.credential.scheme, timeout, s.deadline
        )

    async def _before_sleep(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        cause = error.cause if isinstance(error, TransientError) else error
        logger.info(
            "%s: attempt %d failed (%s); retrying in %.2f s",
            self.settings.provider.display_name,
            retry_state.attempt_number,
            cause,
            retry_state.upcoming_sleep,
        )
        if isinstance(error, TransientError) and isinstance(cause, RateLimitError):
            # Back off as one: every request sharing the quota waits, not just this one.
            await self.limiter.on_rate_limited(retry_state.upcoming_sleep, error.headers)

    def _wants_refresh(self, error: openai.OpenAIError) -> bool:
        """A 401 with a token from a callable: fetch a new token and send again, once."""
        return (
            self.settings.credential.refreshable
            and isinstance(error, openai.APIStatusError)
            and error.status_code == 401
        )
