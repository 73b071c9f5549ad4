"""Shared fixtures: a clean environment for every test, and the emulator on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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
