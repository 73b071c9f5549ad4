"""The event loop of our own that runs sync calls: one daemon thread per process.

A sync call (``embed_documents``, ``get_text_embedding_batch``) runs the same coroutine as
its async twin, on this loop, while the caller's thread waits. Measured with
``benchmarks/run.py`` on 2 cores (2,000 texts of 4096 dims): one thread doing all the I/O
and decoding spends about a quarter less CPU than a pool of threads taking turns on the GIL,
and finishes about a fifth sooner. It works from any thread, one with a running loop
included (Jupyter): the caller blocks, as a sync call does, and this loop does the work.

The loop is shared by every client of the process, so connections are kept between calls;
a child process after ``fork`` starts its own. At exit the openai clients bound to it are
closed on it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["Gate", "available", "current", "get_loop", "in_loop_thread", "in_thread", "run"]

T = TypeVar("T")

# How long a cancelled call (Ctrl-C) may take to abort its requests before the caller returns.
_CANCEL_GRACE = 5.0

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_shut_down = False  # set at interpreter exit: later sync calls use a thread pool instead


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


def available() -> bool:
    """False once the interpreter is exiting (the loop is stopped then, or about to be)."""
    return not _shut_down


def get_loop() -> asyncio.AbstractEventLoop:
    """The loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=_serve, args=(loop,), name="studio-embeddings-loop", daemon=True
            )
            thread.start()
            _loop, _thread = loop, thread
        return _loop


def current() -> asyncio.AbstractEventLoop | None:
    """The loop if it has been started in this process (and is still running), else None."""
    loop, thread = _loop, _thread
    alive = thread is not None and thread.is_alive() and not _shut_down
    return loop if alive else None


def in_loop_thread() -> bool:
    """True on the loop's own thread, where waiting for the loop would wait forever."""
    return _thread is not None and threading.current_thread() is _thread


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the loop and wait for its result.

    An exception in the waiting thread (Ctrl-C) cancels the coroutine and waits, up to a few
    seconds, for it to abort its requests before re-raising. On the loop's own thread (a
    sync call from a token callable, say) or at interpreter exit, where the loop cannot serve,
    ``coro`` runs on a fresh loop in a thread of its own instead.
    """
    if _shut_down or in_loop_thread():
        return _run_on_fresh_loop(coro)
    finished = threading.Event()

    async def runner() -> T:
        try:
            return await coro
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(runner(), get_loop())
    try:
        return future.result()
    except BaseException:
        if not future.done():
            future.cancel()
            finished.wait(_CANCEL_GRACE)
        raise


def _run_on_fresh_loop(coro: Coroutine[Any, Any, T]) -> T:
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append((asyncio.run(coro), None))
        except BaseException as e:
            outcome.append((None, e))

    thread = threading.Thread(target=work, name="studio-embeddings-call", daemon=True)
    thread.start()
    thread.join()
    result, error = outcome[0]
    if error is not None:
        raise error
    return result  # type: ignore[no-any-return]


class Gate:
    """A semaphore for tasks of any event loop and thread: ``async with gate:``.

    ``asyncio.Semaphore`` belongs to one loop; a client's ``max_concurrency`` bounds the
    requests in flight across all its calls, sync (on the package loop) and async (on the
    callers' loops) alike. A released slot passes straight to the oldest waiter.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.in_flight < self.limit and not self._waiters:
                self.in_flight += 1
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, waiter))
        try:
            await waiter  # resolved with the slot already counted for us
        except asyncio.CancelledError:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, waiter))
                raise  # never handed a slot
            if not waiter.cancelled() and waiter.done():
                self._release()  # handed a slot as we were cancelled: pass it on
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                if loop.is_closed():
                    continue
                with contextlib.suppress(RuntimeError):  # closed meanwhile
                    loop.call_soon_threadsafe(self._hand_over, waiter)
                    return
            self.in_flight -= 1

    def _hand_over(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():  # cancelled before the slot arrived
            self._release()
        else:
            waiter.set_result(None)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Await ``fn(*args)`` run in a daemon thread of its own.

    Not in the loop's default executor: that small pool is shared by every call on the loop,
    so one slow token callable (or one that itself makes a sync call) would hold up, or
    deadlock, every other client of the process. The blocking calls sent here are rare (a
    token fetch, a test's sleep recorder).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # the awaiting call was cancelled meanwhile
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def work() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (fn(*args), None)
        except BaseException as e:
            outcome = (None, e)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, name="studio-embeddings-blocking", daemon=True).start()
    return await future


def _after_fork_in_child() -> None:
    global _lock, _loop, _thread
    _lock = threading.Lock()
    _loop = _thread = None


def _shutdown() -> None:
    global _shut_down
    _shut_down = True
    loop, thread = _loop, _thread
    if loop is None or thread is None or not thread.is_alive():
        return
    # Closes the openai clients bound to the loop (each one's async generator closes it).
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result(timeout=2)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=2)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_shutdown)
