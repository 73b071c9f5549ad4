"""An offline emulator of the Nebius and Yandex AI Studio embeddings APIs.

A real HTTP server on loopback (Starlette on uvicorn, the ``emulator`` extra) that
speaks both dialects as ``shared/PROVIDERS.md`` describes them: Nebius
(``POST /nebius/v1/embeddings``, ``GET /nebius/v1/models``) and Yandex
(``POST /yandex/v1/embeddings``). It stands in for the services in tests, demos,
notebooks and benchmarks; it reads the Provider table's data but imports nothing of
the client, so a client bug cannot hide behind the same bug in its test double.

| knob | effect |
| --- | --- |
| ``latency_ms``, ``per_input_ms`` | non-blocking delay per answer, and per input text |
| ``faults=Faults(...)`` | seeded random 503 / 429 / 429 with ``Retry-After`` / 500 / drop |
| ``yandex_rps`` | Yandex requests per second per folder, then 429 ``RESOURCE_EXHAUSTED`` |
| ``nebius_rpm``, ``nebius_tpm`` | Nebius requests / tokens per minute per project, then 429 |
| ``nebius_over_limit_after`` | Nebius requests per minute per project, then served as ``over-limit`` |
| ``valid_keys`` | accepted keys; anything else is 401 |
| ``script(provider, [...])`` | deterministic next answers: statuses, ``"drop"``, ``"quota"`` |

``Emulator`` serves from a thread of the calling process; ``EmulatorProcess`` runs one in a
process of its own (for benchmarks and multi-process tests), with the same knobs.

Vectors come from :func:`embed_text`: deterministic feature hashing, float32-exact,
similar texts near each other, so retrieval over a small corpus behaves as a person
expects.

Example:
    >>> from studio_embeddings.emulator import Emulator, embed_text
    >>> with Emulator() as emu:
    ...     emu.base_url("nebius").endswith("/nebius/v1")
    True
"""

from __future__ import annotations

from studio_embeddings.emulator._core import (
    UNLIMITED_REMAINING,
    EmulatorStats,
    RecordedRequest,
    ScriptEntry,
)
from studio_embeddings.emulator._knobs import Faults, Knobs
from studio_embeddings.emulator._process import EmulatorProcess
from studio_embeddings.emulator._server import Emulator, serve
from studio_embeddings.emulator._vectors import embed_text

__all__ = [
    "UNLIMITED_REMAINING",
    "Emulator",
    "EmulatorProcess",
    "EmulatorStats",
    "Faults",
    "Knobs",
    "RecordedRequest",
    "ScriptEntry",
    "embed_text",
    "serve",
]
