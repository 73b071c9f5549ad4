"""Secrets and the credential that becomes the ``Authorization`` header.

A credential is a static API key or a token from a callable (a Yandex IAM token lives about
12 hours): the callable is called on first use, again after :data:`TOKEN_REFRESH_SECONDS`,
and again when the service answers 401. Secrets never show in ``repr``/``str``, and a token
fetched from a callable never crosses a pickle.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from studio_embeddings.errors import ConfigurationError

__all__ = [
    "TOKEN_REFRESH_SECONDS",
    "Credential",
    "SecretValue",
    "TokenProvider",
    "check_header_name",
    "check_header_value",
    "redact_url",
    "reveal",
]

TokenProvider = Callable[[], str]

#: A cached token from a callable is fetched again after this many seconds even without a 401.
TOKEN_REFRESH_SECONDS = 600.0


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


def reveal(value: Any) -> str | None:
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


def check_header_value(name: str, value: str) -> str:
    """``value`` stripped, if it can travel in an HTTP header; never echoes it in the error."""
    value = value.strip()
    if not value:
        msg = f"{name} is empty or whitespace only."
        raise ConfigurationError(msg)
    for position, char in enumerate(value):
        if char in "\r\n\0" or not (" " <= char <= "~" or "\x80" <= char <= "\xff"):
            what = "a line break" if char in "\r\n" else f"the character U+{ord(char):04X}"
            msg = (
                f"{name} contains {what} at position {position}, which cannot be sent in an "
                "HTTP header (was it read from a file with its newline?)."
            )
            raise ConfigurationError(msg)
    return value


#: RFC 9110 ``token`` characters: what a header name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_header_name(where: str, name: object) -> str:
    """``name`` if it can be an HTTP header name (a header name is no secret: it is shown)."""
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        msg = (
            f"{where} has an invalid header name {name!r}: use letters, digits and '-' "
            "(no spaces, colons or line breaks)."
        )
        raise ConfigurationError(msg)
    return name


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#:@]*:)[^/?#]*@")


def redact_url(url: str) -> str:
    """``url`` with a password in its authority shown as ``****``, for messages.

    >>> redact_url("https://user:hunter2@gateway.example/v1")
    'https://user:****@gateway.example/v1'
    >>> redact_url("https://api.example/v1")
    'https://api.example/v1'
    """
    return _USERINFO.sub(r"\1****@", url, count=1)


class Credential:
    """The ``Authorization`` header value, possibly from a refreshable token callable."""

    def __init__(
        self,
        scheme: str,
        secret: SecretValue | None,
        source: TokenProvider | None = None,
        name: str = "api_key",
    ) -> None:
        self.scheme = scheme
        self.name = name  # the parameter it came from, for messages
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

    def given(self, name: str) -> SecretValue | TokenProvider | None:
        """What the user gave as ``name`` (``api_key`` or ``iam_token``), if this came from it."""
        if name != self.name:
            return None
        return self._source if self._source is not None else self._secret

    def header(self) -> str:
        if self._source is not None and self.needs_fetch:
            # Only a fetch takes the lock: a request that needs no new token never waits for
            # another one's (slow, user-supplied) token callable, on an event loop least of all.
            with self._lock:
                if self.needs_fetch:
                    self._fetch()
        secret = self._secret
        assert secret is not None
        return f"{self.scheme} {secret.get_secret_value()}"

    def refresh(self, rejected: str | None = None) -> None:
        """Fetch a new token, unless another request already replaced the ``rejected`` one."""
        with self._lock:
            current = f"{self.scheme} {self._secret.get_secret_value()}" if self._secret else None
            if rejected is None or rejected == current:
                self._fetch()

    def _fetch(self) -> None:
        assert self._source is not None
        token = reveal(self._source())
        if not token or not token.strip():
            msg = "The IAM token callable returned an empty token."
            raise ConfigurationError(msg)
        self._secret = SecretValue(
            check_header_value("the token from the iam_token callable", token)
        )
        self._fetched_at = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        # A token from a callable is short-lived: do not carry it across a pickle.
        return {
            "scheme": self.scheme,
            "name": self.name,
            "_secret": None if self._source is not None else self._secret,
            "_source": self._source,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["scheme"], state["_secret"], state["_source"], state.get("name", "api_key")
        )

    def __repr__(self) -> str:
        return f"Credential(scheme={self.scheme!r}, secret='**********')"
