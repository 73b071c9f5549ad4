"""The limiter interface, and pacing to a provider's quota within one process.

The engine asks a :class:`Limiter` before each request (``acquire``), tells it about every 429
(``on_rate_limited``) and every success (``on_success``), and never knows which limiter it has:
:class:`Pacer` here (one client, in-process), or a quota shared through Redis
(``_quota_redis.py``) by every process and machine that uses the same project or folder.

Written by hand on purpose: the established limiters are either asyncio-only and bound to one
event loop (aiolimiter) or built around bucket back-ends with blocking waits (pyrate-limiter).
A client here is used from worker threads *and* from any number of event loops at once, so the
limiter only hands out reservations under a ``threading.Lock`` (the GCRA "virtual scheduling"
algorithm: each request takes the next free slot) and the caller sleeps the returned delay
itself, with ``time.sleep`` in a thread or ``asyncio.sleep`` on a loop.

``pause(seconds)`` moves every limiter's next free slot past now + seconds: after a 429 the
whole client backs off as one instead of each worker hammering on its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

__all__ = ["Limiter", "LimiterDeadline", "Pacer", "Rate"]


class LimiterDeadline(Exception):
    """A request could not be admitted before the call's deadline."""

    def __init__(self, wait: float | None = None) -> None:
        when = "" if wait is None else f" in {wait:.2f} s"
        super().__init__(f"the quota admits the next request{when}, past the deadline")
        self.wait = wait


@runtime_checkable
class Limiter(Protocol):
    """What the engine asks of a quota, in-process or shared."""

    async def acquire(self, tokens: int, *, deadline_at: float | None = None) -> None:
        """Return when one request of ``tokens`` estimated input tokens may be sent now.

        Raises :class:`LimiterDeadline`, without sleeping, when that moment would come after
        ``deadline_at`` (a ``time.monotonic()`` value).
        """

    async def on_rate_limited(self, pause: float, headers: Mapping[str, str]) -> None:
        """The server answered 429: hold every request sharing this quota for ``pause`` s.

        ``headers`` are the answer's; a limiter may learn a per-minute budget from them.
        """

    def on_success(self) -> None:
        """The server accepted a request."""

logger = logging.getLogger("studio_embeddings")

#: The window of a per-minute quota, over which a spent budget is learned.
_LEARN_WINDOW = 60.0


