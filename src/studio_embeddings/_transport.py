"""The openai clients of one :class:`~studio_embeddings.EmbeddingsClient`.

A sync client (used only with a user's own sync ``http_client``, from worker threads that the
async engine awaits), and one async client per event loop: an httpx pool belongs to the loop
it was used on. Each async client we own is closed on its own loop, when that loop shuts down
(``asyncio.run`` finalizes async generators before closing the loop: a small one holds the
client until then) or when the owner is dropped (a ``weakref.finalize``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai

# The SDK imports its embeddings resource lazily, on the first ``client.embeddings``: on the
# package loop's thread that stalled the first request of a process (~0.3 s, past its paced
# turn), and a Ctrl-C landing inside another thread's import could leave the import lock held
# and the loop waiting on it forever. Imported here, with the package.
import openai.resources.embeddings

from studio_embeddings import _loop
from studio_embeddings._settings import Settings

__all__ = ["Transport"]

T = TypeVar("T")


@dataclass
class _AsyncEntry:
    """An async openai client and the event loop it belongs to."""

    loop: weakref.ref[asyncio.AbstractEventLoop]
    client: openai.AsyncOpenAI
    closer: AsyncGenerator[None, None] | None  # closes the client when the loop shuts down
    pid: int = field(default_factory=os.getpid)
    started: bool = False  # the closer runs on the loop (first awaited there)
    finalizer: weakref.finalize[..., Any] | None = None  # closes it on its loop if we are dropped


def _close_on_loop(loop_ref: weakref.ref[asyncio.AbstractEventLoop], client: Any) -> None:
    loop = loop_ref()
    if loop is None or loop.is_closed():
        return
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(lambda: loop.create_task(client.close()))


async def _close_with_loop(client: openai.AsyncOpenAI) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.close()


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """The openai client's constructor arguments: every value explicit."""
    p = settings.provider
    # Omit() removes headers the openai client would add from OPENAI_ORG_ID,
    # OPENAI_PROJECT_ID or OPENAI_CUSTOM_HEADERS: nothing of a user's OpenAI set-up
    # may reach another provider.
    headers: dict[str, Any] = {
        "OpenAI-Organization": openai.Omit(),
        "OpenAI-Project": openai.Omit(),
    }
    headers.update(dict.fromkeys(settings.omitted_headers, openai.Omit()))
    if p.project_header and settings.project:
        headers[p.project_header] = settings.project
    if p.data_logging_header and settings.data_logging is not None:
        headers[p.data_logging_header] = "true" if settings.data_logging else "false"
    headers.update(settings.default_headers)
    query = (
        {p.project_query_param: settings.project}
        if p.project_query_param and settings.project
        else None
    )
    return {
        # The real credential goes per request (it may be a refreshed token); this
        # placeholder only keeps the SDK from reading OPENAI_API_KEY.
        "api_key": "studio-embeddings-per-request-auth",
        "organization": None,
        "project": None,
        "base_url": settings.base_url.rstrip("/") + "/",
        "timeout": settings.timeout,
        "max_retries": 0,
        "default_headers": headers,
        "default_query": query,
    }


class Transport:
    """The openai clients for one set of settings; see the module docstring."""

    def __init__(
        self, settings: Settings, http_client: Any = None, http_async_client: Any = None
    ) -> None:
        self.settings = settings
        self.http_client = http_client
        self.http_async_client = http_async_client
        self._lock = threading.Lock()
        self._sync_client: openai.OpenAI | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._async_clients: dict[int, _AsyncEntry] = {}

    @property
    def threaded(self) -> bool:
        """Whether sync calls send through a user's own http client, from worker threads."""
        return self.http_client is not None or self.http_async_client is not None

    def sync_client(self) -> openai.OpenAI:
        """The cached sync openai client (built on first use)."""
        if self._sync_client is None:
            with self._lock:
                if self._sync_client is None:
                    kwargs = client_kwargs(self.settings)
                    if self.http_client is not None:
                        kwargs["http_client"] = self.http_client
                    self._sync_client = openai.OpenAI(**kwargs)
        return self._sync_client

    async def in_worker(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` run in this transport's worker threads."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        self.settings.max_concurrency, thread_name_prefix="studio-embeddings"
                    )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def entry(self, loop: asyncio.AbstractEventLoop) -> _AsyncEntry:
        """The async openai client bound to ``loop``; built on first use, in any thread."""
        pid = os.getpid()
        with self._lock:
            for key, old in list(self._async_clients.items()):
                old_loop = old.loop()
                if old_loop is None or old_loop.is_closed() or old.pid != pid:
                    del self._async_clients[key]  # a finished loop, or the parent's before fork
                    if old.finalizer is not None:
                        old.finalizer.detach()
            found = self._async_clients.get(id(loop))
            if found is not None and found.loop() is loop:
                return found
        # Built outside the lock (and, for sync calls, in the caller's thread rather than on
        # the package loop): an httpx client takes ~15 ms to build, most of it its SSL context.
        kwargs = client_kwargs(self.settings)
        if self.http_async_client is not None:
            kwargs["http_client"] = self.http_async_client
        client = openai.AsyncOpenAI(**kwargs)
        owned = self.http_async_client is None  # a user's own http client stays open
        entry = _AsyncEntry(weakref.ref(loop), client, _close_with_loop(client) if owned else None)
        with self._lock:
            raced = self._async_clients.get(id(loop))
            if raced is not None and raced.loop() is loop:
                return raced  # another thread built one first; ours never sent anything
            self._async_clients[id(loop)] = entry
        if owned:
            # Dropped without close(), this client would be garbage with its connections, and
            # the garbage collector would close their sockets in whatever thread it runs in,
            # behind the loop's back (the loop then watched reused file descriptors and the
            # next requests hung until their timeout). The finalizer holds the connections and
            # closes them on their own loop instead.
            entry.finalizer = weakref.finalize(self, _close_on_loop, entry.loop, client)
            entry.finalizer.atexit = False  # at exit the loops close their clients themselves
        return entry

    @property
    def loops(self) -> int:
        """How many event loops have an async client of ours (for tests and diagnostics)."""
        return len(self._async_clients)

    async def async_client(self) -> openai.AsyncOpenAI:
        """The async openai client of the running event loop (one per loop, cached)."""
        entry = self.entry(asyncio.get_running_loop())
        if entry.closer is not None and not entry.started:
            entry.started = True  # no await in between: one start per loop
            await entry.closer.__anext__()
        return entry.client

    def close(self) -> None:
        """Close the sync client, the worker threads, and the package loop's async client."""
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        loop = _loop.current()
        if loop is None or _loop.in_loop_thread():
            return
        with self._lock:
            entry = self._async_clients.pop(id(loop), None)
        if entry is None:
            return
        if entry.finalizer is not None:
            entry.finalizer.detach()
        if entry.loop() is loop and entry.closer is not None:
            if entry.started:
                _loop.run(entry.closer.aclose())  # the generator's exit closes the client
            else:
                _loop.run(entry.client.close())

    async def aclose(self) -> None:
        """Close the running loop's async client (and the sync one)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async_clients.pop(id(loop), None)
        if entry is not None:
            if entry.finalizer is not None:
                entry.finalizer.detach()
            if entry.closer is not None:
                if entry.started:
                    await entry.closer.aclose()
                else:
                    await entry.client.close()
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None
