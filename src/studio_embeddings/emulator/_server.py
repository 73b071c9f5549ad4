"""Running the emulator: :class:`Emulator` (background thread) and :func:`serve` (blocking)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from studio_embeddings.emulator._core import (
    PROVIDER_NAMES,
    EmulatorCore,
    EmulatorStats,
    RecordedRequest,
    ScriptEntry,
)
from studio_embeddings.emulator._knobs import Knobs

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

__all__ = ["Emulator", "serve"]

_EXTRA_HINT = "The emulator needs its extra: pip install 'studio-embeddings[emulator]'."
_STARTUP_TIMEOUT_S = 10.0


def _build_app(core: EmulatorCore) -> ASGIApp:
    try:
        from studio_embeddings.emulator._app import build_app
    except ImportError as exc:
        raise ImportError(_EXTRA_HINT) from exc
    return build_app(core)


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(_EXTRA_HINT) from exc
    return uvicorn


def _bind(host: str, port: int) -> socket.socket:
    """A bound TCP socket, so the real port is known before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without
    # it a keep-alive answer (headers, then body) waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class Emulator:
    """Both providers' embeddings APIs on a real loopback HTTP server, for tests and demos.

    Starlette served by uvicorn in a daemon thread; the client under test talks to it
    over real sockets, so nothing in the client is patched. Every request is recorded,
    answers can be scripted, and faults, latency and rate limits are knobs.

    Args:
        host: interface to bind.
        port: port to bind; 0 picks a free one.
        knobs: the settings to start from (:class:`Knobs`); the defaults when omitted.
        **overrides: any :class:`Knobs` field by name, applied on top: ``latency_ms=80``,
            ``faults=Faults(p503=0.1)``, ``yandex_rps=None``, ... (an unknown name is a
            TypeError). :class:`Knobs` documents each one.

    Example:
        >>> import httpx2
        >>> from studio_embeddings.emulator import Emulator, embed_text
        >>> with Emulator() as emu:
        ...     response = httpx2.post(
        ...         emu.base_url("yandex") + "/embeddings",
        ...         headers={"Authorization": "Api-Key k"},
        ...         json={"model": "emb://b1g/text-search-doc/latest", "input": "hello",
        ...               "encoding_format": "float"},
        ...     )
        ...     response.json()["data"][0]["embedding"] == embed_text(
        ...         "yandex", "emb://b1g/text-search-doc/latest", "hello")
        True
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        knobs: Knobs | None = None,
        **overrides: Any,
    ) -> None:
        self._core = EmulatorCore((knobs or Knobs()).replace(**overrides))
        self._host = host
        self._port = port
        self._app: ASGIApp | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> Emulator:
        """Start serving in a daemon thread and wait until it accepts connections."""
        if self._thread is not None:
            return self
        uvicorn = _uvicorn()
        from studio_embeddings.emulator._app import install_log_filter

        install_log_filter()
        sock = _bind(self._host, self._port)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,  # leave the host application's logging alone
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name="studio-embeddings-emulator",
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                msg = f"The emulator did not start on {self._host}:{self._port}."
                raise RuntimeError(msg)
            time.sleep(0.002)
        self._server, self._thread, self._socket = server, thread, sock
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread (at most a few seconds)."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=5.0)
        if sock is not None:
            sock.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._thread is not None else "stopped"
        return f"Emulator({self._host}:{self._port}, {state})"

    # --- addresses -----------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        """The ASGI app (shares this emulator's state); usable without starting a server."""
        if self._app is None:
            self._app = _build_app(self._core)
        return self._app

    @property
    def host(self) -> str:
        """The bound interface."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``, without a trailing slash."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    def base_url(self, provider: str) -> str:
        """The OpenAI-style base URL of ``provider`` (``"nebius"`` or ``"yandex"``).

        >>> Emulator(port=8123).base_url("nebius")
        'http://127.0.0.1:8123/nebius/v1'
        """
        if provider not in PROVIDER_NAMES:
            msg = f"Unknown provider {provider!r}: use one of {list(PROVIDER_NAMES)}."
            raise ValueError(msg)
        return f"{self.url}/{provider}/v1"

    # --- state and control ---------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, in the order they were answered."""
        return self._core.requests

    @property
    def stats(self) -> EmulatorStats:
        """Counters per provider and status, and dropped connections."""
        return self._core.stats

    @property
    def knobs(self) -> Knobs:
        """The current settings."""
        return self._core.knobs

    def clear(self) -> None:
        """Forget recorded requests, counters, pending scripts and rate-limit windows.

        Also re-seeds the fault and shuffle RNGs, so each test sees the same sequence.
        Knobs set with :meth:`configure` are kept; :meth:`reset` restores them too.
        """
        self._core.clear()

    def reset(self) -> None:
        """:meth:`clear`, and restore the knobs given to the constructor."""
        self._core.reset()

    def configure(self, **changes: Any) -> None:
        """Change knobs (any :class:`Knobs` field by name) at runtime; the others keep their value.

        ``faults=None`` removes faults; ``yandex_rps=None`` (or ``nebius_rpm``,
        ``nebius_tpm``, ``nebius_over_limit_after``) removes that limit; ``valid_keys=None``
        accepts any key. New ``faults`` (or ``seed``) re-seed their RNG.

        Raises:
            ValueError: a value is out of range.
            TypeError: an unknown knob.
        """
        self._core.configure(**changes)

    def script(self, provider: str, answers: Iterable[ScriptEntry]) -> None:
        """Queue the next embeddings answers of ``provider``, consumed one per request.

        Each entry is ``200`` (answer normally: auth, validation and rate limits still
        apply), an error status from 400 to 599 (in the provider's error shape),
        ``"drop"`` (a dropped connection), ``"quota"`` (a 429 saying the quota is
        exhausted, a billing problem rather than a rate limit), or a pair of one of
        those and extra response headers: ``(429, {"retry-after": "2"})``. Scripted
        answers take precedence over random faults.

        Raises:
            ValueError: unknown provider or entry (nothing is queued then).

        Example:
            >>> emu = Emulator()
            >>> emu.script("nebius", [503, (429, {"retry-after": "1"}), "drop", 200])
        """
        self._core.script(provider, answers)

    def pending_script(self, provider: str) -> int:
        """How many scripted answers of ``provider`` are still queued."""
        return self._core.pending_script(provider)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    knobs: Knobs | None = None,
    log_level: str = "info",
    **overrides: Any,
) -> None:
    """Serve the emulator in the foreground until interrupted (Ctrl+C).

    ``knobs`` and ``overrides`` are those of :class:`Emulator` (:class:`Knobs` fields). The
    first two lines printed are the base URLs (``nebius: http://{host}:{port}/nebius/v1``,
    then ``yandex: ...``); ``port=0`` picks a free port and prints it there.

    Example:
        ``studio-embeddings serve --port 8000 --latency-ms 80`` calls
        ``serve(port=8000, latency_ms=80.0)``.
    """
    uvicorn = _uvicorn()
    emulator = Emulator(host, port, knobs=knobs, **overrides)
    from studio_embeddings.emulator._app import install_log_filter

    sock = _bind(host, port)
    # Listening before the URLs are printed: a client that reads them and connects at once
    # is queued until uvicorn starts, not refused.
    sock.listen(2048)
    emulator._port = sock.getsockname()[1]
    config = uvicorn.Config(emulator.app, log_level=log_level, lifespan="off", backlog=2048)
    install_log_filter()  # after Config, which (re)configures logging
    for provider in PROVIDER_NAMES:
        print(f"{provider}: {emulator.base_url(provider)}", flush=True)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
