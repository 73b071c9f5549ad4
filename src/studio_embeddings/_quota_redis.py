"""One provider quota shared by every process and machine, through Redis (the ``redis`` extra).

Every worker that embeds with the same provider and folder / project asks one Redis server for
its turn, so 4 workers on one Yandex folder send 10 requests/s together, not 40. This is a second
implementation of the core's limiter interface (the engine does not know which one it has)::

    class Limiter(Protocol):
        async def acquire(self, tokens: int, *, deadline_at: float | None = None) -> None: ...
            # return when one request of ``tokens`` estimated input tokens may be sent now;
            # raise LimiterDeadline if that is later than ``deadline_at`` (time.monotonic()),
            # without sleeping past it (and without spending quota on a turn never taken)
        async def on_rate_limited(self, pause: float, headers: Mapping[str, str]) -> None: ...
            # a 429: hold every request sharing this quota for ``pause`` s; learn a per-minute
            # budget when the headers say it is spent (x-ratelimit-remaining-* == "0")
        def on_success(self, headers: Mapping[str, str] | None = None) -> None: ...  # no I/O
        def close(self) -> None: ...

Admission is GCRA "virtual scheduling", the algorithm of ``_pacing.Rate.reserve``: each request
reserves the next free slot of every rate and is told how long to wait. It runs as one Lua script
on the server, so reserving is atomic across processes, and it reads the server's clock
(``TIME``), so the clocks of different machines do not matter. Written by hand on purpose: the
established Redis-backed limiters answer "allowed or not" against windows (``limits``: ``hit`` /
``test`` / ``get_window_stats``; ``pyrate-limiter``'s Redis bucket: ``try_acquire`` that raises or
polls), while the engine needs a reservation with a wait, for several rates and a shared pause,
decided in one atomic step.

What is shared: the request rates (per second, per minute, and a learned per-minute budget), the
token rate, the pause after a 429, and the count of accepted requests the budget is learned from.
What is not: ``max_concurrency`` (per process). Keys live under ``studio-embeddings:{scope}:``
(the braces are literal: a Redis Cluster hash tag, so one script's keys share a slot) and expire
when idle. Nothing secret is written: the scope names a folder, a project, or a short digest of a
key (:func:`quota_scope`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from studio_embeddings._pacing import MIN_EVIDENCE, LimiterDeadline
from studio_embeddings.errors import ConfigurationError, QuotaStoreError

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised in a test by hiding redis
    msg = "A shared quota store needs redis-py: pip install 'studio-embeddings[redis]'"
    raise ImportError(msg) from exc

__all__ = ["RedisLimiter", "mask_url", "quota_scope"]

logger = logging.getLogger("studio_embeddings")

_SCHEMES = ("redis", "rediss", "unix")
_PREFIX = "studio-embeddings"
_LEARN_WINDOW = 60.0  # seconds over which a per-minute budget is counted (as in _pacing)
_LEARNED_TTL = 900  # a learned budget is kept for Nebius's 15-minute judging window, then relearned
_RETRY_FIRST, _RETRY_MAX = 0.05, 1.0  # reconnect backoff while the store is away (seconds)
_PAUSE_TRIES = 3  # on_rate_limited: attempts before giving up with a warning


# The store is away (down, restarting, loading, failing over): wait for it. Other errors are bugs
# or settings (a missing permission, a script error) and surface as QuotaStoreError at once.
_AWAY = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError)


def mask_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` query) shown as ``****``.

    Example:
        >>> mask_url("redis://:s3cret@cache:6379/0")
        'redis://:****@cache:6379/0'
        >>> mask_url("unix:///run/redis.sock?db=1&password=s3cret")
        'unix:///run/redis.sock?db=1&password=****'
    """
    if "://" not in url:  # not a URL at all: mask what looks like ``user:password@``
        return re.sub(r"(?<=:)[^:@/]*(?=@)", "****", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unparsable URL>"
    masked = url
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        user, sep, _ = userinfo.partition(":")
        masked = masked.replace(parts.netloc, f"{user}:****@{host}" if sep else f"****@{host}", 1)
    if parts.query:
        pairs = parts.query.split("&")
        query = "&".join("password=****" if p.startswith("password=") else p for p in pairs)
        masked = masked.replace(f"?{parts.query}", f"?{query}", 1)
    return masked


def quota_scope(provider_name: str, project: str | None, api_key: str | None) -> str:
    """The name of the quota that every worker with this provider and folder / project shares.

    Without a project id, a key's quota is its project's, so a short SHA-256 digest of the key
    names it: the key itself never reaches the store.

    Example:
        >>> quota_scope("yandex", "b1gfolder", None)
        'yandex:b1gfolder'
        >>> quota_scope("nebius", None, "key")[:11]
        'nebius:key-'
    """
    if project:
        return f"{provider_name}:{project}"
    if api_key:
        return f"{provider_name}:key-{hashlib.sha256(api_key.encode()).hexdigest()[:16]}"
    msg = (
        f"A shared quota for {provider_name} needs a project / folder id or an API key to name it."
    )
    raise ConfigurationError(msg)


# Shared by both scripts: the server's clock, and the count of accepted requests in 5-second
# buckets of one hash (fields older than the learning window are dropped as buckets open).
_LUA_COMMON = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local bucket = math.floor(now / 5)
local accepted = tonumber(ARGV[2])
if accepted > 0 then
  if redis.call('HINCRBY', KEYS[3], bucket, accepted) == accepted then
    for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
      if tonumber(f) <= bucket - 12 then redis.call('HDEL', KEYS[3], f) end
    end
  end
  redis.call('EXPIRE', KEYS[3], 120)
end
"""

# KEYS: pause, learned, accepted, then one slot (TAT) key per rate in ARGV and one for the learned
# rate. ARGV: max_wait (-1: none), accepted, then interval, burst, cost per rate.
# Returns {admitted, wait}: a turn later than max_wait is refused and reserves nothing.
_LUA_ADMIT = (
    _LUA_COMMON
    + """
local start = math.max(now, tonumber(redis.call('GET', KEYS[1]) or 0))
local wait = start - now
local rates = {}
for i = 3, #ARGV, 3 do
  rates[#rates + 1] = {tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])}
end
local learned = tonumber(redis.call('GET', KEYS[2]) or 0)
if learned > 0 then rates[#rates + 1] = {60 / learned, 1, 1} end
local slots = {}
for i, r in ipairs(rates) do
  if r[3] > 0 then
    local tat = math.max(tonumber(redis.call('GET', KEYS[3 + i]) or 0), start)
    local new_tat = tat + r[3] * r[1]
    wait = math.max(wait, math.max(start, new_tat - r[2] * r[1]) - now)
    slots[#slots + 1] = {KEYS[3 + i], new_tat}
  end
end
local max_wait = tonumber(ARGV[1])
if max_wait >= 0 and wait > max_wait then return {0, tostring(wait)} end
for _, s in ipairs(slots) do
  local ttl = math.ceil((s[2] - now) * 1000) + 1000
  redis.call('SET', s[1], string.format('%.6f', s[2]), 'PX', ttl)
end
return {1, tostring(wait)}
"""
)

# KEYS: pause, learned, accepted. ARGV: pause, accepted, learn (0/1), headroom, learned TTL,
# the fewest accepted requests a budget is learned from (as in-process: _pacing.MIN_EVIDENCE).
# Returns {learned budget or '', hold}: holds everyone until now + hold (never shortens a hold).
_LUA_PAUSE = (
    _LUA_COMMON
    + """
local hold = tonumber(ARGV[1])
local learned = ''
if ARGV[3] == '1' then
  local count, oldest = 0, nil
  local h = redis.call('HGETALL', KEYS[3])
  for i = 1, #h, 2 do
    local b = tonumber(h[i])
    if b > bucket - 12 then
      count = count + tonumber(h[i + 1])
      if oldest == nil or b < oldest then oldest = b end
    end
  end
  local budget = count * tonumber(ARGV[4])
  local current = tonumber(redis.call('GET', KEYS[2]) or 0)
  if count >= tonumber(ARGV[6]) then
    if current == 0 or budget < current then
      redis.call('SET', KEYS[2], tostring(budget), 'EX', tonumber(ARGV[5]))
      learned = tostring(budget)
    end
    -- as in-process: hold until the oldest accepted request leaves the server's minute
    hold = math.max(hold, oldest and (oldest * 5 + 60 - now) or 1)
  end
end
local until_ = now + hold
if until_ > tonumber(redis.call('GET', KEYS[1]) or 0) then
  redis.call('SET', KEYS[1], string.format('%.6f', until_), 'PX', math.ceil(hold * 1000) + 1000)
end
return {learned, tostring(hold)}
"""
)

# KEYS: pause. Returns how long (seconds, by the server's clock) a 429 still holds the scope.
_LUA_HELD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return tostring(math.max(0, tonumber(redis.call('GET', KEYS[1]) or 0) - now))
"""


class RedisLimiter:
    """Paces requests to a quota shared through Redis by every process that uses ``scope``.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` or
            ``unix:///path/to/socket?db=0``.
        scope: what shares the quota (:func:`quota_scope`), e.g. ``yandex:<folder>``.
        requests_per_second: the quota's requests a second (None: none).
        requests_per_minute: the quota's requests a minute, paced evenly (None: none).
        tokens_per_minute: the quota's input tokens a minute, a sixth of it as burst (None: none).
        headroom: the share of each quota (and of a learned budget) paced to.

    The rates are the provider's figures; ``headroom`` is applied here.
    """

    def __init__(
        self,
        url: str,
        scope: str,
        *,
        requests_per_second: float | None,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        headroom: float = 0.97,
        remaining_headers: tuple[str, ...] = (
            "x-ratelimit-remaining-requests",
            "x-ratelimit-remaining-tokens",
        ),
    ) -> None:
        masked = mask_url(url)
        try:
            scheme = urlsplit(url).scheme if "://" in url else ""
        except ValueError:
            scheme = ""
        if scheme not in _SCHEMES:
            msg = f"quota_store must be a redis://, rediss:// or unix:// URL; got {masked!r}."
            raise ConfigurationError(msg)
        try:
            redis.ConnectionPool.from_url(url)  # parses only: no connection is made
        except (ValueError, TypeError) as exc:
            text = _scrub(str(exc), url)
            msg = f"quota_store {masked!r} is not a valid Redis URL: {text}"
            raise ConfigurationError(msg) from None
        if not scope or any(c in scope for c in "{} \t\n"):
            msg = f"A quota scope must be a non-empty name without braces or spaces; got {scope!r}."
            raise ConfigurationError(msg)
        rates = (requests_per_second, requests_per_minute, tokens_per_minute)
        if any(rate is not None and rate < 0 for rate in rates):
            msg = f"Quota rates must be positive (or None); got {rates}."
            raise ConfigurationError(msg)
        if not 0 < headroom <= 1:
            msg = f"headroom must be in (0, 1]; got {headroom}."
            raise ConfigurationError(msg)
        self._url = url
        self.scope = scope
        self.remaining_headers = remaining_headers  # the provider's "what is left" headers
        self.headroom = headroom
        # (interval in seconds per unit, burst in units, name, counts tokens)
        self._rates: list[tuple[float, float, str, bool]] = []
        for amount, period, name in (
            (requests_per_second, 1.0, "rps"),
            (requests_per_minute, 60.0, "rpm"),
        ):
            if amount:
                self._rates.append((period / (amount * headroom), 1.0, name, False))
        if tokens_per_minute:
            budget = tokens_per_minute * headroom
            self._rates.append((60.0 / budget, max(1.0, budget / 6), "tpm", True))
        self.learned_per_minute: float | None = None
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._admit: Any = None
        self._pause: Any = None
        self._held: Any = None
        self._connected = False  # the store answered once: from then on, outages are waited out
        self._accepted = 0  # accepted requests not yet reported to the store

    def __repr__(self) -> str:  # str() is repr() too: both mask the password
        return f"RedisLimiter({mask_url(self._url)!r}, scope={self.scope!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_lock", "_client", "_admit", "_pause", "_held", "_connected", "_accepted"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    # The sync client, called through asyncio.to_thread: the engine drives one limiter from
    # several event loops (and threads), and an asyncio Redis client is bound to the loop it was
    # made on, while redis-py's sync pool is thread-safe and resets itself in a forked child.
    # The thread hop costs far less than the provider's round trip it paces.
    def _redis(self) -> tuple[Any, Any]:
        with self._lock:
            if self._client is None:
                client = redis.Redis.from_url(
                    self._url,
                    socket_connect_timeout=2.0,
                    socket_timeout=5.0,
                    retry=Retry(NoBackoff(), 0),  # one retry layer: ours, bounded by the deadline
                    decode_responses=True,
                )
                self._admit = client.register_script(_LUA_ADMIT)  # EVALSHA, loaded on NOSCRIPT
                self._pause = client.register_script(_LUA_PAUSE)
                self._held = client.register_script(_LUA_HELD)
                self._client = client
            return self._admit, self._pause

    def _key(self, name: str) -> str:
        return f"{_PREFIX}:{{{self.scope}}}:{name}"

    def _call(self, which: str, keys: list[str], args: list[Any]) -> list[str]:
        """Run one script; it reports the accepted requests counted here (kept if it fails)."""
        admit, pause = self._redis()
        with self._lock:
            accepted, self._accepted = self._accepted, 0
        try:
            script = admit if which == "admit" else pause
            result: list[str] = script(keys=keys, args=[args[0], accepted, *args[1:]])
        except Exception:
            with self._lock:
                self._accepted += accepted
            raise
        self._connected = True
        return result

    def _reserve(self, tokens: int, max_wait: float) -> tuple[bool, float]:
        keys = [self._key("pause"), self._key("learned"), self._key("accepted")]
        args: list[Any] = [max_wait]
        for interval, burst, name, is_tokens in self._rates:
            keys.append(self._key(f"slot:{name}"))
            args += [repr(interval), repr(burst), (max(tokens, 0) if is_tokens else 1)]
        keys.append(self._key("slot:learned"))
        admitted, wait = self._call("admit", keys, args)
        return bool(int(admitted)), float(wait)

    def _held_for(self) -> float:
        self._redis()
        return float(self._held(keys=[self._key("pause")]))

    def _error(self, exc: Exception, doing: str) -> QuotaStoreError:
        msg = (
            f"The shared quota store {mask_url(self._url)} {doing}: "
            f"{type(exc).__name__}: {_scrub(str(exc), self._url)}. Check that Redis runs there "
            "and the URL (host, port, password, TLS) is right, or unset quota_store."
        )
        return QuotaStoreError(msg)

    async def acquire(self, tokens: int, *, deadline_at: float | None = None) -> None:
        """Wait for this request's turn in the shared quota (see the module docstring)."""
        backoff = _RETRY_FIRST
        while True:
            left = math.inf if deadline_at is None else deadline_at - time.monotonic()
            if left < 0:
                raise LimiterDeadline
            try:
                admitted, wait = await asyncio.to_thread(
                    self._reserve, tokens, -1 if left == math.inf else left
                )
            except _AWAY as exc:
                if not self._connected:
                    raise self._error(exc, "cannot be reached") from None
                # Away mid-run: wait for it. Pacing unshared would overshoot the quota N times.
                logger.debug("quota store %s away, retrying: %s", mask_url(self._url), exc)
                await asyncio.sleep(min(backoff, max(left, 0.0)))  # a last try at the deadline
                backoff = min(backoff * 2, _RETRY_MAX)
                continue
            except redis.RedisError as exc:
                raise self._error(exc, "refused the request") from None
            if not admitted:
                raise LimiterDeadline
            if wait <= 0:
                return
            await asyncio.sleep(wait)
            # A turn is reserved ahead (up to max_concurrency x processes turns): a 429 that
            # came while this one waited must hold it too. Its slot is forfeited; ask again.
            try:
                held = await asyncio.to_thread(self._held_for)
            except _AWAY:
                # The store went away after this turn was granted: no pause can have been
                # recorded since, and the turn keeps the schedule it was granted in (taking a
                # fresh one from an emptied store would bunch it onto the last second's).
                return
            except redis.RedisError as exc:
                raise self._error(exc, "refused the request") from None
            if held <= 0:
                return

    async def on_rate_limited(self, pause: float, headers: Mapping[str, str]) -> None:
        """Hold every worker of this scope ``pause`` s; learn a spent per-minute budget."""
        lowered = {k.lower(): v.strip() for k, v in headers.items()}
        learn = "retry-after" not in lowered and "retry-after-ms" not in lowered
        learn = learn and any(
            lowered.get(name.lower(), "").strip() == "0" for name in self.remaining_headers
        )
        keys = [self._key("pause"), self._key("learned"), self._key("accepted")]
        args = [repr(max(pause, 0.0)), int(learn), repr(self.headroom), _LEARNED_TTL, MIN_EVIDENCE]
        for attempt in range(_PAUSE_TRIES):
            try:
                learned, hold = await asyncio.to_thread(self._call, "pause", keys, args)
            except redis.RedisError as exc:
                if attempt + 1 < _PAUSE_TRIES and isinstance(exc, _AWAY):
                    await asyncio.sleep(_RETRY_FIRST * 4**attempt)
                    continue
                logger.warning("%s; this 429's pause is not shared.", self._error(exc, "failed"))
                return
            if learned:
                self.learned_per_minute = float(learned)
                logger.warning(
                    "%s: per-minute quota reached; every worker now paces to about %.0f "
                    "requests/min (pause %.1f s). Set requests_per_minute= to avoid this.",
                    self.scope,
                    self.learned_per_minute,
                    float(hold),
                )
            return

    def on_success(self, headers: Mapping[str, str] | None = None) -> None:
        """Count an accepted request; the next call to the store reports it (for learning)."""
        with self._lock:
            self._accepted += 1

    def close(self) -> None:
        """Close the connections (the limiter reconnects if used again)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL's password, wherever a library may have echoed it."""
    try:
        parts = urlsplit(url)
        secrets = [parts.password or ""]
        secrets += [v for k, v in parse_qsl(parts.query) if k == "password"]
        secrets += [unquote(s) for s in secrets]
    except ValueError:
        return "(details withheld: the URL cannot be parsed)"
    for secret in filter(None, secrets):
        text = text.replace(secret, "****")
    return text.replace(url, mask_url(url))
