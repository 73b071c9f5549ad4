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

A per-minute budget learned from a 429 (see :meth:`Pacer.learn_limit`) is a guess, so it is
learned only from real evidence (at least :data:`MIN_EVIDENCE` requests accepted in the last
minute) and it recovers: an answer whose remaining-quota header shows room for more than the
learned budget raises it (or, with room for a whole learned budget again, forgets it), and
each clean minute without a 429 raises it by :data:`PROBE_FACTOR`.
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

    def on_success(self, headers: Mapping[str, str] | None = None) -> None:
        """The server accepted a request; ``headers`` are its answer's (may be None)."""


logger = logging.getLogger("studio_embeddings")

#: The window of a per-minute quota, over which a spent budget is learned.
_LEARN_WINDOW = 60.0
#: Fewer requests accepted in the last minute than this teach no budget: a 429 after a handful
#: of requests says more about other users of the quota than about its size.
MIN_EVIDENCE = 10
#: A learned budget grows by this factor after each minute with no 429 (probing upwards).
PROBE_FACTOR = 1.5


class Rate:
    """``amount`` units per ``period`` seconds, with a burst of ``burst`` units.

    With ``fresh_window=True`` a new rate may also spend the whole ``amount`` of its first
    period at once, as a provider's own per-minute window allows a client that has sent nothing
    yet; once that first budget is spent (or the period is over) it paces as usual, and never
    lets more than ``amount`` through in that first period.
    """

    def __init__(
        self,
        amount: float,
        period: float,
        burst: float | None = None,
        *,
        fresh_window: bool = False,
    ) -> None:
        if not (amount > 0 and period > 0):  # NaN fails too
            msg = f"A rate needs a positive amount and period, got {amount}/{period}s."
            raise ValueError(msg)
        self.amount = amount
        self.period = period
        self.interval = period / amount  # seconds per unit
        self.burst = max(1.0, burst if burst is not None else 1.0)
        self._next = 0.0  # the theoretical arrival time of the next unit (GCRA's TAT)
        self.learned = False  # set by Pacer.learn_limit(), not by the user
        # The first window: (its end, units left), until it is spent or over.
        self._fresh: tuple[float | None, float] | None = (None, amount) if fresh_window else None

    def reserve(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` units; return how long the caller must wait first."""
        if self._fresh is not None:
            end, left = self._fresh
            if end is None:
                end = now + self.period
                self._next = now  # the even pace starts when the window does
            if now < end and cost <= left:
                self._fresh = (end, left - cost)
                self._next += cost * self.interval  # as if spent evenly from the window's start
                return 0.0
            self._fresh = None
            if now < end:
                # The first budget is spent: nothing more before its window is over.
                wait = self._gcra(now, cost)
                return max(wait, end - now)
        return self._gcra(now, cost)

    def _gcra(self, now: float, cost: float) -> float:
        tat = max(self._next, now)
        new_tat = tat + cost * self.interval
        start = max(now, new_tat - self.burst * self.interval)
        self._next = new_tat
        return start - now

    def set_amount(self, amount: float) -> None:
        """Change the rate in place (a learned budget raised), keeping its reservations."""
        self.amount = amount
        self.interval = self.period / amount

    def push_back(self, until: float) -> None:
        self._fresh = None
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
        # A fresh client may spend its first minute's tokens at once (a 32k-token request is
        # not held for half a minute); after that, a burst of ten seconds' worth.
        self._tokens = (
            Rate(tokens_per_minute, 60.0, burst=tokens_per_minute / 6, fresh_window=True)
            if (tokens_per_minute)
            else None
        )
        self._paused_until = 0.0
        self.pauses = 0
        self._accepted: deque[float] = deque()  # requests the server took in the last minute
        self.learned_per_minute: float | None = None
        self._learned_at = 0.0  # when the learned budget last changed (or a 429 confirmed it)

    @property
    def limited(self) -> bool:
        return bool(self._requests or self._tokens)

    def reserve(
        self, tokens: int = 0, *, now: float | None = None, max_wait: float | None = None
    ) -> float:
        """Reserve one request of ``tokens`` tokens; returns the seconds to wait before sending.

        With ``max_wait``, a turn further off than that is not taken (nothing is reserved,
        so a request given up on spends no one's turn) and its wait is returned.
        """
        with self._lock:
            now = self._clock() if now is None else now
            rates = [*self._requests, *([self._tokens] if self._tokens and tokens else [])]
            saved = [(rate._next, rate._fresh) for rate in rates]
            wait = max(0.0, self._paused_until - now)
            start = now + wait
            for rate in self._requests:
                wait = max(wait, start - now + rate.reserve(start))
            if self._tokens is not None and tokens:
                wait = max(wait, start - now + self._tokens.reserve(start, float(tokens)))
            if max_wait is not None and wait > max_wait:
                for rate, (tat, fresh) in zip(rates, saved, strict=True):
                    rate._next, rate._fresh = tat, fresh
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
        Returns the pause in seconds (0 when nothing was learned). This is what makes an
        unconfigured client finish a job larger than its quota instead of exhausting its
        retries against it. Fewer than :data:`MIN_EVIDENCE` accepted requests teach nothing:
        the quota may be shared or spent by someone else, and the retry policy's own backoff
        is the pause then.
        """
        with self._lock:
            now = self._clock()
            recent = [t for t in self._accepted if t > now - _LEARN_WINDOW]
            if len(recent) < MIN_EVIDENCE:
                return 0.0
            budget = len(recent) * headroom
            if self.learned_per_minute is None or budget < self.learned_per_minute:
                self._set_learned(budget, now)
            else:
                self._learned_at = now  # confirmed: the next probe waits a clean minute again
            pause = min(recent) + _LEARN_WINDOW - now
        self.pause(pause)
        return pause

    def _set_learned(self, budget: float | None, now: float) -> None:
        # Called with the lock held.
        self.learned_per_minute = budget
        self._learned_at = now
        learned = next((r for r in self._requests if r.learned), None)
        if budget is None:
            self._requests = [r for r in self._requests if not r.learned]
        elif learned is not None:
            learned.set_amount(budget)
        else:
            rate = Rate(budget, _LEARN_WINDOW)
            rate.learned = True
            self._requests.append(rate)

    def recover(self, headers: Mapping[str, str] | None = None) -> None:
        """An accepted request: let a learned budget recover (see the module docstring).

        ``remaining`` (the first of the provider's remaining-quota headers whose name speaks of
        requests) plus what this client sent in the last minute is a floor of the server's
        budget: pace to it if it is higher; with room for a whole learned budget, the 429
        that taught it was passing (a shared burst), so forget it. Without such a header,
        probe: raise the budget by :data:`PROBE_FACTOR` after each minute with no 429 (a 429
        that confirms the budget restarts that minute; one that shows less lowers it).
        """
        if self.learned_per_minute is None:
            return
        remaining = _remaining_requests(headers, self._remaining_headers)
        with self._lock:
            learned = self.learned_per_minute
            if learned is None:
                return
            now = self._clock()
            before = learned
            if remaining is not None and remaining >= learned:
                self._set_learned(None, now)
            elif remaining is not None:
                recent = sum(1 for t in self._accepted if t > now - _LEARN_WINDOW)
                floor = (remaining + recent) * self._headroom
                if floor > learned:
                    self._set_learned(floor, now)
            elif now - self._learned_at >= _LEARN_WINDOW:
                self._set_learned(learned * PROBE_FACTOR, now)
            after = self.learned_per_minute
        if after != before:
            logger.info(
                "%s: the server has room again; pacing to %s.",
                self._name or "the provider",
                "the configured limits" if after is None else f"about {after:.0f} requests/min",
            )

    # ------------------------------------------------------------ Limiter

    async def acquire(self, tokens: int = 0, *, deadline_at: float | None = None) -> None:
        """Suspend the calling task until a request may be sent (never blocks the loop).

        A turn is reserved ahead; if a 429 paused the client while this one waited for it,
        the turn is given up and a new one taken after the pause.
        """
        while True:
            left = None if deadline_at is None else deadline_at - self._clock()
            delay = self.reserve(tokens, max_wait=left)
            if delay <= 0:
                return
            if left is not None and delay > left:
                raise LimiterDeadline(delay)
            await asyncio.sleep(delay)
            if self._clock() >= self._paused_until:
                return

    async def on_rate_limited(self, pause: float, headers: Mapping[str, str]) -> None:
        """Hold every request for ``pause`` s; learn the minute's budget if the headers say
        it is spent and no ``Retry-After`` was sent."""
        spent = any(headers.get(name, "").strip() == "0" for name in self._remaining_headers)
        told = "retry-after" in headers or "retry-after-ms" in headers
        if spent and not told:
            before = self.learned_per_minute
            held = self.learn_limit(self._headroom)
            if self.learned_per_minute is not None and self.learned_per_minute != before:
                logger.warning(
                    "%s: per-minute quota reached; pacing to about %.0f requests/min (pause %.1f s). "
                    "Set requests_per_minute= to avoid this.",
                    self._name or "the provider",
                    self.learned_per_minute or 0,
                    held,
                )
        self.pause(pause)

    def on_success(self, headers: Mapping[str, str] | None = None) -> None:
        self.accepted()
        self.recover(headers)


def _remaining_requests(headers: Mapping[str, str] | None, names: tuple[str, ...]) -> int | None:
    """What a remaining-requests header says is left of the window, if it says so plainly."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in names:
        if "request" in name.lower() and name.lower() in lowered:
            value = lowered[name.lower()].strip()
            return int(value) if value.isascii() and value.isdigit() and len(value) < 16 else None
    return None
