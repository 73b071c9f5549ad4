"""What the commands share: the emulator's stand-in credentials, and where settings come from."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from studio_embeddings.providers import get_provider

__all__ = [
    "EMULATOR_KEY",
    "EMULATOR_PROJECT",
    "emulator_settings",
    "has_real_credentials",
    "maybe_emulator",
    "say",
]

# Stand-in credentials for the emulator: it accepts any non-empty key, and a real key must
# never leave for it.
EMULATOR_KEY = "emulator-key"
EMULATOR_PROJECT = "b1gemulatorfolder"


def has_real_credentials(provider: str) -> bool:
    """Whether the environment holds a key (or token) and, where needed, a project id."""
    from studio_embeddings._settings import Settings

    return Settings.credentials_in_env(provider)


@contextlib.contextmanager
def maybe_emulator(needed: bool) -> Iterator[Any]:
    """An in-process emulator while ``needed``, else None."""
    if not needed:
        yield None
        return
    from studio_embeddings.emulator import Emulator

    with Emulator() as emu:
        yield emu


def emulator_settings(
    provider: str, emu: Any, *, project_key: str, project: str | None = None
) -> dict[str, Any]:
    """Stand-in key, the emulator's base URL and, where required, a folder under ``project_key``.

    ``project_key`` is the keyword the receiving class takes (``project`` for the core,
    ``folder_id`` for the framework shells); a ``project`` given by the user is kept.
    """
    p = get_provider(provider)
    settings: dict[str, Any] = {"api_key": EMULATOR_KEY, "base_url": emu.base_url(p.name)}
    if p.project_required and not project:
        settings[project_key] = EMULATOR_PROJECT
    return settings


def say(message: str) -> None:
    """A status line on stderr (stdout stays for results)."""
    print(message, file=sys.stderr, flush=True)
