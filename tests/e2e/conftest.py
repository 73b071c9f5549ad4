"""A small scripted HTTP server on loopback, for what the emulator will not do on purpose.

The emulator speaks both providers' dialects correctly; a hostile or broken server does not.
:class:`ScriptedServer` answers each request with the next :class:`Reply` queued (a status,
headers, any body bytes, a body trickled a few bytes a second, or a connection held open
without an answer), and a well-formed embeddings answer once the queue is empty. It counts
every request it saw, so a test can assert that nothing was sent, or nothing retried.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Reply:
    """One scripted answer.

    ``body`` is sent as is when bytes, as JSON otherwise (``None`` sends ``null``); ``ok``
    (the default) sends a valid answer with one 3-dimensional vector per input.
    ``trickle`` sends the body at that many bytes a second; ``hold`` waits that long
    before answering at all (the connection open, nothing sent).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = "ok"
    trickle: float | None = None
    hold: float | None = None


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def ok_body(n: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": [0.25, 0.5, float(i)]}
            for i in range(n)
        ],
        "model": "m",
        "usage": {"prompt_tokens": n, "total_tokens": n},
    }


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops the SYNs of a fan-out: a 1 s stall each


class ScriptedServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 answering from a queue of :class:`Reply`."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.seen: list[Seen] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                with owner._lock:
                    owner.seen.append(
                        Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                    )
                    reply = owner.replies.popleft() if owner.replies else Reply()
                owner.answer(self, reply, raw)

            do_GET = do_POST

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.seen)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def answer(self, handler: BaseHTTPRequestHandler, reply: Reply, raw: bytes) -> None:
        if reply.hold is not None and self.stopping.wait(reply.hold):
            return
        body = reply.body
        if isinstance(body, str) and body == "ok":
            try:
                sent = json.loads(raw).get("input")
            except ValueError:
                sent = None
            body = ok_body(len(sent) if isinstance(sent, list) else 1)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            handler.send_response(reply.status)
            headers = {"content-type": "application/json", **reply.headers}
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("content-length", str(len(data)))
            handler.end_headers()
            if reply.trickle is None:
                handler.wfile.write(data)
                return
            step = max(1, int(reply.trickle))
            for at in range(0, len(data), step):
                handler.wfile.write(data[at : at + step])
                handler.wfile.flush()
                if self.stopping.wait(step / reply.trickle):
                    return
        except (BrokenPipeError, ConnectionResetError):
            return

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A fresh scripted server for one test."""
    with ScriptedServer() as s:
        yield s


@pytest.fixture
def clock() -> Any:
    """``elapsed()``: seconds since the test started (for loose time bounds)."""
    started = time.monotonic()
    return lambda: time.monotonic() - started
