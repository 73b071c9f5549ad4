"""The emulator in a process of its own, controlled through a pipe.

Its sockets, event loop and GIL are apart from the client's, as a real provider's are: what a
benchmark measures as client CPU is the client's alone, and many worker processes can share
one emulator (and its per-folder quota). ``RecordedRequest.time`` is ``time.monotonic()`` in
the emulator's process: on Linux one system-wide clock, comparable with the workers'.
"""

from __future__ import annotations

import contextlib
import http.client
import multiprocessing
import time
from collections.abc import Callable, Iterable
from typing import Any

from studio_embeddings.emulator._core import RecordedRequest, ScriptEntry

__all__ = ["EmulatorProcess"]


def _child(conn: Any, knobs: dict[str, Any]) -> None:
    """Runs in the emulator's process: serve, and answer control commands on ``conn``."""
    try:
        from studio_embeddings.emulator import Emulator

        emu = Emulator(**knobs).start()
    except BaseException as e:  # reported to the parent
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", emu.port))
    commands: dict[str, Callable[[Any], Any]] = {
        "requests": lambda _: emu.requests,
        "stats": lambda _: {
            "requests": emu.stats.total,
            "statuses": dict(emu.stats.statuses),
            "cpu": time.process_time(),
        },
        "clear": lambda _: emu.clear(),
        "configure": lambda knobs: emu.configure(**knobs),
        "script": lambda args: emu.script(*args),
    }
    while True:
        try:
            command, argument = conn.recv()
        except EOFError:
            break
        if command == "stop":
            break
        conn.send(commands[command](argument))
    emu.stop()
    with contextlib.suppress(Exception):
        conn.send(None)


class EmulatorProcess:
    """``Emulator(**knobs)`` started in a spawned process of its own.

    Example:
        >>> from studio_embeddings.emulator import EmulatorProcess
        >>> with EmulatorProcess(latency_ms=0) as emu:  # doctest: +SKIP
        ...     url = emu.base_url("nebius")
    """

    def __init__(self, **knobs: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child, knobs), daemon=True)
        self._proc.start()
        if not self._conn.poll(60):
            self._proc.kill()
            msg = "the emulator process did not start within 60 s"
            raise RuntimeError(msg)
        status, value = self._conn.recv()
        if status != "ready":
            self._proc.join(5)
            msg = f"the emulator process failed: {value}"
            raise RuntimeError(msg)
        self.port = int(value)
        self._wait_until_answering()

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                c.request("GET", "/nebius/v1/models", headers={"Authorization": "Bearer probe"})
                c.getresponse().read()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            else:
                return
            finally:
                c.close()

    def base_url(self, provider: str) -> str:
        """The base URL of ``provider`` (``"nebius"`` or ``"yandex"``)."""
        return f"http://127.0.0.1:{self.port}/{provider}/v1"

    def _call(self, command: str, argument: Any = None) -> Any:
        self._conn.send((command, argument))
        if not self._conn.poll(60):
            msg = f"the emulator process did not answer {command!r}"
            raise RuntimeError(msg)
        return self._conn.recv()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered since the last :meth:`clear`, in arrival order."""
        return sorted(self._call("requests"), key=lambda r: r.time)

    def stats(self) -> dict[str, Any]:
        """``{"requests", "statuses", "cpu"}``: counts, and the process's CPU seconds so far."""
        stats: dict[str, Any] = self._call("stats")
        return stats

    def clear(self) -> None:
        self._call("clear")

    def configure(self, **knobs: Any) -> None:
        self._call("configure", knobs)

    def script(self, provider: str, answers: Iterable[ScriptEntry]) -> None:
        self._call("script", (provider, list(answers)))

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.send(("stop", None))
            self._conn.poll(10)
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
