"""The package's own event loop: results, errors, cancellation and blocking calls in threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from studio_embeddings import _loop


def test_run_returns_the_result_on_the_loop_thread() -> None:
    async def where() -> str:
        return threading.current_thread().name

    assert _loop.run(where()) == "studio-embeddings-loop"
    assert _loop.current() is _loop.get_loop()
    assert not _loop.in_loop_thread()


def test_run_raises_what_the_coroutine_raised() -> None:
    async def fail() -> None:
        msg = "from the loop"
        raise LookupError(msg)

    with pytest.raises(LookupError, match="from the loop"):
        _loop.run(fail())


async def test_run_works_while_the_callers_loop_is_running() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * x

    assert _loop.run(double(21)) == 42


def test_in_thread_runs_blocking_work_beside_the_loop() -> None:
    async def main() -> tuple[str, float]:
        started = time.monotonic()
        name, _ = await asyncio.gather(
            _loop.in_thread(lambda: threading.current_thread().name),
            _loop.in_thread(time.sleep, 0.2),
            # The loop is not blocked meanwhile:
        )
        return name, time.monotonic() - started

    name, took = _loop.run(main())
    assert name == "studio-embeddings-blocking"
    assert took < 1.0


def test_in_thread_passes_errors_and_survives_cancellation() -> None:
    def boom() -> None:
        msg = "token service down"
        raise ConnectionError(msg)

    async def errors() -> None:
        await _loop.in_thread(boom)

    with pytest.raises(ConnectionError, match="token service down"):
        _loop.run(errors())

    async def cancelled() -> str:
        task = asyncio.ensure_future(_loop.in_thread(time.sleep, 0.1))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.2)  # the thread finishes after its awaiter is gone
        return "fine"

    assert _loop.run(cancelled()) == "fine"


def test_after_shutdown_the_loop_is_not_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    _loop.get_loop()
    monkeypatch.setattr(_loop, "_shut_down", True)
    assert not _loop.available()
    assert _loop.current() is None
