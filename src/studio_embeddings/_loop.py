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
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["available", "current", "get_loop", "in_loop_thread", "in_thread", "run"]

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
    seconds, for it to abort its requests before re-raising.
    """
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
