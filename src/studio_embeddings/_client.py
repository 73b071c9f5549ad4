"""The core: resolve settings, build openai clients, batch, pace, fan out, retry, decode, check.

Both framework shells (``langchain.py``, ``llama_index.py``) and the CLI call
:class:`EmbeddingsClient`; nothing here knows which provider it talks to beyond the
:class:`~studio_embeddings.providers.Provider` data it was given.

One call flows as: validate the texts -> pick the model for the side (``kind``) and apply the
query instruction -> split into requests of at most ``batch_size`` texts -> for each request,
wait for the pacer, send it with ``encoding_format`` explicit and the project id where the
provider wants it, retry per the policy -> decode (base64 or float) without the SDK's per-float
models -> place each vector by its ``index`` -> check one vector per input, all of one length.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import json
import logging
import os
import re
import threading
import time
import weakref
from array import array
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal, Union, cast
from urllib.parse import urlsplit

import openai
from pybase64 import b64decode
from tenacity import RetryCallState

from studio_embeddings import _loop
from studio_embeddings._pacing import Pacer
from studio_embeddings._retry import RETRYABLE_STATUSES, RetryPolicy, TransientError
from studio_embeddings.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectionFailedError,
    DeadlineExceededError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    QuotaExhaustedError,
    RateLimitError,
    ResponseError,
    ServerError,
    StudioEmbeddingsError,
)
from studio_embeddings.providers import EncodingFormat, Provider, get_provider

__all__ = ["EmbedResult", "EmbeddingsClient", "Kind", "SecretLike", "TokenProvider"]

logger = logging.getLogger("studio_embeddings")

Kind = Literal["document", "query"]
TokenProvider = Callable[[], str]
SecretLike = Union[str, "SecretValue", TokenProvider, Any]

#: Per-request timeout when the user gives none (the openai client's own default is 600 s).
DEFAULT_TIMEOUT = 60.0
#: A cached token from a callable is fetched again after this many seconds even without a 401.
TOKEN_REFRESH_SECONDS = 600.0

_LOOPBACK_HOSTS = frozenset({"localhost", "localhost.localdomain"})
_PROJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class SecretValue:
    """A string that never shows itself in ``repr``/``str``; ``get_secret_value()`` reveals it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretValue('**********')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return (SecretValue, (self._value,))


def _reveal(value: Any) -> str | None:
    """Unwrap a str, a SecretValue or a pydantic SecretStr; None stays None."""
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    if getter is not None:
        return cast(str, getter())
    if isinstance(value, str):
        return value
    msg = f"Expected a string or SecretStr, got {type(value).__name__}."
    raise TypeError(msg)


