"""Pure: an openai/httpx exception -> our error, or a :class:`TransientError` to retry.

Nothing here changes state: what a rate limit means for pacing is the engine's business
(it hands the 429's headers to the limiter). The table below is the whole policy; the README's
error table says the same.

| answer | becomes | retried |
| --- | --- | --- |
| 401 | ``AuthenticationError`` | no (a token callable is fetched again once, by the engine) |
| 403 | ``PermissionDeniedError`` | no |
| 404 | ``NotFoundError`` | no |
| 429 with a quota-exhausted marker in the body | ``QuotaExhaustedError`` | no |
| 429 | ``RateLimitError`` | yes |
| 408, 409, 5xx | ``ServerError`` | yes |
| any other status | ``BadRequestError`` | no |
| timeout, connection refused or dropped | ``ConnectionFailedError`` | yes |
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import openai

from studio_embeddings._auth import redact_url
from studio_embeddings._retry import RETRYABLE_STATUSES, TransientError, retry_after
from studio_embeddings.errors import (
    AuthenticationError,
    BadRequestError,
    ConnectionFailedError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
)
from studio_embeddings.providers import Provider

__all__ = ["Context", "classify", "error_text"]


@dataclass(frozen=True)
class Context:
    """What a message may say about the request that failed (never a secret)."""

    provider: Provider
    model: str
    base_url: str
    project: str | None
    scheme: str
    timeout: float
    deadline: float | None


# status -> (error class, what it means, what to do); the hints are formatted with the context.
_FINAL: Mapping[int, tuple[type[ProviderError], str, str]] = {
    401: (
        AuthenticationError,
        "unauthenticated",
        "the API key or token was refused. Check {key_names} or the api_key= you passed "
        "(scheme: {scheme}).",
    ),
    403: (
        PermissionDeniedError,
        "permission denied",
        "the key may not use model {model!r}{where}. Check the key's project / folder and roles.",
    ),
    404: (
        NotFoundError,
        "not found",
        "unknown model {model!r} or wrong base_url {base_url!r}. Known models: {known}.",
    ),
}


def error_text(error: Any) -> str:
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


def _quota_exhausted(p: Provider, error: openai.APIStatusError, text: str) -> bool:
    """A 429 that retrying cannot fix: a marker in the message, or an error ``code``."""
    lowered = text.lower()
    if any(marker in lowered for marker in p.quota_exhausted_markers):
        return True
    body = error.body if isinstance(error.body, dict) else {}
    inner = body.get("error", body)
    codes = [inner.get("code"), inner.get("type")] if isinstance(inner, dict) else []
    return any(isinstance(c, str) and c.lower() in p.quota_exhausted_markers for c in codes)


def classify(error: BaseException, ctx: Context) -> BaseException:
    """Turn an openai exception into ours: :class:`TransientError` wraps what may be retried."""
    p = ctx.provider
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        text = error_text(error)
        kwargs: dict[str, Any] = {"provider": p.name, "status_code": status, "body": text[:2000]}
        head = f"{p.display_name} answered {status}"
        if status in _FINAL:
            cls, meaning, hint = _FINAL[status]
            where = f" and {p.project_param}={ctx.project!r}" if ctx.project else ""
            detail = hint.format(
                key_names=" / ".join(p.credential_envs),
                scheme=ctx.scheme,
                model=ctx.model,
                where=where,
                base_url=redact_url(ctx.base_url),
                known=", ".join(p.model_dimensions) or "see the provider's model list",
            )
            return cls(f"{head} ({meaning}): {detail} {text}", **kwargs)
        headers = error.response.headers
        if status == 429:
            if _quota_exhausted(p, error, text):
                return QuotaExhaustedError(
                    f"{head}: the quota is exhausted or billing needs attention; retrying "
                    f"will not help. {text}",
                    **kwargs,
                )
            return TransientError(
                RateLimitError(f"{head} (rate limited). {text}", **kwargs),
                retry_after=retry_after(headers),
                headers=dict(headers),
            )
        if status in RETRYABLE_STATUSES:
            return TransientError(
                ServerError(f"{head} (server error). {text}", **kwargs),
                retry_after=retry_after(headers),
            )
        return BadRequestError(
            f"{head} (bad request): the request for model {ctx.model!r} was refused: {text}",
            **kwargs,
        )
    if isinstance(error, openai.APITimeoutError):
        return TransientError(
            ConnectionFailedError(
                f"{p.display_name} did not answer within {ctx.timeout:g} s "
                f"(timeout={ctx.timeout:g}, deadline={ctx.deadline}).",
                provider=p.name,
            )
        )
    if isinstance(error, openai.APIConnectionError):
        return TransientError(
            ConnectionFailedError(
                f"Could not reach {p.display_name} at {redact_url(ctx.base_url)}: "
                f"{error.__cause__ or error}.",
                provider=p.name,
            )
        )
    return error
