"""The exceptions studio-embeddings raises.

```
Exception
 +-- StudioEmbeddingsError            anything raised by a request to a provider
 |    +-- ProviderError                the provider answered with an error status
 |    |    +-- AuthenticationError      401: wrong, expired or missing key / IAM token
 |    |    +-- PermissionDeniedError    403: the key may not use this project / folder / model
 |    |    +-- NotFoundError            404: unknown model or path
 |    |    +-- BadRequestError          400, 422: the request was refused as invalid
 |    |    +-- RateLimitError           429 still refused after every retry
 |    |    +-- QuotaExhaustedError      429 that means an exhausted quota or billing problem
 |    |    +-- ServerError              5xx still failing after every retry
 |    +-- ConnectionFailedError        no answer: connection refused/dropped, timeout
 |    +-- DeadlineExceededError        the call's overall deadline ran out
 |    +-- ResponseError                an answer that cannot be right (count, index, length)
 |    +-- QuotaStoreError              the shared quota store (Redis) cannot be reached or refused
 +-- ValueError
      +-- ConfigurationError           a setting is missing or wrong (raised at construction)
```

Every message names the provider, what went wrong and what to do about it; none contains a
key or token. ``ProviderError`` keeps ``status_code``, ``provider`` and ``attempts``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConnectionFailedError",
    "DeadlineExceededError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderError",
    "QuotaExhaustedError",
    "QuotaStoreError",
    "RateLimitError",
    "ResponseError",
    "ServerError",
    "StudioEmbeddingsError",
]


class StudioEmbeddingsError(Exception):
    """Base of the errors raised while talking to a provider."""

    def __init__(self, message: str, *, provider: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.attempts = attempts


class ConfigurationError(ValueError):
    """A setting is missing or invalid; raised before anything is sent."""


class ProviderError(StudioEmbeddingsError):
    """The provider answered with an HTTP error status."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int = 0,
        attempts: int = 0,
        body: str = "",
    ) -> None:
        super().__init__(message, provider=provider, attempts=attempts)
        self.status_code = status_code
        self.body = body


class AuthenticationError(ProviderError):
    """401: the key or token is wrong, expired or missing."""


class PermissionDeniedError(ProviderError):
    """403: the credentials may not use this project, folder or model."""


class NotFoundError(ProviderError):
    """404: unknown model or endpoint."""


class BadRequestError(ProviderError):
    """400 or 422: the provider refused the request as invalid."""


class RateLimitError(ProviderError):
    """429 that persisted through every retry."""


class QuotaExhaustedError(ProviderError):
    """429 that means an exhausted quota or billing problem: retrying does not help."""


class ServerError(ProviderError):
    """5xx (or 408/409) that persisted through every retry."""


class ConnectionFailedError(StudioEmbeddingsError):
    """The request got no answer: refused or dropped connection, or a timeout."""


class DeadlineExceededError(StudioEmbeddingsError):
    """The call's overall deadline (``deadline=`` seconds) ran out before it finished."""


class ResponseError(StudioEmbeddingsError):
    """The provider answered 200 with something that cannot be right."""


class QuotaStoreError(StudioEmbeddingsError):
    """The shared quota store (``quota_store``, Redis) cannot be reached or refused a command.

    Raised when the store does not answer the first request (a wrong URL, password or TLS setting
    is the usual cause); once it has answered, an outage is waited out up to the call's deadline.
    """