class _Credential:
    """The ``Authorization`` header value, possibly from a refreshable token callable."""

    def __init__(self, scheme: str, secret: SecretValue | None, source: TokenProvider | None):
        self.scheme = scheme
        self._secret = secret
        self._source = source
        self._lock = threading.Lock()
        self._fetched_at = 0.0

    @property
    def refreshable(self) -> bool:
        return self._source is not None

    @property
    def needs_fetch(self) -> bool:
        """True when :meth:`header` would call the token callable (which may do I/O)."""
        if self._source is None:
            return False
        return self._secret is None or time.monotonic() - self._fetched_at > TOKEN_REFRESH_SECONDS

    def header(self) -> str:
        if self._source is not None:
            with self._lock:
                if self.needs_fetch:
                    self._fetch()
        assert self._secret is not None
        return f"{self.scheme} {self._secret.get_secret_value()}"

    def refresh(self, rejected: str | None = None) -> None:
        """Fetch a new token, unless another request already replaced the ``rejected`` one."""
        with self._lock:
            current = f"{self.scheme} {self._secret.get_secret_value()}" if self._secret else None
            if rejected is None or rejected == current:
                self._fetch()

    def _fetch(self) -> None:
        assert self._source is not None
        token = _reveal(self._source())
        if not token or not token.strip():
            msg = "The IAM token callable returned an empty token."
            raise ConfigurationError(msg)
        self._secret = SecretValue(token.strip())
        self._fetched_at = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        # A token from a callable is short-lived: do not carry it across a pickle.
        return {
            "scheme": self.scheme,
            "_secret": None if self._source is not None else self._secret,
            "_source": self._source,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["scheme"], state["_secret"], state["_source"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"_Credential(scheme={self.scheme!r}, secret='**********')"


@dataclass
class EmbedResult:
    """Vectors of one call, in input order, with what the provider reported."""

    vectors: list[list[float]]
    total_tokens: int = 0
    requests: int = 0
    retries: int = 0
    model: str = ""


@dataclass
class _Batch:
    start: int
    texts: list[str]
    tokens: int


@dataclass
class _CallState:
    """What the requests of one call share."""

    total: int
    model: str
    deadline_at: float | None
    out: list[list[float] | None]
    progress: Any = None
    tokens: int = 0
    requests: int = 0
    retries: int = 0
    dims: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    failed: threading.Event = field(default_factory=threading.Event)


def _env(name: str | None) -> str | None:
    if not name:
        return None
    value = os.environ.get(name)
    return value if value and value.strip() else None


def _first_env(names: Sequence[str]) -> str | None:
    for name in names:
        value = _env(name)
        if value is not None:
            return value
    return None


def _check_positive_int(name: str, value: int | None, upper: int | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name} must be a whole number of at least 1, got {value!r}."
        raise ConfigurationError(msg)
    if upper is not None and value > upper:
        msg = f"{name} must be at most {upper}, got {value}."
        raise ConfigurationError(msg)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class EmbeddingsClient:
    """The provider-neutral embedding engine behind every class of this package.

    Settings resolve in one order: the argument, then the provider's environment variable
    (``NEBIUS_API_KEY``, ``YC_FOLDER_ID``, ...), then the provider's default. ``OPENAI_*``
    variables are never read: every value reaches the openai client explicitly.

    Args:
        provider: ``"nebius"``, ``"yandex"`` or a :class:`~studio_embeddings.providers.Provider`.
        api_key: API key (str or SecretStr); falls back to the provider's key variables.
        iam_token: short-lived token (Yandex IAM), a str or a callable returning a fresh one;
            used when no API key is given. Falls back to the provider's token variable.
        base_url: service root ending in ``/v1``; falls back to the provider's variable.
        project: project id (Nebius ``ai_project_id``, Yandex folder id).
        model: document-side model (Nebius: both sides).
        query_model: query-side model; defaults to the provider's (Yandex
            ``text-search-query``) or to ``model``.
        model_version: version in the model URI where the provider has one (Yandex).
        dimensions: requested output length (Matryoshka models only).
        encoding_format: ``"float"`` or ``"base64"``; only what the provider accepts.
        batch_size: texts per request, capped by the provider's maximum.
        max_concurrency: requests in flight at once.
        timeout: seconds one request may take.
        max_retries: retries of a failed request (at most ``max_retries + 1`` attempts).
        deadline: seconds one call (all its requests and retries) may take; None: unbounded.
        requests_per_second / requests_per_minute / tokens_per_minute: client-side quota.
        service_tier: provider tier (Nebius ``auto``, ``default``, ``flex``).
        query_instruction: task put into the query model's template; None for the model's
            default, ``""`` to send queries as they are.
        user: end-user id sent as ``user``.
        data_logging: False sends the provider's "do not log" header.
        default_headers: extra headers on every request.
        http_client / http_async_client: httpx (openai 2.x) or httpx2 (openai 3.x) clients.
        show_progress_bar: a tqdm bar over the texts of a call.
        retry_policy: a full :class:`~studio_embeddings._retry.RetryPolicy` (overrides
            ``max_retries``).
        allow_insecure_http: allow sending credentials over ``http://`` to a non-loopback host.

    Example:
        >>> from studio_embeddings.emulator import Emulator
        >>> with Emulator() as emu:
        ...     client = EmbeddingsClient("nebius", api_key="k", base_url=emu.base_url("nebius"))
        ...     len(client.embed(["hello", "world"], kind="document"))
        2
    """

    def __init__(
        self,
        provider: str | Provider = "nebius",
        *,
        api_key: Any = None,
        iam_token: Any = None,
        base_url: str | None = None,
        project: str | None = None,
        model: str | None = None,
        query_model: str | None = None,
        model_version: str | None = None,
        dimensions: int | None = None,
        encoding_format: EncodingFormat | None = None,
        batch_size: int | None = None,
        max_concurrency: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        deadline: float | None = None,
        requests_per_second: float | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        service_tier: str | None = None,
        query_instruction: str | None = None,
        user: str | None = None,
        data_logging: bool | None = None,
        default_headers: Mapping[str, str] | None = None,
        http_client: Any = None,
        http_async_client: Any = None,
        show_progress_bar: bool = False,
        retry_policy: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        p = self.provider = get_provider(provider)

        # Credentials: the arguments (key, then token), then the provider variables (key, then
        # token); never OPENAI_API_KEY.
        key = _reveal(api_key)
        token_source: TokenProvider | None = None
        token: str | None = None
        if not key and iam_token is not None:
            if callable(iam_token) and not hasattr(iam_token, "get_secret_value"):
                token_source = cast(TokenProvider, iam_token)
            else:
                token = _reveal(iam_token)
        if not key and not token and token_source is None:
            key = _first_env(p.api_key_envs)
            token = None if key else _env(p.token_env)
        if key:
            self._credential = _Credential(p.api_key_scheme, SecretValue(key.strip()), None)
        elif token or token_source:
            secret = SecretValue(token.strip()) if token else None
            self._credential = _Credential(p.token_scheme, secret, token_source)
        else:
            names = " or ".join(p.api_key_envs + ((p.token_env,) if p.token_env else ()))
            token_hint = " (or iam_token=)" if p.token_env else ""
            msg = f"{p.display_name} needs an API key: pass api_key={token_hint} or set {names}."
            raise ConfigurationError(msg)

        self.base_url = (base_url or _env(p.base_url_env) or p.base_url).rstrip("/") + "/"
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"base_url must be an http(s) URL such as {p.base_url!r}, got {self.base_url!r}."
            raise ConfigurationError(msg)
        if parts.scheme == "http" and not _is_loopback(parts.hostname) and not allow_insecure_http:
            msg = (
                f"Refusing to send {p.display_name} credentials over plain http to "
                f"{parts.hostname}: use https, or pass allow_insecure_http=True if you mean it."
            )
            raise ConfigurationError(msg)

        self.project = project or _env(p.project_env)
        if self.project is not None:
            self.project = self.project.strip()
            if not _PROJECT_RE.fullmatch(self.project):
                msg = (
                    f"{p.project_param}={self.project!r} is not a valid {p.display_name} id: "
                    "use letters, digits, '-', '_' or '.', with no '/' or spaces."
                )
                raise ConfigurationError(msg)
        if p.project_required and not self.project:
            env_hint = f" or set {p.project_env}" if p.project_env else ""
            msg = f"{p.display_name} needs a {p.project_param.replace('_', ' ')}: pass {p.project_param}={env_hint}."
            raise ConfigurationError(msg)

        self.model = model or p.default_doc_model
        if not self.model:
            msg = f"{p.display_name} has no default model: pass model=."
            raise ConfigurationError(msg)
        self.query_model = query_model or p.default_query_model or self.model
        p.check_model_pair(self.model, self.query_model)
        self.model_version = model_version or p.default_model_version
        if p.model_versions and self.model_version not in p.model_versions:
            msg = f"model_version must be one of {list(p.model_versions)}, got {self.model_version!r}."
            raise ConfigurationError(msg)

        self.encoding_format: EncodingFormat = encoding_format or p.default_encoding
        if self.encoding_format not in p.encodings:
            msg = (
                f"{p.display_name} accepts encoding_format in {list(p.encodings)} only, "
                f"got {self.encoding_format!r}."
            )
            raise ConfigurationError(msg)

        self.dimensions = dimensions
        if dimensions is not None:
            _check_positive_int("dimensions", dimensions)
            for m in {self.model, self.query_model}:
                self._check_dimensions(m, dimensions)

        _check_positive_int("batch_size", batch_size)
        self.batch_size = min(batch_size or p.default_batch_size, p.max_inputs_per_request)
        _check_positive_int("max_concurrency", max_concurrency)
        self.max_concurrency = max_concurrency or p.default_max_concurrency

        if timeout is not None and timeout <= 0:
            msg = f"timeout must be a positive number of seconds, got {timeout!r}."
            raise ConfigurationError(msg)
        self.timeout = float(timeout) if timeout is not None else DEFAULT_TIMEOUT
        if deadline is not None and deadline <= 0:
            msg = f"deadline must be a positive number of seconds, got {deadline!r}."
            raise ConfigurationError(msg)
        self.deadline = deadline

        if retry_policy is None:
            retry_policy = (
                RetryPolicy() if max_retries is None else RetryPolicy(max_retries=max_retries)
            )
        elif max_retries is not None and max_retries != retry_policy.max_retries:
            retry_policy = RetryPolicy(**{**retry_policy.__dict__, "max_retries": max_retries})
        self.retry_policy = retry_policy

        for name, value in (
            ("requests_per_second", requests_per_second),
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            if value is not None and value < 0:
                msg = f"{name} must be positive, or 0 for no limit; got {value!r}."
                raise ConfigurationError(msg)
        self.requests_per_second = (
            p.requests_per_second if requests_per_second is None else requests_per_second
        )
        self.requests_per_minute = (
            p.requests_per_minute if requests_per_minute is None else requests_per_minute
        )
        self.tokens_per_minute = (
            p.tokens_per_minute if tokens_per_minute is None else tokens_per_minute
        )

        if service_tier is not None and service_tier not in p.service_tiers:
            allowed = list(p.service_tiers) or "none (this provider has no tiers)"
            msg = f"service_tier must be one of {allowed}, got {service_tier!r}."
            raise ConfigurationError(msg)
        self.service_tier = service_tier
        self.query_instruction = query_instruction
        self.user = user
        self.data_logging = data_logging
        self.default_headers = dict(default_headers or {})
        for name in self.default_headers:
            if name.lower() == "authorization":
                msg = "default_headers must not set Authorization: pass api_key= instead."
                raise ConfigurationError(msg)
        self.http_client = http_client
        self.http_async_client = http_async_client
        self.show_progress_bar = show_progress_bar
        self._init_runtime()

    # ------------------------------------------------------------------ state

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._sync_client: openai.OpenAI | None = None
        # One async client per event loop: an httpx pool is bound to the loop it was used on.
        self._async_clients: dict[int, _AsyncEntry] = {}
        headroom = self.provider.pacing_headroom
        self.pacer = Pacer(
            requests_per_second=(self.requests_per_second or 0) * headroom or None,
            requests_per_minute=(self.requests_per_minute or 0) * headroom or None,
            tokens_per_minute=(self.tokens_per_minute or 0) * headroom or None,
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_lock", "_sync_client", "_async_clients", "pacer"):
            state.pop(name, None)
        if self.http_client is not None or self.http_async_client is not None:
            # Live connection pools cannot cross a pickle; the copy builds its own.
            state["http_client"] = state["http_async_client"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def __repr__(self) -> str:
        return (
            f"EmbeddingsClient(provider={self.provider.name!r}, base_url={self.base_url!r}, "
            f"model={self.model!r}, project={self.project!r})"
        )

    def _check_dimensions(self, model: str, dimensions: int) -> None:
        p = self.provider
        name = model.split("/")[-2] if "://" in model and model.count("/") >= 3 else model
        allowed = p.dimension_ranges.get(name)
        native = p.model_dimensions.get(name)
        if allowed is not None:
            low, high = allowed
            if not low <= dimensions <= high:
                msg = f"dimensions for {name} must be between {low} and {high}, got {dimensions}."
                raise ConfigurationError(msg)
        elif native is not None and dimensions != native:
            msg = (
                f"{name} returns {native}-dimensional vectors and cannot change that: "
                f"leave dimensions unset (got {dimensions})."
            )
            raise ConfigurationError(msg)

    # ----------------------------------------------------------- openai side

    def _client_kwargs(self) -> dict[str, Any]:
        p = self.provider
        # Omit() removes headers the openai client would add from OPENAI_ORG_ID,
        # OPENAI_PROJECT_ID or OPENAI_CUSTOM_HEADERS: nothing of a user's OpenAI set-up
        # may reach another provider.
        headers: dict[str, Any] = {
            "OpenAI-Organization": openai.Omit(),
            "OpenAI-Project": openai.Omit(),
        }
        for line in (os.environ.get("OPENAI_CUSTOM_HEADERS") or "").splitlines():
            name = line.partition(":")[0].strip()
            if name:
                headers[name] = openai.Omit()
        if p.project_header and self.project:
            headers[p.project_header] = self.project
        if p.data_logging_header and self.data_logging is not None:
            headers[p.data_logging_header] = "true" if self.data_logging else "false"
        headers.update(self.default_headers)
        query = (
            {p.project_query_param: self.project}
            if p.project_query_param and self.project
            else None
        )
        return {
            # The real credential goes per request (it may be a refreshed token); this
            # placeholder only keeps the SDK from reading OPENAI_API_KEY.
            "api_key": "studio-embeddings-per-request-auth",
            "organization": None,
            "project": None,
            "base_url": self.base_url,
            "timeout": self.timeout,
            "max_retries": 0,
            "default_headers": headers,
            "default_query": query,
        }

    def sync_client(self) -> openai.OpenAI:
        """The cached sync openai client (built on first use)."""
        if self._sync_client is None:
            with self._lock:
                if self._sync_client is None:
                    kwargs = self._client_kwargs()
                    if self.http_client is not None:
                        kwargs["http_client"] = self.http_client
                    self._sync_client = openai.OpenAI(**kwargs)
        return self._sync_client

    def _async_entry(self, loop: asyncio.AbstractEventLoop) -> _AsyncEntry:
        """The async openai client bound to ``loop``; built on first use, in any thread."""
        pid = os.getpid()
        with self._lock:
            for key, old in list(self._async_clients.items()):
                old_loop = old.loop()
                if old_loop is None or old_loop.is_closed() or old.pid != pid:
                    del self._async_clients[key]  # a finished loop, or the parent's before fork
                    if old.finalizer is not None:
                        old.finalizer.detach()
            entry = self._async_clients.get(id(loop))
            if entry is not None and entry.loop() is loop:
                return entry
        # Built outside the lock (and, for sync calls, in the caller's thread rather than on
        # the package loop): an httpx client takes ~15 ms to build, most of it its SSL context.
        kwargs = self._client_kwargs()
        if self.http_async_client is not None:
            kwargs["http_client"] = self.http_async_client
        client = openai.AsyncOpenAI(**kwargs)
        owned = self.http_async_client is None  # a user's own http client stays open
        entry = _AsyncEntry(weakref.ref(loop), client, _close_with_loop(client) if owned else None)
        with self._lock:
            raced = self._async_clients.get(id(loop))
            if raced is not None and raced.loop() is loop:
                return raced  # another thread built one first; ours never sent anything
            self._async_clients[id(loop)] = entry
        if owned:
            # Dropped without close(), this client would be garbage with its connections, and
            # the garbage collector would close their sockets in whatever thread it runs in,
            # behind the loop's back (the loop then watched reused file descriptors and the
            # next requests hung until their timeout). The finalizer holds the connections and
            # closes them on their own loop instead.
            entry.finalizer = weakref.finalize(self, _close_on_loop, entry.loop, client)
            entry.finalizer.atexit = False  # at exit the loops close their clients themselves
        return entry

    async def async_client(self) -> openai.AsyncOpenAI:
        """The async openai client of the running event loop (one per loop, cached).

        An httpx pool belongs to the loop it was used on, so each loop gets its own client,
        closed on that loop when the loop shuts down (``asyncio.run`` finalizes async
        generators before closing the loop: a small one here holds the client until then).
        """
        entry = self._async_entry(asyncio.get_running_loop())
        if entry.closer is not None and not entry.started:
            entry.started = True  # no await in between: one start per loop
            await entry.closer.__anext__()
        return entry.client

    def close(self) -> None:
        """Close the connections of sync calls (those of async calls close with their loop)."""
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None
        loop = _loop.current()
        if loop is None or _loop.in_loop_thread():
            return
        with self._lock:
            entry = self._async_clients.pop(id(loop), None)
        if entry is not None and entry.finalizer is not None:
            entry.finalizer.detach()
        if entry is not None and entry.loop() is loop:
            if entry.closer is not None and entry.started:
                _loop.run(entry.closer.aclose())  # the generator's exit closes the client
            elif entry.closer is not None:
                _loop.run(entry.client.close())

    # -------------------------------------------------------------- planning

    def model_for(self, kind: Kind) -> str:
        """The wire ``model`` value for documents or queries."""
        name = self.query_model if kind == "query" else self.model
        return self.provider.wire_model(name, project=self.project, version=self.model_version)

    def prepare(self, texts: Sequence[str], kind: Kind) -> list[str]:
        """Validate ``texts`` and apply the query instruction; nothing is altered otherwise."""
        if kind not in ("document", "query"):
            msg = f"kind must be 'document' or 'query', got {kind!r}."
            raise ValueError(msg)
        if isinstance(texts, (str, bytes)):
            msg = "texts must be a list of strings, not a single string: wrap it in a list."
            raise TypeError(msg)
        out = list(texts)
        for i, text in enumerate(out):
            if not isinstance(text, str):
                msg = f"texts[{i}] is {type(text).__name__}, not str: every text must be a string."
                raise TypeError(msg)
            if not text.strip():
                msg = f"texts[{i}] is empty or whitespace only: providers refuse or mis-embed it."
                raise ValueError(msg)
        if kind == "query" and self.query_instruction != "":
            template = self.provider.query_template(self.query_model)
            if template is not None:
                task = self.query_instruction or self.provider.default_query_task
                out = [template.format(task=task, query=t) for t in out]
        return out

    def request_tokens(self, texts: Sequence[str]) -> list[int]:
        """The estimated input tokens of each request a call with ``texts`` would send."""
        return [batch.tokens for batch in self._batches(list(texts))]

    def _batches(self, texts: list[str]) -> list[_Batch]:
        size = self.batch_size
        return [
            _Batch(i, texts[i : i + size], sum(len(t) for t in texts[i : i + size]) // 4 + 1)
            for i in range(0, len(texts), size)
        ]

    def _request_kwargs(
        self, batch: _Batch, model: str, timeout: float, authorization: str | None = None
    ) -> dict[str, Any]:
        single = self.provider.max_inputs_per_request == 1
        texts: str | list[str] = batch.texts[0] if single else batch.texts
        extra_body: dict[str, Any] = {}
        if not single:
            # The SDK walks every item of `input` through its typed transform (about 45 us a
            # text, 15% of a bulk call's CPU); the same list sent as a body extra is not
            # walked. The extra replaces the placeholder in the JSON body.
            extra_body["input"] = texts
            texts = [""]
        if self.service_tier is not None:
            # Not an argument of the openai SDK: it travels in the body as an extra.
            extra_body["service_tier"] = self.service_tier
        kwargs: dict[str, Any] = {
            "input": texts,
            "model": model,
            "encoding_format": self.encoding_format,
            "extra_headers": {"Authorization": authorization or self._credential.header()},
            "timeout": timeout,
        }
        if extra_body:
            kwargs["extra_body"] = extra_body
        if self.dimensions is not None:
            kwargs["dimensions"] = self.dimensions
        if self.user is not None:
            kwargs["user"] = self.user
        return kwargs

    def _new_state(self, n: int, model: str, show_progress_bar: bool | None = None) -> _CallState:
        deadline_at = time.monotonic() + self.deadline if self.deadline else None
        progress = None
        if self.show_progress_bar if show_progress_bar is None else show_progress_bar:
            from tqdm.auto import tqdm

            progress = tqdm(total=n, desc=f"Embedding ({self.provider.name})", unit="text")
        return _CallState(
            total=n, model=model, deadline_at=deadline_at, out=[None] * n, progress=progress
        )

    def _remaining(self, state: _CallState) -> float:
        if state.deadline_at is None:
            return self.timeout
        left = state.deadline_at - time.monotonic()
        if left <= 0:
            msg = (
                f"{self.provider.display_name}: the call did not finish within its deadline of "
                f"{self.deadline} s; raise deadline= or send fewer texts per call."
            )
            raise DeadlineExceededError(msg, provider=self.provider.name)
        return min(self.timeout, left)

    # ------------------------------------------------------------- responses

    def _store(self, state: _CallState, batch: _Batch, body: bytes, attempts: int) -> None:
        try:
            payload, lifted = _parse_body(body)
            data = payload["data"]
        except (ValueError, KeyError, TypeError) as e:
            msg = (
                f"{self.provider.display_name} answered 200 with a body that is not an embeddings "
                f"list: {body[:200]!r}"
            )
            raise ResponseError(msg, provider=self.provider.name) from e
        n = len(batch.texts)
        if not isinstance(data, list) or len(data) != n:
            got = len(data) if isinstance(data, list) else type(data).__name__
            msg = f"{self.provider.display_name} returned {got} vectors for {n} inputs."
            raise ResponseError(msg, provider=self.provider.name)
        vectors: list[list[float] | None] = [None] * n
        for item in data:
            index = item.get("index", 0 if n == 1 else None)
            if not isinstance(index, int) or not 0 <= index < n or vectors[index] is not None:
                msg = (
                    f"{self.provider.display_name} returned a vector with a missing, duplicate or "
                    f"out-of-range index {index!r} for a request of {n} inputs."
                )
                raise ResponseError(msg, provider=self.provider.name)
            vectors[index] = _decode(item.get("embedding"), self.provider.display_name, lifted)
        self.pacer.accepted()
        usage = payload.get("usage") or {}
        tokens = usage.get("total_tokens") or usage.get("prompt_tokens") or 0
        with state.lock:
            for offset, vec in enumerate(vectors):
                assert vec is not None
                if state.dims is None:
                    state.dims = len(vec)
                elif len(vec) != state.dims:
                    msg = (
                        f"{self.provider.display_name} returned vectors of different lengths "
                        f"({state.dims} and {len(vec)}) in one call."
                    )
                    raise ResponseError(msg, provider=self.provider.name)
                state.out[batch.start + offset] = vec
            state.tokens += int(tokens) if isinstance(tokens, (int, float)) else 0
            state.requests += 1
            state.retries += attempts - 1
        if self.dimensions is not None and state.dims != self.dimensions:
            msg = (
                f"{self.provider.display_name} returned {state.dims}-dimensional vectors; "
                f"dimensions={self.dimensions} was asked."
            )
            raise ResponseError(msg, provider=self.provider.name)
        if state.progress is not None:
            state.progress.update(n)

    def _result(self, state: _CallState) -> EmbedResult:
        if state.progress is not None:
            state.progress.close()
        if any(v is None for v in state.out):  # pragma: no cover - guarded by _store's checks
            msg = "Some inputs got no vector."
            raise ResponseError(msg, provider=self.provider.name)
        return EmbedResult(
            vectors=cast(list[list[float]], state.out),
            total_tokens=state.tokens,
            requests=state.requests,
            retries=state.retries,
            model=state.model,
        )

    # --------------------------------------------------------------- errors

    def _classify(
        self, error: BaseException, model: str, timeout: float | None = None
    ) -> BaseException:
        """Turn an openai exception into ours: TransientError wraps what may be retried."""
        p = self.provider
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            text = _error_text(error)
            kwargs: dict[str, Any] = {
                "provider": p.name,
                "status_code": status,
                "body": text[:2000],
            }
            head = f"{p.display_name} answered {status}"
            if status == 401:
                names = " / ".join(p.api_key_envs + ((p.token_env,) if p.token_env else ()))
                return AuthenticationError(
                    f"{head} (unauthenticated): the API key or token was refused. Check {names} "
                    f"or the api_key= you passed (scheme: {self._credential.scheme}). {text}",
                    **kwargs,
                )
            if status == 403:
                where = f" and {p.project_param}={self.project!r}" if self.project else ""
                return PermissionDeniedError(
                    f"{head} (permission denied): the key may not use model {model!r}{where}. "
                    f"Check the key's project / folder and roles. {text}",
                    **kwargs,
                )
            if status == 404:
                known = ", ".join(p.model_dimensions) or "see the provider's model list"
                return NotFoundError(
                    f"{head} (not found): unknown model {model!r} or wrong base_url "
                    f"{self.base_url!r}. Known models: {known}. {text}",
                    **kwargs,
                )
            if status == 429:
                lowered = text.lower()
                if any(marker in lowered for marker in p.quota_exhausted_markers):
                    return QuotaExhaustedError(
                        f"{head}: the quota is exhausted or billing needs attention; retrying "
                        f"will not help. {text}",
                        **kwargs,
                    )
                headers = error.response.headers
                retry_after = _retry_after(headers)
                if retry_after is None and any(
                    headers.get(name, "").strip() == "0" for name in p.quota_remaining_headers
                ):
                    # The minute's budget is spent and the server says no more: learn it.
                    before = self.pacer.learned_per_minute
                    pause = self.pacer.learn_limit(p.pacing_headroom)
                    if self.pacer.learned_per_minute != before:
                        logger.warning(
                            "%s: per-minute quota reached; pacing to about %.0f requests/min "
                            "(pause %.1f s). Set requests_per_minute= to avoid this.",
                            p.display_name,
                            self.pacer.learned_per_minute or 0,
                            pause,
                        )
                return TransientError(
                    RateLimitError(f"{head} (rate limited). {text}", **kwargs),
                    retry_after=retry_after,
                )
            if status in RETRYABLE_STATUSES:
                return TransientError(
                    ServerError(f"{head} (server error). {text}", **kwargs),
                    retry_after=_retry_after(error.response.headers),
                )
            return BadRequestError(
                f"{head} (bad request): the request for model {model!r} was refused: {text}",
                **kwargs,
            )
        if isinstance(error, openai.APITimeoutError):
            return TransientError(
                ConnectionFailedError(
                    f"{p.display_name} did not answer within {timeout or self.timeout:g} s "
                    f"(timeout={self.timeout:g}, deadline={self.deadline}).",
                    provider=p.name,
                )
            )
        if isinstance(error, openai.APIConnectionError):
            return TransientError(
                ConnectionFailedError(
                    f"Could not reach {p.display_name} at {self.base_url}: {error.__cause__ or error}.",
                    provider=p.name,
                )
            )
        return error

    def _final(self, error: BaseException, attempts: int, state: _CallState) -> BaseException:
        cause = error.cause if isinstance(error, TransientError) else error
        if (
            isinstance(error, TransientError)
            and state.deadline_at is not None
            and attempts < self.retry_policy.max_retries + 1
        ):
            # tenacity stopped early because the next wait would pass the call's deadline.
            return DeadlineExceededError(
                f"{self.provider.display_name}: the call's deadline of {self.deadline} s ran out "
                f"while retrying after {attempts} attempts; last error: {cause}",
                provider=self.provider.name,
                attempts=attempts,
            )
        if isinstance(cause, StudioEmbeddingsError):
            cause.attempts = attempts
            if attempts > 1:
                cause.message = f"{cause.message} (gave up after {attempts} attempts)"
                cause.args = (cause.message,)
        return cause

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        logger.info(
            "%s: attempt %d failed (%s); retrying in %.2f s",
            self.provider.display_name,
            retry_state.attempt_number,
            error.cause if isinstance(error, TransientError) else error,
            retry_state.upcoming_sleep,
        )
        if isinstance(error, TransientError) and isinstance(error.cause, RateLimitError):
            # Back off as one client: every worker waits, not just the one that got the 429.
            self.pacer.pause(retry_state.upcoming_sleep)

    def _wants_refresh(self, error: openai.OpenAIError) -> bool:
        """A 401 with a token from a callable: fetch a new token and send again, once."""
        return (
            self._credential.refreshable
            and isinstance(error, openai.APIStatusError)
            and error.status_code == 401
        )

    def _check_live(self, state: _CallState) -> float:
        if state.failed.is_set():
            raise _Cancelled
        return self._remaining(state)

    @staticmethod
    def _first_error(futures: Sequence[Future[None]]) -> BaseException | None:
        errors = [f.exception() for f in futures if f.done() and not f.cancelled()]
        real = [e for e in errors if e is not None and not isinstance(e, _Cancelled)]
        return real[0] if real else next((e for e in errors if e is not None), None)

    # ------------------------------------------------------------- sync path

    def _send_sync(self, state: _CallState, batch: _Batch) -> None:
        attempts = 0

        def attempt_once() -> bytes:
            nonlocal attempts
            attempts += 1
            self._check_live(state)
            # Build everything first, so that the paced moment is the moment of sending.
            embeddings = self.sync_client().embeddings.with_raw_response
            for resend in (False, True):
                if self.pacer.wait(batch.tokens, interrupt=state.failed):
                    raise _Cancelled
                kwargs = self._request_kwargs(batch, state.model, self._check_live(state))
                try:
                    return embeddings.create(**kwargs).content
                except openai.OpenAIError as e:
                    if not resend and self._wants_refresh(e):
                        # Not an attempt of its own: the same attempt with a fresh token.
                        self._credential.refresh(kwargs["extra_headers"]["Authorization"])
                        continue
                    raise self._classify(e, state.model, kwargs["timeout"]) from e
            raise AssertionError  # pragma: no cover - the loop returns or raises

        retrying = self.retry_policy.retrying(
            deadline=state.deadline_at,
            before_sleep=self._before_sleep,
            # A failure elsewhere in the call wakes a worker from its backoff at once.
            sleep=None if self.retry_policy.sleep else state.failed.wait,
        )
        try:
            body = retrying(attempt_once)
            self._store(state, batch, body, attempts)
        except (TransientError, ProviderError) as e:
            state.failed.set()  # the other requests of this call stop before their next attempt
            raise self._final(e, attempts, state) from e.__cause__
        except BaseException:
            state.failed.set()
            raise

    def embed_with_result(
        self,
        texts: Sequence[str],
        kind: Kind = "document",
        *,
        show_progress_bar: bool | None = None,
    ) -> EmbedResult:
        """Embed ``texts`` on the ``kind`` side; vectors in input order, with usage counts."""
        prepared = self.prepare(texts, kind)
        state = self._new_state(len(prepared), self.model_for(kind), show_progress_bar)
        if not prepared:
            return self._result(state)
        batches = self._batches(prepared)
        if self._sync_on_loop():
            self._async_entry(_loop.get_loop())  # built here, not on the shared loop
            try:
                _loop.run(self._fan_out(state, batches, sync_caller=True))
            finally:
                if state.progress is not None:
                    state.progress.close()
            return self._result(state)
        # A user's own sync http client: a thread pool sends through it.
        workers = min(self.max_concurrency, len(batches))
        try:
            if workers == 1:
                for batch in batches:
                    self._send_sync(state, batch)
            else:
                pool = ThreadPoolExecutor(workers, thread_name_prefix="studio-embeddings")
                try:
                    futures = [pool.submit(self._send_sync, state, b) for b in batches]
                    wait(futures, return_when=FIRST_EXCEPTION)
                    error = self._first_error(futures)
                    if error is not None:
                        raise error  # noqa: TRY301 - re-raised with the flag set below
                except BaseException:
                    # A failed request or Ctrl-C: the others stop, nothing is half-filled.
                    state.failed.set()
                    raise
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
        finally:
            if state.progress is not None:
                state.progress.close()
        return self._result(state)

    def embed(self, texts: Sequence[str], kind: Kind = "document") -> list[list[float]]:
        """Embed ``texts`` on the ``kind`` side; one vector per text, in input order."""
        return self.embed_with_result(texts, kind).vectors

    # ------------------------------------------------------------ async path

    async def _authorization(self) -> str:
        if self._credential.needs_fetch:
            # The token callable may do I/O: never on the event loop.
            return await _loop.in_thread(self._credential.header)
        return self._credential.header()

    def _sync_on_loop(self) -> bool:
        """Whether a sync call runs on the package's own event loop (see ``_loop``).

        Not with a user's own http client (the sync one is what a sync call must use, and an
        async one belongs to the user's loops), nor on that loop's thread itself.
        """
        return (
            self.http_client is None
            and self.http_async_client is None
            and _loop.available()
            and not _loop.in_loop_thread()
        )

    async def _send_async(
        self, state: _CallState, batch: _Batch, gate: asyncio.Semaphore, sync_caller: bool
    ) -> None:
        attempts = 0

        async def attempt_once() -> bytes:
            nonlocal attempts
            attempts += 1
            self._check_live(state)
            embeddings = (await self.async_client()).embeddings.with_raw_response
            for resend in (False, True):
                await self.pacer.await_turn(batch.tokens)
                authorization = await self._authorization()
                kwargs = self._request_kwargs(
                    batch, state.model, self._check_live(state), authorization
                )
                try:
                    return (await embeddings.create(**kwargs)).content
                except openai.OpenAIError as e:
                    if not resend and self._wants_refresh(e):
                        await _loop.in_thread(self._credential.refresh, authorization)
                        continue
                    raise self._classify(e, state.model, kwargs["timeout"]) from e
            raise AssertionError  # pragma: no cover - the loop returns or raises

        retrying = self.retry_policy.async_retrying(
            deadline=state.deadline_at, before_sleep=self._before_sleep, sync_caller=sync_caller
        )
        async with gate:
            # The failure flag is set before the gate opens for the next request.
            try:
                body: bytes = await retrying(attempt_once)
                self._store(state, batch, body, attempts)
            except (TransientError, ProviderError) as e:
                state.failed.set()
                raise self._final(e, attempts, state) from e.__cause__
            except BaseException:
                state.failed.set()
                raise

    async def aembed_with_result(
        self,
        texts: Sequence[str],
        kind: Kind = "document",
        *,
        show_progress_bar: bool | None = None,
    ) -> EmbedResult:
        """Async twin of :meth:`embed_with_result`: bounded concurrency, never blocks the loop."""
        prepared = self.prepare(texts, kind)
        state = self._new_state(len(prepared), self.model_for(kind), show_progress_bar)
        if not prepared:
            return self._result(state)
        try:
            await self._fan_out(state, self._batches(prepared), sync_caller=False)
        finally:
            if state.progress is not None:
                state.progress.close()
        return self._result(state)

    async def _fan_out(self, state: _CallState, batches: list[_Batch], sync_caller: bool) -> None:
        gate = asyncio.Semaphore(self.max_concurrency)
        tasks = [
            asyncio.ensure_future(self._send_async(state, b, gate, sync_caller)) for b in batches
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            state.failed.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def aembed(self, texts: Sequence[str], kind: Kind = "document") -> list[list[float]]:
        """Async twin of :meth:`embed`."""
        return (await self.aembed_with_result(texts, kind)).vectors


@dataclass
class _AsyncEntry:
    """An async openai client and the event loop it belongs to."""

    loop: weakref.ref[asyncio.AbstractEventLoop]
    client: openai.AsyncOpenAI
    closer: AsyncGenerator[None, None] | None  # closes the client when the loop shuts down
    pid: int = field(default_factory=os.getpid)
    started: bool = False  # the closer runs on the loop (first awaited there)
    finalizer: weakref.finalize[..., Any] | None = (
        None  # closes the client on its loop if we are dropped
    )


def _close_on_loop(loop_ref: weakref.ref[asyncio.AbstractEventLoop], client: Any) -> None:
    loop = loop_ref()
    if loop is None or loop.is_closed():
        return
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(lambda: loop.create_task(client.close()))


async def _close_with_loop(client: openai.AsyncOpenAI) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.close()


class _Cancelled(Exception):
    """Another request of the same call failed for good: stop this one."""


# ---------------------------------------------------------------- helpers


_EMBEDDING_KEY = b'"embedding"'
_JSON_SPACE = b" \t\r\n"
_LITTLE_ENDIAN = array("f", [1.0]).tobytes() == b"\x00\x00\x80?"


@dataclass
class _Lifted:
    """The base64 strings taken out of a response body before its JSON is parsed."""

    body: memoryview
    spans: list[tuple[int, int]]
    used: list[bool]

    def take(self, number: int) -> memoryview | None:
        # Each lifted string feeds one vector: a number the server sent itself (never valid
        # as an embedding) cannot pass for a lifted one that an item already took.
        if not 0 <= number < len(self.spans) or self.used[number]:
            return None
        self.used[number] = True
        start, end = self.spans[number]
        return self.body[start:end]


def _parse_body(body: bytes) -> tuple[Any, _Lifted]:
    """Parse a response body, with each base64 ``"embedding"`` string lifted out unparsed.

    ``json.loads`` would copy every vector's base64 text into a new ``str`` (about 20 KB per
    4096-dim vector, a third of a bulk response's CPU once decoding is fast); decoding each one
    straight from the body skips that. No JSON library offers it: orjson and msgspec still
    scan and copy the string. So this swaps each ``"embedding": "<base64>"`` value for its
    number and records where the text was. Only a plain string (no escape, so its closing
    quote is the next one) after the key ``"embedding"`` and its colon is swapped; anything
    else is left for ``json.loads`` to parse as usual. The swap keeps the body valid JSON, so a
    broken body is refused exactly as before.
    """
    spans: list[tuple[int, int]] = []
    pieces: list[bytes] = []
    copied = found = 0
    while (found := body.find(_EMBEDDING_KEY, found)) >= 0:
        at = found + len(_EMBEDDING_KEY)
        found = at
        while at < len(body) and body[at] in _JSON_SPACE:
            at += 1
        if body[at : at + 1] != b":":
            continue  # "embedding" as a value, such as "object": "embedding"
        at += 1
        while at < len(body) and body[at] in _JSON_SPACE:
            at += 1
        if body[at : at + 1] != b'"':
            continue  # a float list (or something else): json parses it
        end = body.find(b'"', at + 1)
        if end < 0 or body.find(b"\\", at + 1, end) >= 0:
            continue  # cut off, or escaped: json parses (or refuses) it
        pieces += (body[copied:at], b"%d" % len(spans))
        spans.append((at + 1, end))
        copied = found = end + 1
    if not spans:
        return json.loads(body), _Lifted(memoryview(body), spans, [])
    pieces.append(body[copied:])
    return json.loads(b"".join(pieces)), _Lifted(memoryview(body), spans, [False] * len(spans))


def _decode(embedding: Any, provider: str, lifted: _Lifted | None = None) -> list[float]:
    if isinstance(embedding, list) and embedding:
        return embedding
    raw: Any = None
    if isinstance(embedding, str):
        raw = embedding
    elif lifted is not None and type(embedding) is int:
        raw = lifted.take(embedding)
    if raw is not None:
        # base64 of little-endian float32. pybase64 decodes about 10x faster than binascii,
        # and array() turns the bytes into floats as fast as numpy does, without needing it.
        try:
            vec = array("f", b64decode(raw, validate=True))
        except ValueError as e:  # binascii.Error is a ValueError; so is a ragged length
            msg = f"{provider} returned an embedding that is not base64 of float32 values: {e}"
            raise ResponseError(msg) from e
        if not _LITTLE_ENDIAN:  # pragma: no cover - big-endian hosts
            vec.byteswap()
        if vec:
            return vec.tolist()
    if embedding == [] or raw is not None:
        msg = f"{provider} returned an empty embedding."
        raise ResponseError(msg)
    msg = f"{provider} returned an embedding of type {type(embedding).__name__}, not a list or base64."
    raise ResponseError(msg)


def _error_text(error: Any) -> str:
    """The provider's own message from an error body of any of the known shapes."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            for key in ("message", "detail", "msg"):
                if inner.get(key):
                    detail = inner[key]
                    return detail if isinstance(detail, str) else json.dumps(detail)[:1000]
        detail = body.get("detail")
        if detail:
            return detail if isinstance(detail, str) else json.dumps(detail)[:1000]
    try:
        return str(error.response.text)[:1000]
    except Exception:
        return str(getattr(error, "message", ""))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # unparseable: fall back to the policy's backoff
    if parsed is None:  # pragma: no cover - Python < 3.10 returned None
        return None
    return max(0.0, parsed.timestamp() - time.time())
