"""Provider profiles: every difference between the supported services, as data.

A :class:`Provider` says where a service lives, how it authenticates, where the
project id goes, what it accepts on the wire and how fast it may be called. The
core (``_client.py``) reads these values and never asks *which* provider it talks
to, so any other OpenAI-compatible embeddings service can be added by building a
``Provider`` of its own::

    from dataclasses import replace
    from studio_embeddings.providers import NEBIUS

    MY_SERVICE = replace(NEBIUS, name="mine", display_name="My service",
                         base_url="https://example.com/v1/", api_key_envs=("MY_KEY",),
                         project_query_param=None, base_url_env=None, project_env=None)

Values marked *unconfirmed* in ``shared/PROVIDERS.md`` (Nebius's maximum inputs per
request, Yandex's maximum input length) are settings of the classes, with the
defaults given here.

| field | Nebius | Yandex |
| --- | --- | --- |
| base URL | ``https://api.tokenfactory.nebius.com/v1/`` | ``https://ai.api.cloud.yandex.net/v1`` (``https://llm.api.cloud.yandex.net/v1`` also serves it: pass ``base_url=`` or set ``YC_API_BASE``) |
| key variables | ``NEBIUS_API_KEY`` | ``YC_API_KEY`` (``Api-Key``), ``YC_IAM_TOKEN`` (``Bearer``) |
| project id | ``NEBIUS_PROJECT_ID``, query ``ai_project_id`` | ``YC_FOLDER_ID``, in ``emb://`` and ``OpenAI-Project`` |
| encodings | ``float``, ``base64`` | ``float`` |
| models | ``Qwen/Qwen3-Embedding-8B`` | families ``text-search-doc`` / ``-query`` and ``text-embeddings-v2-doc`` / ``-query`` (256 dims), never mixed |
| service tiers | requests ``auto``, ``default``, ``flex``, ``no-limit``; answers also ``over-limit`` | none |
| inputs per request | 2048 (default 64) | 1 |
| quota | none by default | 10 requests/s |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Literal

from studio_embeddings.errors import ConfigurationError

__all__ = [
    "NEBIUS",
    "PROVIDERS",
    "YANDEX",
    "AuthScheme",
    "EncodingFormat",
    "Provider",
    "credential_help",
    "get_provider",
]

EncodingFormat = Literal["float", "base64"]
AuthScheme = Literal["Bearer", "Api-Key"]

#: The retrieval task recommended by the Qwen3 / e5 model cards for web-search style retrieval.
DEFAULT_RETRIEVAL_TASK = (
    "Given a web search query, retrieve relevant passages that answer the query"
)


@dataclass(frozen=True)
class Provider:
    """What one OpenAI-compatible embeddings service expects on the wire.

    Attributes:
        name: short identifier (``"nebius"``), also the emulator's path prefix.
        display_name: the name used in messages (``"Nebius AI Studio"``).
        base_url: default base URL, ending in ``/v1`` (a trailing slash is optional).
        base_url_env: environment variable that overrides ``base_url``, or None.
        api_key_envs: environment variables read for the API key, in order.
        api_key_scheme: the ``Authorization`` scheme for an API key.
        token_env: environment variable for a short-lived token (Yandex IAM), or None.
        token_scheme: the ``Authorization`` scheme for such a token.
        project_param: the keyword users pass the project id as (``project_id``, ``folder_id``).
        project_env: environment variable for the project id, or None.
        project_required: whether a request cannot be built without a project id.
        project_query_param: query parameter that carries the project id, or None.
        project_header: header that carries the project id, or None.
        model_template: how a model name becomes the wire ``model`` value; may use
            ``{project}``, ``{model}`` and ``{version}``. Names that already contain
            ``://`` are sent as given.
        default_doc_model: model for documents.
        default_query_model: model for queries; None means the document model.
        default_model_version: ``{version}`` default for ``model_template``.
        model_versions: allowed ``{version}`` values, empty for "anything".
        encodings: the ``encoding_format`` values the service accepts.
        default_encoding: what we ask for when the user does not say.
        max_inputs_per_request: hard upper bound on texts in one request.
        default_batch_size: texts per request when the user does not say.
        requests_per_second: default client-side request quota, or None for unpaced.
        requests_per_minute: default requests/min quota, or None.
        tokens_per_minute: default tokens/min quota, or None.
        default_max_concurrency: requests in flight at once by default.
        pacing_headroom: the share of a quota the client paces itself to; a little under 1 so
            that scheduling jitter never pushes a sliding one-second window over the quota.
        model_dimensions: native vector length per known model.
        model_families: family per known model name; vectors of different families are not
            comparable, so a document model and a query model must share one
            (:meth:`check_model_pair`). Models not listed are not checked.
        dimension_ranges: models that accept ``dimensions=`` and the allowed range.
        query_templates: per model, the query prompt with ``{task}`` and ``{query}``.
        default_query_task: task text put into a query template by default.
        service_tiers: ``service_tier`` values a request may ask for, empty if unsupported.
        response_service_tiers: tiers that only appear in answers (Nebius ``over-limit``: the
            request went past the project's limit); asking for one is refused.
        data_logging_header: header that switches request logging off, or None.
        quota_remaining_headers: response headers that count what is left of a per-minute
            quota; a 429 with one of them at 0 and no ``Retry-After`` makes the client learn
            the quota and pace itself to it.
        quota_exhausted_markers: lower-case fragments of a 429 body that mean an exhausted
            quota or billing problem (not retried), as opposed to a rate limit.
        docs_url: where to read more.
    """

    name: str
    display_name: str
    base_url: str
    base_url_env: str | None
    api_key_envs: tuple[str, ...]
    api_key_scheme: AuthScheme = "Bearer"
    token_env: str | None = None
    token_scheme: AuthScheme = "Bearer"
    project_param: str = "project_id"
    project_env: str | None = None
    project_required: bool = False
    project_query_param: str | None = None
    project_header: str | None = None
    model_template: str = "{model}"
    default_doc_model: str = ""
    default_query_model: str | None = None
    default_model_version: str = "latest"
    model_versions: tuple[str, ...] = ()
    encodings: tuple[EncodingFormat, ...] = ("float", "base64")
    default_encoding: EncodingFormat = "float"
    max_inputs_per_request: int = 2048
    default_batch_size: int = 64
    requests_per_second: float | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    default_max_concurrency: int = 8
    pacing_headroom: float = 0.97
    model_dimensions: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    dimension_ranges: Mapping[str, tuple[int, int]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    model_families: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    query_templates: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    default_query_task: str = DEFAULT_RETRIEVAL_TASK
    service_tiers: tuple[str, ...] = ()
    response_service_tiers: tuple[str, ...] = ()
    data_logging_header: str | None = None
    quota_remaining_headers: tuple[str, ...] = ()
    quota_exhausted_markers: tuple[str, ...] = (
        "insufficient_quota",
        "quota exhausted",
        "quota_exhausted",
        "billing",
        "payment required",
        "balance",
    )
    docs_url: str = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping) and not isinstance(value, MappingProxyType):
                object.__setattr__(self, f.name, MappingProxyType(dict(value)))
        if self.default_encoding not in self.encodings:
            msg = (
                f"Provider {self.name!r}: default_encoding {self.default_encoding!r} "
                f"is not one of encodings {self.encodings!r}."
            )
            raise ValueError(msg)
        if set(self.service_tiers) & set(self.response_service_tiers):
            msg = f"Provider {self.name!r}: a response-only tier cannot be asked for."
            raise ValueError(msg)
        if self.max_inputs_per_request < 1 or self.default_batch_size < 1:
            msg = f"Provider {self.name!r}: batch sizes must be at least 1."
            raise ValueError(msg)

    def __reduce__(self) -> tuple[object, ...]:
        # Read-only mappings do not pickle; send plain dicts and freeze them again on load.
        values = {
            f.name: dict(getattr(self, f.name))
            if isinstance(getattr(self, f.name), Mapping)
            else getattr(self, f.name)
            for f in fields(self)
        }
        return (_make_provider, (values,))

    @property
    def credential_envs(self) -> tuple[str, ...]:
        """Every variable a credential may come from: the key variables, then the token's."""
        return self.api_key_envs + ((self.token_env,) if self.token_env else ())

    def wire_model(self, model: str, *, project: str | None, version: str | None = None) -> str:
        """The ``model`` value sent on the wire for ``model``.

        >>> YANDEX.wire_model("text-search-doc", project="b1gabc")
        'emb://b1gabc/text-search-doc/latest'
        >>> NEBIUS.wire_model("Qwen/Qwen3-Embedding-8B", project=None)
        'Qwen/Qwen3-Embedding-8B'
        """
        if "://" in model:
            return model
        return self.model_template.format(
            model=model, project=project or "", version=version or self.default_model_version
        )

    def model_name_from_wire(self, model: str) -> str:
        """The model name inside a wire value built by ``model_template``; others as given.

        >>> YANDEX.model_name_from_wire("emb://b1gabc/text-embeddings-v2-doc/rc")
        'text-embeddings-v2-doc'
        >>> YANDEX.model_name_from_wire("text-search-query")
        'text-search-query'
        """
        if "://" not in model or "{model}" not in self.model_template:
            return model
        pattern = (
            re.escape(self.model_template)
            .replace(r"\{model\}", "(?P<model>.+)")
            .replace(r"\{project\}", "[^/]*")
            .replace(r"\{version\}", "[^/]*")
        )
        found = re.fullmatch(pattern, model)
        return found["model"] if found else model

    def model_family(self, model: str) -> str | None:
        """The family of ``model`` (a name or a wire value), or None when it is not known.

        >>> YANDEX.model_family("emb://b1gabc/text-search-query/latest")
        'text-search'
        """
        return self.model_families.get(self.model_name_from_wire(model))

    def check_model_pair(self, doc_model: str, query_model: str) -> None:
        """Refuse a document model and a query model of different known families.

        Vectors of different families are not comparable: queries would retrieve noise.

        Raises:
            ConfigurationError: both families are known and differ; the message names both.

        >>> YANDEX.check_model_pair("text-embeddings-v2-doc", "text-embeddings-v2-query")
        >>> YANDEX.check_model_pair("text-search-doc", "text-embeddings-v2-query")
        Traceback (most recent call last):
        ...
        studio_embeddings.errors.ConfigurationError: doc_model 'text-search-doc' (family text-search) and query_model 'text-embeddings-v2-query' (family text-embeddings-v2) belong to different model families, whose vectors are not comparable: pass a document and a query model of one family (text-search: text-search-doc, text-search-query; text-embeddings-v2: text-embeddings-v2-doc, text-embeddings-v2-query).
        """
        doc_family, query_family = self.model_family(doc_model), self.model_family(query_model)
        if doc_family is None or query_family is None or doc_family == query_family:
            return
        members: dict[str, list[str]] = {}
        for name, family in self.model_families.items():
            members.setdefault(family, []).append(name)
        known = "; ".join(f"{family}: {', '.join(names)}" for family, names in members.items())
        msg = (
            f"doc_model {doc_model!r} (family {doc_family}) and query_model {query_model!r} "
            f"(family {query_family}) belong to different model families, whose vectors are "
            f"not comparable: pass a document and a query model of one family ({known})."
        )
        raise ConfigurationError(msg)

    def query_template(self, model: str) -> str | None:
        """The query prompt template of ``model`` (by name or by its last path part)."""
        if model in self.query_templates:
            return self.query_templates[model]
        short = model.rsplit("/", 1)[-1].lower()
        for name, template in self.query_templates.items():
            if name.rsplit("/", 1)[-1].lower() == short:
                return template
        return None


def _make_provider(values: dict[str, object]) -> Provider:
    return Provider(**values)  # type: ignore[arg-type]


NEBIUS = Provider(
    name="nebius",
    display_name="Nebius AI Studio",
    base_url="https://api.tokenfactory.nebius.com/v1/",
    base_url_env="NEBIUS_API_BASE",
    api_key_envs=("NEBIUS_API_KEY",),
    api_key_scheme="Bearer",
    project_param="project_id",
    project_env="NEBIUS_PROJECT_ID",
    project_required=False,
    project_query_param="ai_project_id",
    default_doc_model="Qwen/Qwen3-Embedding-8B",
    encodings=("float", "base64"),
    # base64 is ~4x smaller on the wire and decodes without building Python floats twice.
    default_encoding="base64",
    # Unconfirmed upper bound (PROVIDERS.md); the OpenAI-compatible default is 2048.
    max_inputs_per_request=2048,
    default_batch_size=64,
    # Measured with benchmarks/run.py (2,000 texts, 80 ms + 0.5 ms per input, 2 cores, sync
    # calls on the package's loop): 64 texts x 32 in flight 0.26-0.31 s, x 16 0.36-0.41 s,
    # 128 x 16 0.30 s, 32 x 64 0.29-0.30 s.
    default_max_concurrency=32,
    model_dimensions=MappingProxyType(
        {
            "Qwen/Qwen3-Embedding-8B": 4096,
            "BAAI/bge-en-icl": 4096,
            "BAAI/bge-multilingual-gemma2": 3584,
            "intfloat/e5-mistral-7b-instruct": 4096,
        }
    ),
    dimension_ranges=MappingProxyType({"Qwen/Qwen3-Embedding-8B": (32, 4096)}),
    query_templates=MappingProxyType(
        {
            "Qwen/Qwen3-Embedding-8B": "Instruct: {task}\nQuery:{query}",
            "intfloat/e5-mistral-7b-instruct": "Instruct: {task}\nQuery: {query}",
            "BAAI/bge-en-icl": "<instruct>{task}\n<query>{query}",
        }
    ),
    service_tiers=("auto", "default", "flex", "no-limit"),
    response_service_tiers=("over-limit",),
    quota_remaining_headers=("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"),
    docs_url="https://docs.tokenfactory.nebius.com/api-reference/embeddings",
)

YANDEX = Provider(
    name="yandex",
    display_name="Yandex AI Studio",
    # The createEmbedding reference and the OpenAI-compatibility page; the official SDK's
    # https://llm.api.cloud.yandex.net/v1 is an alternative (base_url= or YC_API_BASE).
    base_url="https://ai.api.cloud.yandex.net/v1",
    base_url_env="YC_API_BASE",
    api_key_envs=("YC_API_KEY",),
    api_key_scheme="Api-Key",
    token_env="YC_IAM_TOKEN",
    token_scheme="Bearer",
    project_param="folder_id",
    project_env="YC_FOLDER_ID",
    project_required=True,
    project_header="OpenAI-Project",
    model_template="emb://{project}/{model}/{version}",
    default_doc_model="text-search-doc",
    default_query_model="text-search-query",
    default_model_version="latest",
    model_versions=("latest", "rc", "deprecated"),
    encodings=("float",),
    default_encoding="float",
    max_inputs_per_request=1,
    default_batch_size=1,
    requests_per_second=10.0,
    default_max_concurrency=16,
    # v2's 256 is third-party (128/256/512/768 may be selectable; unconfirmed in PROVIDERS.md).
    model_dimensions=MappingProxyType(
        {
            "text-search-doc": 256,
            "text-search-query": 256,
            "text-embeddings-v2-doc": 256,
            "text-embeddings-v2-query": 256,
        }
    ),
    model_families=MappingProxyType(
        {
            "text-search-doc": "text-search",
            "text-search-query": "text-search",
            "text-embeddings-v2-doc": "text-embeddings-v2",
            "text-embeddings-v2-query": "text-embeddings-v2",
        }
    ),
    data_logging_header="x-data-logging-enabled",
    docs_url="https://yandex.cloud/en/docs/ai-studio/concepts/embeddings",
)

PROVIDERS: Mapping[str, Provider] = MappingProxyType({p.name: p for p in (NEBIUS, YANDEX)})


def get_provider(name: str | Provider) -> Provider:
    """Look a provider up by name (``"nebius"``, ``"yandex"``), or pass one through."""
    if isinstance(name, Provider):
        return name
    try:
        return PROVIDERS[name.lower()]
    except KeyError:
        msg = f"Unknown provider {name!r}: use one of {sorted(PROVIDERS)} or pass a Provider."
        raise ValueError(msg) from None


def credential_help(providers: Mapping[str, Provider] = PROVIDERS) -> str:
    """One line per provider: the variables it needs, then the optional ones (for help texts)."""
    rows = []
    for name, p in sorted(providers.items()):
        keys = " or ".join(p.credential_envs)
        needed = [keys] + ([p.project_env] if p.project_required and p.project_env else [])
        optional = [e for e in (None if p.project_required else p.project_env, p.base_url_env) if e]
        rows.append(
            f"  {name:<7} {', '.join(needed)}"
            + (f"; optional {', '.join(optional)}" if optional else "")
        )
    return "\n".join(rows)
