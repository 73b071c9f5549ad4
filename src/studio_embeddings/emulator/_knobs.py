"""The emulator's settings: :class:`Knobs` (one value for every knob) and :class:`Faults`."""

from __future__ import annotations

import dataclasses
import inspect
import math
import random
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Faults", "Knobs"]


@dataclass(frozen=True)
class Faults:
    """Random faults, each drawn per embeddings request from a seeded RNG.

    The probabilities are exclusive (one draw per request) and must sum to at most 1.

    Attributes:
        p503: probability of a 503 (Yandex: ``UNAVAILABLE``).
        p429: probability of a 429 rate-limit answer *without* retry headers.
        p429_retry_after: probability of a 429 carrying ``Retry-After`` (seconds) and
            ``retry-after-ms`` headers, both saying ``retry_after_s``.
        p500: probability of a 500 (Yandex: ``INTERNAL``).
        p_drop: probability of a dropped connection (headers sent, body never).
        retry_after_s: the wait the retry headers ask for.
        seed: seeds the RNG; :meth:`Emulator.clear` re-seeds it.

    Example:
        >>> Faults(p503=0.1, p_drop=0.05, seed=7).p503
        0.1
    """

    p503: float = 0.0
    p429: float = 0.0
    p429_retry_after: float = 0.0
    p500: float = 0.0
    p_drop: float = 0.0
    retry_after_s: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        probabilities = self._probabilities()
        for name, value in probabilities:
            if not 0.0 <= value <= 1.0:
                msg = f"Faults.{name} must be a probability between 0 and 1, not {value!r}."
                raise ValueError(msg)
        if sum(value for _, value in probabilities) > 1.0 + 1e-9:
            msg = "Faults probabilities (p503, p429, p429_retry_after, p500, p_drop) sum above 1."
            raise ValueError(msg)
        if self.retry_after_s < 0 or not math.isfinite(self.retry_after_s):
            msg = f"Faults.retry_after_s must be a finite number >= 0, not {self.retry_after_s!r}."
            raise ValueError(msg)

    def _probabilities(self) -> tuple[tuple[str, float], ...]:
        return (
            ("p503", self.p503),
            ("p429", self.p429),
            ("p429_retry_after", self.p429_retry_after),
            ("p500", self.p500),
            ("p_drop", self.p_drop),
        )

    def draw(self, rng: random.Random) -> str | None:
        """The fault for one request (a ``p*`` field name), or None."""
        roll = rng.random()
        for name, probability in self._probabilities():
            if roll < probability:
                return name
            roll -= probability
        return None


@dataclass(frozen=True)
class Knobs:
    """The emulator's settings, as one value.

    The single source of every knob: :class:`~studio_embeddings.emulator.Emulator` takes them
    as keywords (``Emulator(latency_ms=80)``) or as a whole (``Emulator(knobs=Knobs(...))``),
    :meth:`Emulator.configure <studio_embeddings.emulator.Emulator.configure>` changes them,
    :func:`~studio_embeddings.emulator.serve` passes them on, and ``studio-embeddings serve``
    has one flag per scalar knob (``--latency-ms``, ``--nebius-rpm``, ...), its help taken from
    the attributes below.

    Attributes:
        latency_ms: base latency added to every embeddings answer, in ms (non-blocking).
        per_input_ms: extra latency per input text, in ms.
        faults: random faults (:class:`Faults`); None for none.
        yandex_rps: Yandex requests per second per folder (sliding 1 s window; a fraction is
            rounded down, at least 1); None disables the limit.
        nebius_rpm: Nebius requests per minute per ai_project_id (sliding 60 s window); None
            disables. The flex tier is not counted.
        nebius_tpm: Nebius tokens (whitespace words) per minute per project; None disables.
        nebius_over_limit_after: Nebius requests per minute per project after which a request
            is still served, with service_tier "over-limit" (past the project's limit) instead
            of a 429; None disables. Checked before nebius_rpm; flex is not counted.
        valid_keys: accepted API keys / IAM tokens (any iterable); None accepts any non-empty one.
        seed: seeds the order in which multi-input Nebius answers are shuffled.
        shuffle: shuffle the data of multi-input Nebius answers (never left in order), so
            clients must re-order by index.

    Example:
        >>> Knobs().replace(latency_ms=80, faults=None).latency_ms
        80
    """

    latency_ms: float = 0.0
    per_input_ms: float = 0.0
    faults: Faults = field(default_factory=Faults)
    yandex_rps: float | None = 10.0
    nebius_rpm: int | None = None
    nebius_tpm: int | None = None
    nebius_over_limit_after: int | None = None
    valid_keys: frozenset[str] | None = None
    seed: int = 0
    shuffle: bool = True

    def __post_init__(self) -> None:
        # Forgiving spellings, normalised once here for every caller.
        if self.faults is None:
            object.__setattr__(self, "faults", Faults())
        if self.valid_keys is not None and not isinstance(self.valid_keys, frozenset):
            object.__setattr__(self, "valid_keys", frozenset(self.valid_keys))
        for name in ("latency_ms", "per_input_ms"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                msg = f"{name} must be a finite number >= 0, not {value!r}."
                raise ValueError(msg)
        for name in ("yandex_rps", "nebius_rpm", "nebius_tpm", "nebius_over_limit_after"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                msg = f"{name} must be positive, or None to disable the limit; got {value!r}."
                raise ValueError(msg)
        if not isinstance(self.faults, Faults):
            msg = f"faults must be a Faults instance or None, not {type(self.faults).__name__}."
            raise TypeError(msg)

    def replace(self, **changes: Any) -> Knobs:
        """A copy with ``changes`` applied; an unknown name is a TypeError listing the knobs."""
        allowed = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            msg = f"Unknown emulator knob(s) {unknown}: use some of {sorted(allowed)}."
            raise TypeError(msg)
        return dataclasses.replace(self, **changes)

    @classmethod
    def help(cls) -> dict[str, str]:
        """Each knob's description, read from the Attributes section above (one source)."""
        described: dict[str, str] = {}
        names = {f.name for f in fields(cls)}
        current = None
        for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
            name, sep, text = line.strip().partition(": ")
            if line.startswith("    ") and not line.startswith("        ") and sep and name in names:
                current = name
                described[name] = text
            elif current and line.startswith("        ") and line.strip():
                described[current] += " " + line.strip()
            else:
                current = None
        return described
