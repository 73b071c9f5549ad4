"""The emulator in a process of its own (multi-process tests), with its records in a short form.

``EmulatorProcess`` is the package's (``studio_embeddings.emulator``); this adds ``records()``:
each embeddings request's provider, status, arrival time, text (Yandex: the one input) and
project (the Yandex folder from the model URI, or Nebius ``ai_project_id``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from studio_embeddings.emulator import EmulatorProcess as _Base
from studio_embeddings.emulator import RecordedRequest


@dataclass(frozen=True)
class Record:
    provider: str
    status: int
    time: float
    text: str | None  # Yandex: the one input; Nebius: None
    project: str | None  # the Yandex folder (from the model URI) or Nebius ai_project_id


def _record(r: RecordedRequest) -> Record:
    body = r.body or {}
    text = body.get("input")
    text = text[0] if isinstance(text, list) and len(text) == 1 else text
    model = str(body.get("model", ""))
    project = model.split("/")[2] if model.startswith("emb://") else r.query.get("ai_project_id")
    return Record(r.provider, r.status, r.time, text if isinstance(text, str) else None, project)


class EmulatorProcess(_Base):
    def records(self) -> list[Record]:
        """The embeddings requests answered since the last ``clear``, in arrival order."""
        return [_record(r) for r in self.requests if r.path.endswith("/embeddings")]


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
