"""Settings, resolved once: the argument, then the provider's environment variable, then the
provider's default. This is the one place that reads ``os.environ``.

Every setting is checked here, at construction, so a bad one raises
:class:`~studio_embeddings.errors.ConfigurationError` (a ``ValueError``) naming the parameter,
the variable and the allowed values before anything is sent. ``OPENAI_*`` variables are never
read as settings; the names listed in ``OPENAI_CUSTOM_HEADERS`` are recorded only so that the
transport can strip those headers.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from studio_embeddings._auth import (
    Credential,
    SecretValue,
    TokenProvider,
    check_header_name,
    check_header_value,
    redact_url,
    reveal,
)
from studio_embeddings._retry import RetryPolicy
from studio_embeddings.errors import ConfigurationError
from studio_embeddings.providers import EncodingFormat, Provider, get_provider

__all__ = ["DEFAULT_TIMEOUT", "QUOTA_STORE_ENV", "Kind", "Settings"]

Kind = Literal["document", "query"]

#: Where a quota shared by processes and machines lives (a redis://, rediss:// or unix:// URL).
QUOTA_STORE_ENV = "STUDIO_EMBEDDINGS_QUOTA_STORE"
_QUOTA_SCHEMES = ("redis", "rediss", "unix")

#: Per-request timeout when the user gives none (the openai client's own default is 600 s).
DEFAULT_TIMEOUT = 60.0

_LOOPBACK_HOSTS = frozenset({"localhost", "localhost.localdomain"})
_PROJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _env(name: str | None) -> str | None:
    if not name:
        return None
    value = os.environ.get(name)
    return value if value and value.strip() else None


def _first_env(names: Sequence[str]) -> str | None:
    return next((v for v in map(_env, names) if v is not None), None)


def _fail(msg: str) -> ConfigurationError:
    return ConfigurationError(msg)


def _check_count(name: str, value: int | None, upper: int | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name} must be a whole number of at least 1, got {value!r}."
        raise _fail(msg)
    if upper is not None and value > upper:
        msg = f"{name} must be at most {upper}, got {value}."
        raise _fail(msg)


def _check_seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e9:
        msg = f"{name} must be a positive number of seconds, got {value!r}."
        raise _fail(msg)
    return float(value)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    """Everything one client needs, resolved and checked. Build it with :meth:`resolve`."""

    provider: Provider
    credential: Credential
    base_url: str
    project: str | None
    model: str
    query_model: str
    model_version: str
    dimensions: int | None
    encoding_format: EncodingFormat
    batch_size: int
    max_concurrency: int
    timeout: float
    deadline: float | None
    retry_policy: RetryPolicy
    requests_per_second: float | None
    requests_per_minute: float | None
    tokens_per_minute: float | None
    service_tier: str | None = None
    query_instruction: str | None = None
    user: str | None = None
    data_logging: bool | None = None
    default_headers: Mapping[str, str] = field(default_factory=dict)
    show_progress_bar: bool = False
    allow_insecure_http: bool = False
    #: header names from ``OPENAI_CUSTOM_HEADERS``, which the transport removes
    omitted_headers: tuple[str, ...] = ()
    #: the shared quota's Redis URL (it may hold a password), or None for in-process pacing
    quota_store: SecretValue | None = None

    @classmethod
    def resolve(
        cls,
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
        show_progress_bar: bool = False,
        retry_policy: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
        quota_store: Any = None,
    ) -> Settings:
        """Resolve and check every setting (see :class:`~studio_embeddings.EmbeddingsClient`)."""
        p = get_provider(provider)
        credential = cls._credential(p, api_key, iam_token)
        resolved_url = cls._base_url(p, base_url, allow_insecure_http)
        project = cls._project(p, project)
        model = model or p.default_doc_model
        if not model:
            msg = f"{p.display_name} has no default model: pass model=."
            raise _fail(msg)
        query_model = query_model or p.default_query_model or model
        p.check_model_pair(model, query_model)
        model_version = model_version or p.default_model_version
        if p.model_versions and model_version not in p.model_versions:
            msg = f"model_version must be one of {list(p.model_versions)}, got {model_version!r}."
            raise _fail(msg)
        encoding = encoding_format or p.default_encoding
        if encoding not in p.encodings:
            msg = (
                f"{p.display_name} accepts encoding_format in {list(p.encodings)} only, "
                f"got {encoding!r}."
            )
            raise _fail(msg)
        _check_count("dimensions", dimensions)
        if dimensions is not None:
            for m in dict.fromkeys((model, query_model)):
                cls._check_dimensions(p, m, dimensions)
        _check_count("batch_size", batch_size)
        _check_count("max_concurrency", max_concurrency)
        rates = {
            "requests_per_second": p.requests_per_second,
            "requests_per_minute": p.requests_per_minute,
            "tokens_per_minute": p.tokens_per_minute,
        }
        for name, value in (
            ("requests_per_second", requests_per_second),
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                    msg = f"{name} must be positive, or 0 for no limit; got {value!r}."
                    raise _fail(msg)
                rates[name] = value
        if service_tier is not None and service_tier not in p.service_tiers:
            allowed = list(p.service_tiers) or "none (this provider has no tiers)"
            msg = f"service_tier must be one of {allowed}, got {service_tier!r}."
            raise _fail(msg)
        headers: dict[str, str] = dict(default_headers or {})
        for name, header in headers.items():
            check_header_name("default_headers", name)
            if name.lower() == "authorization":
                msg = "default_headers must not set Authorization: pass api_key= instead."
                raise _fail(msg)
            if not isinstance(header, str):
                msg = f"default_headers[{name!r}] must be a string."
                raise _fail(msg)
            headers[name] = check_header_value(f"default_headers[{name!r}]", header)
        return cls(
            provider=p,
            credential=credential,
            base_url=resolved_url,
            project=project,
            model=model,
            query_model=query_model,
            model_version=model_version,
            dimensions=dimensions,
            encoding_format=encoding,
            batch_size=min(batch_size or p.default_batch_size, p.max_inputs_per_request),
            max_concurrency=max_concurrency or p.default_max_concurrency,
            timeout=_check_seconds("timeout", timeout) or DEFAULT_TIMEOUT,
            deadline=_check_seconds("deadline", deadline),
            retry_policy=cls._retry_policy(retry_policy, max_retries),
            service_tier=service_tier,
            query_instruction=query_instruction,
            user=user,
            data_logging=data_logging,
            default_headers=MappingProxyType(headers),
            show_progress_bar=show_progress_bar,
            allow_insecure_http=allow_insecure_http,
            omitted_headers=tuple(
                name
                for line in (os.environ.get("OPENAI_CUSTOM_HEADERS") or "").splitlines()
                if (name := line.partition(":")[0].strip())
            ),
            quota_store=cls._quota_store(quota_store),
            **rates,
        )

    @staticmethod
    def credentials_in_env(provider: str | Provider) -> bool:
        """Whether the environment holds a key (or token) and, where needed, a project id."""
        p = get_provider(provider)
        has_key = _first_env(p.credential_envs) is not None
        return has_key and (not p.project_required or _env(p.project_env) is not None)

    # ---------------------------------------------------------------- parts

    @staticmethod
    def _credential(p: Provider, api_key: Any, iam_token: Any) -> Credential:
        # The arguments (key, then token), then the provider variables (key, then token);
        # never OPENAI_API_KEY.
        key = reveal(api_key)
        if key == "":
            key = None  # an empty argument means "not given" (whitespace only is refused)
        source: TokenProvider | None = None
        token: str | None = None
        if key is None and iam_token is not None:
            if callable(iam_token) and not hasattr(iam_token, "get_secret_value"):
                source = cast(Callable[[], str], iam_token)
            else:
                token = reveal(iam_token)
        if key is None and not token and source is None:
            key = _first_env(p.api_key_envs)
            token = None if key else _env(p.token_env)
        if key:
            return Credential(
                p.api_key_scheme, SecretValue(check_header_value("api_key", key)), None, "api_key"
            )
        if token or source:
            secret = SecretValue(check_header_value("iam_token", token)) if token else None
            return Credential(p.token_scheme, secret, source, "iam_token")
        names = " or ".join(p.credential_envs)
        token_hint = " (or iam_token=)" if p.token_env else ""
        msg = f"{p.display_name} needs an API key: pass api_key={token_hint} or set {names}."
        raise _fail(msg)

    @staticmethod
    def _base_url(p: Provider, base_url: str | None, allow_insecure_http: bool) -> str:
        url = (base_url or _env(p.base_url_env) or p.base_url).strip()
        shown = redact_url(url).encode("unicode_escape").decode("ascii")
        if any(c in url for c in "\r\n\t\0 "):
            msg = f"base_url must not contain spaces or line breaks, got {shown!r}."
            raise _fail(msg)
        try:
            parts = urlsplit(url)
            port = parts.port  # a port that is not a number, or past 65535, raises here
        except ValueError as e:
            msg = f"base_url {shown!r} is not a valid URL: {e}."
            raise _fail(msg) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"base_url must be an http(s) URL such as {p.base_url!r}, got {shown!r}."
            raise _fail(msg)
        if port == 0:
            msg = f"base_url {shown!r} has port 0."
            raise _fail(msg)
        if "@" in parts.netloc:  # httpx would send it as Basic auth in place of the key
            msg = f"base_url {shown!r} carries a user or password: pass api_key= instead."
            raise _fail(msg)
        if parts.scheme == "http" and not _is_loopback(parts.hostname) and not allow_insecure_http:
            msg = (
                f"Refusing to send {p.display_name} credentials over plain http to "
                f"{parts.hostname}: use https, or pass allow_insecure_http=True if you mean it."
            )
            raise _fail(msg)
        return url

    @staticmethod
    def _project(p: Provider, project: str | None) -> str | None:
        project = project or _env(p.project_env)
        if project is not None:
            project = project.strip()
            if not _PROJECT_RE.fullmatch(project):
                msg = (
                    f"{p.project_param}={project!r} is not a valid {p.display_name} id: "
                    "use letters, digits, '-', '_' or '.', with no '/' or spaces."
                )
                raise _fail(msg)
        if p.project_required and not project:
            env_hint = f" or set {p.project_env}" if p.project_env else ""
            what = p.project_param.replace("_", " ")
            msg = f"{p.display_name} needs a {what}: pass {p.project_param}={env_hint}."
            raise _fail(msg)
        return project

    @staticmethod
    def _check_dimensions(p: Provider, model: str, dimensions: int) -> None:
        name = p.model_name_from_wire(model)
        allowed = p.dimension_ranges.get(name)
        native = p.model_dimensions.get(name)
        if allowed is not None:
            low, high = allowed
            if not low <= dimensions <= high:
                msg = f"dimensions for {name} must be between {low} and {high}, got {dimensions}."
                raise _fail(msg)
        elif native is not None and dimensions != native:
            msg = (
                f"{name} returns {native}-dimensional vectors and cannot change that: "
                f"leave dimensions unset (got {dimensions})."
            )
            raise _fail(msg)

    @staticmethod
    def _quota_store(value: Any) -> SecretValue | None:
        url = reveal(value) or _env(QUOTA_STORE_ENV)
        if not url:
            return None
        url = url.strip()
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in _QUOTA_SCHEMES:
            # Never echo the URL: it may carry a password.
            msg = (
                f"quota_store (or {QUOTA_STORE_ENV}) must be a redis://, rediss:// or unix:// "
                f"URL, got one with scheme {scheme or 'none'!r}."
            )
            raise _fail(msg)
        return SecretValue(url)

    @staticmethod
    def _retry_policy(policy: RetryPolicy | None, max_retries: int | None) -> RetryPolicy:
        if max_retries is not None and (
            isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
        ):
            msg = f"max_retries must be a whole number of 0 or more, got {max_retries!r}."
            raise _fail(msg)
        if policy is None:
            return RetryPolicy() if max_retries is None else RetryPolicy(max_retries=max_retries)
        if max_retries is not None and max_retries != policy.max_retries:
            return RetryPolicy(**{**policy.__dict__, "max_retries": max_retries})
        return policy

    # ---------------------------------------------------------------- derived

    def expected_dims(self, kind: Kind) -> int:
        """The vector length a ``kind`` call should return, or 0 when not known beforehand."""
        model = self.query_model if kind == "query" else self.model
        return self.dimensions or self.provider.model_dimensions.get(
            self.provider.model_name_from_wire(model), 0
        )

    def wire_model(self, kind: Kind) -> str:
        """The wire ``model`` value for documents or queries."""
        name = self.query_model if kind == "query" else self.model
        return self.provider.wire_model(name, project=self.project, version=self.model_version)

    def value_of(self, keyword: str) -> Any:
        """The resolved value of a :meth:`resolve` keyword, as a shell shows it on its field.

        ``api_key`` / ``iam_token``: the secret (a :class:`SecretValue`, or the token callable)
        if the credential came from that keyword or its variable, else None.
        """
        if keyword in ("api_key", "iam_token"):
            return self.credential.given(keyword)
        if keyword == "max_retries":
            return self.retry_policy.max_retries
        return getattr(self, keyword)

    def pacing(self) -> dict[str, Any]:
        """The pacer's limits: the quota times the provider's headroom; None for unpaced."""
        headroom = self.provider.pacing_headroom
        return {
            "requests_per_second": (self.requests_per_second or 0) * headroom or None,
            "requests_per_minute": (self.requests_per_minute or 0) * headroom or None,
            "tokens_per_minute": (self.tokens_per_minute or 0) * headroom or None,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # The read-only headers mapping does not pickle; rebuild it on load.
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values["default_headers"] = dict(self.default_headers)
        return (_rebuild, (values,))


def _rebuild(values: dict[str, Any]) -> Settings:
    values["default_headers"] = MappingProxyType(values["default_headers"])
    return Settings(**values)
