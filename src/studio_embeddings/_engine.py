"""The engine: ONE bounded async fan-out for every call, sync or async, list or array.

One task per request, at most ``max_concurrency`` in flight per client (across all its calls,
on any loop: :class:`~studio_embeddings._loop.Gate`). Each request asks the limiter for its
turn (within the call's deadline), sends with the per-request timeout bounding the whole
request, body included, and is retried by the policy (``_retry``) on what ``_classify`` calls
transient. A 429 holds every request sharing the quota (``Limiter.on_rate_limited``). Each
answer is checked (``_wire``) and written into the call's rows. When a request fails for good,
the other requests of its call are cancelled and the call raises: nothing is returned
half-filled. With a user's own sync ``http_client``, requests go through it from worker
threads that the same fan-out awaits, so retry, refresh, cancel and fail-fast exist once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai
from tenacity import RetryCallState

from studio_embeddings import _loop
from studio_embeddings._auth import SecretValue
from studio_embeddings._classify import Context, classify
from studio_embeddings._pacing import Limiter, LimiterDeadline, Pacer
from studio_embeddings._retry import DeadlineStop, TransientError
from studio_embeddings._settings import Kind, Settings
from studio_embeddings._transport import Transport
from studio_embeddings._wire import Answer, Batch, Rows, parse_answer, plan, request_kwargs
from studio_embeddings.errors import (
    DeadlineExceededError,
    RateLimitError,
    ResponseError,
    StudioEmbeddingsError,
)

__all__ = ["Call", "Engine", "default_limiter"]

logger = logging.getLogger("studio_embeddings")
T = TypeVar("T")


@dataclass
class Call:
    """What the requests of one call share (touched only on the loop running the call)."""

    model: str
    kind: Kind
    deadline_at: float | None
    rows: Rows
    progress: Any = None
    tokens: int = 0
    requests: int = 0
    retries: int = 0
    tiers: Counter[str] = field(default_factory=Counter)


def default_limiter(s: Settings) -> Limiter:
    """The settings' quota: shared through Redis when ``quota_store`` is set, else in-process."""
    if s.quota_store is not None:
        from studio_embeddings._quota_redis import RedisLimiter, quota_scope

        key = s.credential.given("api_key")
        secret = key.get_secret_value() if isinstance(key, SecretValue) else None
        scope = quota_scope(s.provider.name, s.project, secret)
        return RedisLimiter(
            s.quota_store.get_secret_value(),
            scope,
            requests_per_second=s.requests_per_second or None,
            requests_per_minute=s.requests_per_minute or None,
            tokens_per_minute=s.tokens_per_minute or None,
            headroom=s.provider.pacing_headroom,
            remaining_headers=s.provider.quota_remaining_headers,
        )
    return Pacer(
        **s.pacing(),
        remaining_headers=s.provider.quota_remaining_headers,
        headroom=s.provider.pacing_headroom,
        name=s.provider.display_name,
    )


class Engine:
    """Runs the calls of one client: its settings, transport, limiter and concurrency gate."""

    def __init__(self, settings: Settings, transport: Transport, limiter: Limiter) -> None:
        self.settings = settings
        self.transport = transport
        self.limiter = limiter
        self._gate = _loop.Gate(settings.max_concurrency)
        self.warned = False  # the over-limit warning was given

    def plan(self, texts: list[str]) -> list[Batch]:
        """The requests a call with ``texts`` sends."""
        return plan(texts, self.settings.batch_size)

    async def run(
        self,
        texts: list[str],
        kind: Kind,
        rows: Rows,
        progress: bool | None = None,
        threaded: bool = False,
    ) -> Call:
        """Embed ``texts`` (prepared) into ``rows``; the call's counts come back."""
        s = self.settings
        call = Call(
            model=s.wire_model(kind),
            kind=kind,
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

    async def _request(self, call: Call, batch: Batch, threaded: bool) -> None:
        s = self.settings
        attempts = 0

        async def attempt() -> tuple[bytes, Mapping[str, str]]:
            nonlocal attempts
            attempts += 1
            async with self._gate:
                try:
                    await self.limiter.acquire(batch.tokens, deadline_at=call.deadline_at)
                except LimiterDeadline as e:
                    where = f"waiting for the quota ({e})"
                    raise self._deadline(where) from None
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
                where = f"retrying after {attempts} attempts; last error: {e.cause}"
                raise self._deadline(where, attempts) from e.__cause__
            raise self._gave_up(e.cause, attempts) from e.__cause__
        except StudioEmbeddingsError as e:
            raise self._gave_up(e, attempts) from e.__cause__
        self.limiter.on_success(headers)
        call.tokens += answer.tokens
        call.requests += 1
        call.retries += attempts - 1
        if answer.service_tier is not None:
            call.tiers[answer.service_tier] += 1
            if answer.service_tier in s.provider.response_service_tiers and not self.warned:
                self.warned = True  # once per client
                logger.warning(
                    "%s served a request with service_tier %r: it went past the project's "
                    "limit. Lower the request rate, or set requests_per_minute=.",
                    s.provider.display_name,
                    answer.service_tier,
                )
        if call.progress is not None:
            call.progress.update(len(batch.texts))

    async def _send(
        self, call: Call, batch: Batch, threaded: bool
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
                    await self._bounded(
                        _loop.in_thread(s.credential.refresh, authorization), call
                    )
                    continue
                raise classify(e, self._context(call.model, timeout)) from e
            except asyncio.TimeoutError:
                timed_out = openai.APITimeoutError(request=None)  # type: ignore[arg-type]
                raise classify(timed_out, self._context(call.model, timeout)) from None
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def _post(
        self, kwargs: dict[str, Any], threaded: bool
    ) -> tuple[bytes, Mapping[str, str]]:
        if threaded:
            create = self.transport.sync_client().embeddings.with_raw_response.create

            def send() -> tuple[bytes, Mapping[str, str]]:
                raw = create(**kwargs)
                return raw.content, raw.headers  # the body read in the worker too

            return await self.transport.in_worker(send)
        client = await self.transport.async_client()
        raw = await client.embeddings.with_raw_response.create(**kwargs)
        return raw.content, raw.headers

    async def _authorization(self, call: Call) -> str:
        credential = self.settings.credential
        if not credential.needs_fetch:
            return credential.header()
        # The token callable may do I/O: never on the event loop, and within the deadline.
        return await self._bounded(_loop.in_thread(credential.header), call)

    async def _bounded(self, waiting: Awaitable[T], call: Call) -> T:
        """``waiting`` (a token callable's fetch), within what is left of the call's deadline."""
        if call.deadline_at is None:
            return await waiting
        try:
            return await asyncio.wait_for(waiting, self._remaining(call))
        except asyncio.TimeoutError:
            msg = "waiting for the iam_token callable"
            raise self._deadline(msg) from None

    def _remaining(self, call: Call) -> float:
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
