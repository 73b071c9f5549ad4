"""What both framework shells share: their fields -> one core client, and back.

A shell declares which of its fields feed which :meth:`Settings.resolve
<studio_embeddings._settings.Settings.resolve>` keyword (``chunk_size`` -> ``batch_size``,
``project_id`` -> ``project``, ...). :func:`apply` builds the core client from them (so every
check and every environment fallback happens once, in the settings), then shows the resolved
values on the fields (the key read from ``NEBIUS_API_KEY``, ``chunk_size`` capped at the
provider's maximum). Both shells call it from a pydantic ``after`` validator, which runs at
construction and, with ``validate_assignment``, on every assignment; a refused assignment
is undone, because pydantic stores the value before the validator runs.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from studio_embeddings._auth import SecretValue
from studio_embeddings._client import EmbeddingsClient
from studio_embeddings.errors import ConfigurationError
from studio_embeddings.providers import Provider

__all__ = ["apply", "check_picklable", "configuration_error"]

#: Settings keywords whose resolved value is shown on the shell's field.
_SHOWN = frozenset(
    {
        "api_key",
        "iam_token",
        "base_url",
        "project",
        "model",
        "query_model",
        "model_version",
        "batch_size",
        "max_concurrency",
        "encoding_format",
        "max_retries",
        "requests_per_second",
        "requests_per_minute",
        "tokens_per_minute",
        "quota_store",
    }
)

#: Passed to the client itself, not to the settings.
_RUNTIME = frozenset({"http_client", "http_async_client"})


def _shown(value: Any) -> Any:
    return SecretStr(value.get_secret_value()) if isinstance(value, SecretValue) else value


def apply(
    shell: BaseModel,
    provider: Provider,
    fields: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
) -> EmbeddingsClient:
    """Build ``shell``'s core client from its ``fields`` (field name -> settings keyword).

    ``overrides`` are keyword values the shell computes (e.g. a fallback from another field).
    ``max_retries`` is passed only when the user set it, so a ``retry_policy``'s own count
    holds otherwise. On a refused setting the shell's fields are restored to their last
    accepted values and the :class:`~studio_embeddings.errors.ConfigurationError` propagates.
    """
    private = shell.__pydantic_private__ or {}
    accepted: dict[str, Any] | None = private.get("_accepted")
    current: EmbeddingsClient | None = private.get("_client")
    if (
        current is not None
        and accepted is not None
        and all(shell.__dict__.get(n) == accepted.get(n) for n in fields)
    ):
        return current  # an unrelated field (a callback manager) changed: keep the client
    kwargs = {keyword: getattr(shell, name) for name, keyword in fields.items()}
    kwargs.update(overrides or {})
    if "max_retries" in kwargs and "max_retries" not in shell.model_fields_set:
        kwargs["max_retries"] = None
    runtime = {k: kwargs.pop(k) for k in _RUNTIME & kwargs.keys()}
    try:
        client = EmbeddingsClient(provider, **runtime, **kwargs)
    except (ValueError, TypeError):
        if accepted is not None:
            shell.__dict__.update(accepted)  # an assignment was refused: it changes nothing
        raise
    for name, keyword in fields.items():
        if keyword in _SHOWN:
            shell.__dict__[name] = _shown(client.settings.value_of(keyword))
    shell.__pydantic_private__ = {
        **private,
        "_client": client,
        "_accepted": dict(shell.__dict__),
    }
    return client


def check_picklable(shell: BaseModel) -> None:
    """Refuse to pickle a shell whose callable field (a lambda token) cannot be pickled.

    LlamaIndex's ``__getstate__`` silently drops what it cannot pickle, from the live object
    itself; a copy without its token cannot work, so say so instead.
    """
    for name, value in shell.__dict__.items():
        if callable(value) and not isinstance(value, type):
            try:
                pickle.dumps(value)
            except Exception as e:
                msg = (
                    f"{name} cannot be pickled (a lambda or closure?): pass a module-level "
                    "function, or set its environment variable in the process that unpickles."
                )
                raise pickle.PicklingError(msg) from e


def configuration_error(cls: type, error: ValidationError) -> ConfigurationError:
    """pydantic's refusal of a field, as the ConfigurationError the README promises.

    The message names each field and what is wrong with it, never the value (a key).
    """
    problems = "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'settings'}: {e['msg']}"
        for e in error.errors(include_input=False, include_url=False)
    )
    return ConfigurationError(f"{cls.__name__}: {problems}.")
