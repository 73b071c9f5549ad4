"""Shared fixtures: a clean environment for every test, the emulator on loopback, a real Redis."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Variables that would change what a client sends: none may leak from the developer's shell.
_ISOLATED_PREFIXES = ("NEBIUS_", "YC_", "OPENAI_")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def emulator_session() -> Iterator[object]:
    from studio_embeddings.emulator import Emulator

    with Emulator() as emu:
        yield emu


@pytest.fixture
def emulator(emulator_session: object) -> Iterator[object]:
    """The session's emulator, reset before each test (requests, scripts, knobs)."""
    emu = emulator_session
    emu.configure(faults=None, latency_ms=0.0, per_input_ms=0.0, yandex_rps=10.0)  # type: ignore[attr-defined]
    emu.clear()  # type: ignore[attr-defined]
    yield emu
    emu.clear()  # type: ignore[attr-defined]


@pytest.fixture
def served_emulator() -> Iterator[dict[str, str]]:
    """``serve`` in a process of its own: each provider's base URL, as the command prints them.

    Its sockets are apart from the test process's, as a real provider's are.
    """
    code = "from studio_embeddings.emulator import serve\nserve(port=0, log_level='warning')\n"
    src = str(Path(__file__).parents[1] / "src")
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": src},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
        yield dict((part.strip() for part in line.split(": ", 1)) for line in lines)
    finally:
        process.terminate()
        process.communicate(timeout=10)


# ---------------------------------------------------------------- a real Redis (the quota store)

_REDIS_MISSING = "redis-server is not installed: apt-get install redis-server"


class RedisServer:
    """Debian's ``redis-server`` on a free loopback port (never 6379), that can be killed and
    started again on the same port (for outage tests)."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        self.workdir = workdir
        self.password = password
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        """Stop it at once (SIGKILL), as a crash or a lost machine would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def client(self) -> Any:
        import redis

        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, decode_responses=True
        )


def _free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != 6379:  # a packaged redis-server may be running on its default port
            return port


def _need_redis() -> None:
    pytest.importorskip(
        "redis", reason="redis-py is missing: pip install 'studio-embeddings[redis]'"
    )
    if shutil.which("redis-server") is None:
        pytest.skip(_REDIS_MISSING)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; tests get it flushed through ``redis_store``."""
    _need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_store(redis_server: RedisServer) -> RedisServer:
    """The session's redis-server, empty at the start of the test."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server


@pytest.fixture
def make_redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """A factory of redis-servers of this test's own (a password, kill and restart), stopped after."""
    _need_redis()
    servers: list[RedisServer] = []

    def make(password: str | None = None) -> RedisServer:
        server = RedisServer(tmp_path, password)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()
