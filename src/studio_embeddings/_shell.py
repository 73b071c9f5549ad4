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
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, SecretStr, ValidationError, model_validator
from typing_extensions import Self

from studio_embeddings._auth import SecretValue
from studio_embeddings._client import EmbeddingsClient, Kind
from studio_embeddings.errors import ConfigurationError
from studio_embeddings.providers import Provider

if TYPE_CHECKING:
    import numpy

__all__ = ["CacheFill", "ShellMixin", "apply", "check_picklable", "configuration_error", "fields"]

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


def fields(*same: str, **renamed: str) -> dict[str, str]:
    """A shell's field -> settings keyword map: ``same`` names are both, ``renamed`` differ."""
    return {**{name: name for name in same}, **renamed}


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


class ShellMixin:
    """The machinery both shells share; put it first among a shell's bases.

    A shell class declares ``_provider`` and ``_fields`` (field -> settings keyword); this
    builds the core client at construction, rebuilds it when a mapped field is assigned,
    gives copies their own, pickles without live connections, and adds ``client``,
    ``close`` / ``aclose``, the context managers and the numpy array path.
    """

    _provider: ClassVar[Provider]
    _fields: ClassVar[dict[str, str]]

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise configuration_error(type(self), e) from None
        # Built here rather than in the validator, so that a bad setting raises the core's
        # ConfigurationError as it is, not wrapped in a pydantic ValidationError.
        self._apply()

    def _overrides(self) -> dict[str, Any]:
        """Settings keywords a shell computes from its own conventions (none by default)."""
        return {}

    def _apply(self) -> EmbeddingsClient:
        return apply(self, self._provider, self._fields, self._overrides())  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _rebuild_on_assignment(self) -> Self:
        if (self.__pydantic_private__ or {}).get("_client") is not None:  # type: ignore[attr-defined]
            self._apply()
        return self

    @property
    def client(self) -> EmbeddingsClient:
        """The core client behind this object (built at construction)."""
        # model_validate() and model_construct() skip __init__: build it then.
        client = (self.__pydantic_private__ or {}).get("_client")  # type: ignore[attr-defined]
        return client or self._apply()

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; with ``update``, the new settings are checked and get their own core client."""
        copy: Self = super().model_copy(update=update, deep=deep)  # type: ignore[misc]
        if update:  # pydantic copies without validating
            copy._apply()
        return copy

    def __getstate__(self) -> dict[Any, Any]:
        check_picklable(self)  # type: ignore[arg-type]
        state: dict[Any, Any] = super().__getstate__()  # type: ignore[misc]
        # Live connection pools cannot cross a pickle (the core drops its copies too).
        fields = {k: None if k in _RUNTIME else v for k, v in state["__dict__"].items()}
        private = {
            k: v for k, v in (state.get("__pydantic_private__") or {}).items() if k != "_accepted"
        }
        return {**state, "__dict__": fields, "__pydantic_private__": private}

    def close(self) -> None:
        """Close the connections of sync calls."""
        self.client.close()

    async def aclose(self) -> None:
        """Close the running event loop's connections."""
        await self.client.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def embed_array(self, texts: Iterable[str], *, kind: Kind = "document") -> numpy.ndarray:
        """Embed into one C-contiguous float32 matrix ``(len(texts), dims)``, rows in input
        order: the path for bulk loaders (FAISS, Parquet, Ray Data). Needs numpy.

        The same batching, pacing, retries and checks as the list path, without building
        Python floats; no cache or callback events.
        """
        return self.client.embed_array(texts, kind=kind)

    async def aembed_array(self, texts: Iterable[str], *, kind: Kind = "document") -> numpy.ndarray:
        """Async twin of :meth:`embed_array`."""
        return await self.client.aembed_array(texts, kind=kind)


class CacheFill:
    """One call's vectors: those an embeddings cache had, then those the core sent back."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.slots: list[list[float] | None] = []
        self.missing: list[int] = []
        self.result: Any = None  # the core's EmbedResult, once there was one

    def start(self, texts: list[str], cached: list[dict[str, Any] | None]) -> list[str]:
        """Take what the cache had; return the texts still to embed."""
        self.texts = texts
        self.slots = [_cached_vector(entry) for entry in cached] if cached else [None] * len(texts)
        self.missing = [i for i, v in enumerate(self.slots) if v is None]
        return [texts[i] for i in self.missing]

    def finish(self, result: Any) -> Iterable[tuple[str, list[float]]]:
        """Place the core's vectors; yield (text, vector) pairs to store in the cache."""
        self.result = result
        for i, vec in zip(self.missing, result.vectors, strict=True):
            self.slots[i] = vec
            yield self.texts[i], vec

    @property
    def vectors(self) -> list[list[float]]:
        return [v for v in self.slots if v is not None]


def _cached_vector(entry: dict[str, Any] | None) -> list[float] | None:
    # LlamaIndex stores {uuid: vector}; we store {"vector": vector}: read either.
    if not entry:
        return None
    return list(next(iter(entry.values())))
