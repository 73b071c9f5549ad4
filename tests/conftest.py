"""Shared fixtures: a clean environment for every test, and the emulator on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

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
