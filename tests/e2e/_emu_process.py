"""The emulator in a process of its own, controlled through a pipe (for multi-process tests).

Its sockets, event loop and GIL are apart from every worker's, as a real provider's are; its
records come back over the pipe. ``RecordedRequest.time`` is ``time.monotonic()`` in the
emulator's process: on Linux one system-wide clock, so workers can compare their own
``time.monotonic()`` with it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Record:
    provider: str
    status: int
    time: float
    text: str | None  # Yandex: the one input; Nebius: None
    project: str | None  # the Yandex folder (from the model URI) or Nebius ai_project_id


def _child(conn: Any, knobs: dict[str, Any]) -> None:
    try:
        from studio_embeddings.emulator import Emulator

        emu = Emulator(**knobs).start()
    except BaseException as e:  # reported to the parent
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", emu.port))
    while True:
        try:
            command, argument = conn.recv()
        except EOFError:
            break
        if command == "records":
            out = []
            for r in emu.requests:
                if not r.path.endswith("/embeddings"):
                    continue
                body = r.body or {}
                text = body.get("input")
                text = text[0] if isinstance(text, list) and len(text) == 1 else text
                model = str(body.get("model", ""))
                project = (
                    model.split("/")[2]
                    if model.startswith("emb://")
                    else r.query.get("ai_project_id")
                )
                out.append(
                    Record(
                        r.provider,
                        r.status,
                        r.time,
                        text if isinstance(text, str) else None,
                        project,
                    )
                )
            conn.send(out)
        elif command == "clear":
            emu.clear()
            conn.send(None)
        elif command == "configure":
            emu.configure(**argument)
            conn.send(None)
        elif command == "script":
            emu.script(*argument)
            conn.send(None)
        elif command == "stop":
            break
    emu.stop()
    with contextlib.suppress(Exception):
        conn.send(None)


class EmulatorProcess:
    """``Emulator(**knobs)`` started in a spawned process; ``records()`` reads its requests."""

    def __init__(self, **knobs: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child, knobs), daemon=True)
        self._proc.start()
        if not self._conn.poll(60):
            self._proc.kill()
            raise RuntimeError("the emulator process did not start within 60 s")
        status, value = self._conn.recv()
        if status != "ready":
            self._proc.join(5)
            raise RuntimeError(f"the emulator process failed: {value}")
        self.port = int(value)

    def base_url(self, provider: str) -> str:
        return f"http://127.0.0.1:{self.port}/{provider}/v1"

    def _call(self, command: str, argument: Any = None) -> Any:
        self._conn.send((command, argument))
        if not self._conn.poll(30):
            raise RuntimeError(f"the emulator process did not answer {command!r}")
        return self._conn.recv()

    def records(self) -> list[Record]:
        """The embeddings requests answered since the last ``clear``, in arrival order."""
        return sorted(self._call("records"), key=lambda r: r.time)

    def clear(self) -> None:
        self._call("clear")

    def configure(self, **knobs: Any) -> None:
        self._call("configure", knobs)

    def script(self, provider: str, answers: list[Any]) -> None:
        self._call("script", (provider, answers))

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


def max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` that fall inside any window of ``window`` seconds."""
    times = sorted(times)
    return max(
        (sum(1 for u in times[i:] if u < t + window) for i, t in enumerate(times)), default=0
    )


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