class Rate:
    """``amount`` units per ``period`` seconds, with a burst of ``burst`` units."""

    def __init__(self, amount: float, period: float, burst: float | None = None) -> None:
        if amount <= 0 or period <= 0:
            msg = f"A rate needs a positive amount and period, got {amount}/{period}s."
            raise ValueError(msg)
        self.interval = period / amount  # seconds per unit
        self.burst = max(1.0, burst if burst is not None else 1.0)
        self._next = 0.0  # the theoretical arrival time of the next unit (GCRA's TAT)
        self.learned = False  # set by Pacer.learn_limit(), not by the user

    def reserve(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` units; return how long the caller must wait first."""
        tat = max(self._next, now)
        new_tat = tat + cost * self.interval
        start = max(now, new_tat - self.burst * self.interval)
        self._next = new_tat
        return start - now

    def push_back(self, until: float) -> None:
        self._next = max(self._next, until)


class Pacer:
    """The request and token limiters of one client.

    Args:
        requests_per_second: at most this many requests a second (None: unlimited).
        requests_per_minute: at most this many requests a minute (None: unlimited).
        tokens_per_minute: at most this many estimated input tokens a minute (None: unlimited).
        clock: monotonic clock, injectable for tests.
        remaining_headers: the provider's "what is left of the minute" headers; a 429 with
            one of them at 0 and no ``Retry-After`` makes the pacer learn the budget.
        headroom: the share of a learned budget to pace to.

    Example:
        >>> pacer = Pacer(requests_per_second=10)
        >>> [round(pacer.reserve(0, now=0.0), 2) for _ in range(3)]
        [0.0, 0.1, 0.2]
    """

    def __init__(
        self,
        *,
        requests_per_second: float | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        remaining_headers: tuple[str, ...] = (),
        headroom: float = 1.0,
        name: str = "",
    ) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._remaining_headers = remaining_headers
        self._headroom = headroom
        self._clock = clock
        self._requests: list[Rate] = []
        if requests_per_second:
            self._requests.append(Rate(requests_per_second, 1.0))
        if requests_per_minute:
            # A per-minute quota is enforced evenly: bursting the minute's budget invites 429s.
            self._requests.append(Rate(requests_per_minute, 60.0))
        self._tokens = (
            Rate(tokens_per_minute, 60.0, burst=tokens_per_minute / 6)
            if (tokens_per_minute)
            else None
        )
        self._paused_until = 0.0
        self.pauses = 0
        self._accepted: deque[float] = deque()  # requests the server took in the last minute
        self.learned_per_minute: float | None = None

    @property
    def limited(self) -> bool:
        return bool(self._requests or self._tokens)

    def reserve(self, tokens: int = 0, *, now: float | None = None) -> float:
        """Reserve one request of ``tokens`` tokens; returns the seconds to wait before sending."""
        with self._lock:
            now = self._clock() if now is None else now
            wait = max(0.0, self._paused_until - now)
            start = now + wait
            for rate in self._requests:
                wait = max(wait, start - now + rate.reserve(start))
            if self._tokens is not None and tokens:
                wait = max(wait, start - now + self._tokens.reserve(start, float(tokens)))
            return wait

    def pause(self, seconds: float) -> None:
        """Hold every request of this client for ``seconds`` from now (after a 429)."""
        if seconds <= 0:
            return
        with self._lock:
            until = self._clock() + seconds
            if until > self._paused_until:
                self._paused_until = until
                self.pauses += 1
            for rate in self._requests:
                rate.push_back(until)

    def accepted(self) -> None:
        """Note a request the server accepted (for :meth:`learn_limit`)."""
        with self._lock:
            now = self._clock()
            self._accepted.append(now)
            while self._accepted and self._accepted[0] <= now - _LEARN_WINDOW:
                self._accepted.popleft()

    def learn_limit(self, headroom: float = 1.0) -> float:
        """The server said its per-minute budget is spent (a 429 with nothing remaining).

        Takes the requests accepted in the last minute as the budget, paces every later request to
        it, and holds them all until the oldest of those requests leaves the server's window.
        Returns the pause in seconds. This is what makes an unconfigured client finish a job
        larger than its quota instead of exhausting its retries against it.
        """
        with self._lock:
            now = self._clock()
            recent = [t for t in self._accepted if t > now - _LEARN_WINDOW]
            budget = len(recent) * headroom
            # Too little history (the quota is shared, or spent before we started) teaches
            # nothing: just hold everyone for a moment and let the retry policy go on.
            if len(recent) >= 2 and (
                self.learned_per_minute is None or budget < self.learned_per_minute
            ):
                self.learned_per_minute = budget
                self._requests = [r for r in self._requests if not r.learned]
                rate = Rate(budget, _LEARN_WINDOW)
                rate.learned = True
                self._requests.append(rate)
            pause = (min(recent) + _LEARN_WINDOW - now) if recent else 1.0
        self.pause(pause)
        return pause

    # ------------------------------------------------------------ Limiter

    async def acquire(self, tokens: int = 0, *, deadline_at: float | None = None) -> None:
        """Suspend the calling task until a request may be sent (never blocks the loop)."""
        delay = self.reserve(tokens)
        if delay <= 0:
            return
        if deadline_at is not None and self._clock() + delay > deadline_at:
            raise LimiterDeadline(delay)
        await asyncio.sleep(delay)

    async def on_rate_limited(self, pause: float, headers: Mapping[str, str]) -> None:
        """Hold every request for ``pause`` s; learn the minute's budget if the headers say
        it is spent and no ``Retry-After`` was sent."""
        spent = any(headers.get(name, "").strip() == "0" for name in self._remaining_headers)
        told = "retry-after" in headers or "retry-after-ms" in headers
        if spent and not told:
            before = self.learned_per_minute
            held = self.learn_limit(self._headroom)
            if self.learned_per_minute != before:
                logger.warning(
                    "%s: per-minute quota reached; pacing to about %.0f requests/min (pause %.1f s). "
                    "Set requests_per_minute= to avoid this.",
                    self._name or "the provider",
                    self.learned_per_minute or 0,
                    held,
                )
        self.pause(pause)

    def on_success(self) -> None:
        self.accepted()
