"""The emulator's behaviour, free of any web framework: knobs, state and both dialects.

:class:`EmulatorCore` turns one incoming request into an :class:`Answer` (status, JSON
body, headers, delay, or a dropped connection) and records it. The ASGI glue in
``_app.py`` only moves bytes. The rules come from ``shared/PROVIDERS.md``; only the
Provider table's *data* is read from the package, never the client code.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, TypeAlias

from studio_embeddings.emulator._knobs import Faults, Knobs
from studio_embeddings.emulator._vectors import embed_array, embed_base64, resolve_model
from studio_embeddings.providers import NEBIUS, YANDEX

__all__ = [
    "UNLIMITED_REMAINING",
    "Answer",
    "EmulatorCore",
    "EmulatorStats",
    "Incoming",
    "RecordedRequest",
    "ScriptEntry",
]

PROVIDER_NAMES = (NEBIUS.name, YANDEX.name)

#: What ``x-ratelimit-remaining-*`` report while no Nebius limit is configured.
UNLIMITED_REMAINING = 1_000_000

#: One scripted answer: a status (200 = answer normally), ``"drop"``, ``"quota"``, or
#: one of those paired with extra response headers, e.g. ``(429, {"retry-after": "2"})``.
ScriptEntry: TypeAlias = int | str | tuple[int | str, Mapping[str, str]]

_WINDOW_S = {"yandex": 1.0, "nebius": 60.0}

# gRPC code and name per HTTP status, as Yandex Cloud maps them.
_GRPC: dict[int, tuple[int, str]] = {
    400: (3, "INVALID_ARGUMENT"),
    401: (16, "UNAUTHENTICATED"),
    403: (7, "PERMISSION_DENIED"),
    404: (5, "NOT_FOUND"),
    408: (4, "DEADLINE_EXCEEDED"),
    409: (10, "ABORTED"),
    429: (8, "RESOURCE_EXHAUSTED"),
    500: (13, "INTERNAL"),
    501: (12, "UNIMPLEMENTED"),
    503: (14, "UNAVAILABLE"),
    504: (4, "DEADLINE_EXCEEDED"),
}

_NEBIUS_QUOTA_BODY = {
    "error": {
        "message": "Quota exhausted: insufficient_quota, check your billing details.",
        "type": "insufficient_quota",
        "code": "insufficient_quota",
    }
}
_YANDEX_QUOTA_MESSAGE = (
    "Quota exhausted: the billing account of the cloud is not active or has an "
    "insufficient balance (insufficient_quota)."
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator answered.

    Attributes:
        provider: ``"nebius"`` or ``"yandex"``.
        method: HTTP method.
        path: URL path, e.g. ``/nebius/v1/embeddings``.
        query: query parameters (last value wins).
        headers: request headers, lower-case names.
        body: the parsed JSON body if it was a JSON object, else None.
        status: the status answered; 0 for a dropped connection.
        time: ``time.monotonic()`` when the request arrived.
    """

    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any] | None
    status: int
    time: float


@dataclass(frozen=True)
class EmulatorStats:
    """Counters since the last :meth:`Emulator.clear`.

    Attributes:
        requests: requests per provider.
        statuses: answers per status (0 = dropped connection), all providers.
        by_provider: answers per status, per provider.
        drops: dropped connections.
    """

    requests: dict[str, int]
    statuses: dict[int, int]
    by_provider: dict[str, dict[int, int]]
    drops: int

    @property
    def total(self) -> int:
        """All requests answered (or dropped)."""
        return sum(self.requests.values())


@dataclass(frozen=True)
class Incoming:
    """One request as the ASGI layer hands it over."""

    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    """What to send back: a JSON answer after ``delay`` seconds, or a dropped connection."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    delay: float = 0.0


@dataclass(frozen=True)
class _Scripted:
    kind: Literal["status", "drop", "quota"]
    status: int
    headers: Mapping[str, str]


class _Window:
    """Sliding time window of weighted events (requests, or tokens).

    Hand-written on purpose: rate-limit libraries pace *callers*; a server needs the
    exact count in the window, to answer 429 and the ``x-ratelimit-remaining-*`` headers.
    """

    def __init__(self, span: float) -> None:
        self.span = span
        self.events: deque[tuple[float, int]] = deque()
        self.total = 0

    def prune(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - self.span:
            self.total -= self.events.popleft()[1]

    def add(self, now: float, weight: int) -> None:
        self.events.append((now, weight))
        self.total += weight


def _normalise_script_entry(entry: ScriptEntry) -> _Scripted:
    headers: Mapping[str, str] = {}
    value: object = entry
    if isinstance(entry, tuple):
        if len(entry) != 2 or not isinstance(entry[1], Mapping):
            msg = f"A scripted tuple must be (status, headers), not {entry!r}."
            raise ValueError(msg)
        value, raw_headers = entry
        headers = {str(k).lower(): str(v) for k, v in raw_headers.items()}
    if value == "drop":
        return _Scripted("drop", 0, headers)
    if value == "quota":
        return _Scripted("quota", 429, headers)
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (value == 200 or 400 <= value <= 599)
    ):
        return _Scripted("status", value, headers)
    msg = (
        f"Unknown scripted answer {entry!r}: use 200, a status from 400 to 599, 'drop', "
        "'quota', or (answer, {header: value})."
    )
    raise ValueError(msg)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _yandex_error(status: int, message: str) -> dict[str, Any]:
    code = _GRPC.get(status, (2, "UNKNOWN"))[0]
    return {
        "error": {
            "grpcCode": code,
            "httpCode": status,
            "message": message,
            "httpStatus": _phrase(status),
            "details": [],
        }
    }


def _yandex_status_message(status: int) -> str:
    name = _GRPC.get(status, (2, "UNKNOWN"))[1]
    return f"{name}: {_phrase(status)} (emulated)"


#: The tier a Nebius answer reports for the tier asked for (``auto`` is served as ``default``).
_SERVED_TIER = {"auto": "default", "default": "default"}

_NEBIUS_MESSAGES = {
    429: "Rate limit exceeded, please retry later.",
    500: "Internal server error.",
    503: "Service temporarily unavailable, please retry later.",
}


def _error_detail(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _word_tokens(texts: Iterable[str]) -> int:
    return sum(len(text.split()) for text in texts)


def _count_inputs(body: dict[str, Any] | None) -> int:
    if body is None:
        return 0
    value = body.get("input")
    if isinstance(value, str):
        return 1
    if isinstance(value, list):
        return len(value)
    return 0


def _literal_message(values: Iterable[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) == 1:
        return f"Input should be {quoted[0]}"
    return f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"


class EmulatorCore:
    """State and rules of both dialects; thread-safe (the server and tests share it)."""

    def __init__(self, knobs: Knobs) -> None:
        self._lock = threading.Lock()
        self._initial = knobs
        self._knobs = knobs
        self._requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[_Scripted]] = {p: deque() for p in PROVIDER_NAMES}
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._fault_rng = random.Random(knobs.faults.seed)
        self._shuffle_rng = random.Random(knobs.seed)
        self._ids = 0
        self._by_provider: dict[str, dict[int, int]] = {}
        self._drops = 0

    # --- control -------------------------------------------------------------------

    @property
    def knobs(self) -> Knobs:
        return self._knobs

    def configure(self, **changes: Any) -> None:
        knobs = self._knobs.replace(**changes)
        with self._lock:
            self._knobs = knobs
            if "faults" in changes:
                self._fault_rng = random.Random(self._knobs.faults.seed)
            if "seed" in changes:
                self._shuffle_rng = random.Random(self._knobs.seed)

    def script(self, provider: str, answers: Iterable[ScriptEntry]) -> None:
        if provider not in self._scripts:
            msg = f"Unknown provider {provider!r}: use one of {list(PROVIDER_NAMES)}."
            raise ValueError(msg)
        entries = [_normalise_script_entry(entry) for entry in answers]
        with self._lock:
            self._scripts[provider].extend(entries)

    def pending_script(self, provider: str) -> int:
        with self._lock:
            return len(self._scripts[provider])

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            for queue in self._scripts.values():
                queue.clear()
            self._windows.clear()
            self._fault_rng = random.Random(self._knobs.faults.seed)
            self._shuffle_rng = random.Random(self._knobs.seed)
            self._by_provider.clear()
            self._drops = 0
            self._ids = 0

    def reset(self) -> None:
        with self._lock:
            self._knobs = self._initial
        self.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def stats(self) -> EmulatorStats:
        with self._lock:
            by_provider = {p: dict(c) for p, c in self._by_provider.items()}
            drops = self._drops
        statuses: dict[int, int] = {}
        for counts in by_provider.values():
            for status, n in counts.items():
                statuses[status] = statuses.get(status, 0) + n
        return EmulatorStats(
            requests={p: sum(c.values()) for p, c in by_provider.items()},
            statuses=statuses,
            by_provider=by_provider,
            drops=drops,
        )

    # --- request handling ----------------------------------------------------------

    def handle_models(self, incoming: Incoming) -> Answer:
        arrival = time.monotonic()
        auth = self._check_bearer(incoming.headers)
        if auth is not None:
            answer = auth
        else:
            data = [
                {"id": model, "object": "model", "created": 0, "owned_by": model.split("/")[0]}
                for model in NEBIUS.model_dimensions
            ]
            answer = Answer(200, {"object": "list", "data": data})
        self._record(incoming, None, answer, arrival)
        return answer

    def handle_embeddings(self, incoming: Incoming) -> Answer:
        arrival = time.monotonic()
        body = self._parse(incoming.body)
        with self._lock:
            knobs = self._knobs
            queue = self._scripts[incoming.provider]
            scripted = queue.popleft() if queue else None
            fault = knobs.faults.draw(self._fault_rng) if scripted is None else None
        extra: Mapping[str, str] = {}
        if scripted is not None and scripted.kind == "status" and scripted.status == 200:
            extra = scripted.headers
            scripted = None
        answer: Answer | None = None
        if scripted is not None:
            answer = self._scripted_answer(incoming.provider, scripted)
        elif fault is not None:
            answer = self._fault_answer(incoming.provider, fault, knobs.faults)
        if answer is None:
            if incoming.provider == NEBIUS.name:
                answer = self._nebius(incoming, body, knobs, arrival)
            else:
                answer = self._yandex(incoming, body, knobs, arrival)
        elif incoming.provider == NEBIUS.name:
            answer.headers.update(self._nebius_remaining(incoming, knobs, arrival))
        answer.headers.update(extra)
        answer.delay = (knobs.latency_ms + knobs.per_input_ms * _count_inputs(body)) / 1000.0
        self._record(incoming, body, answer, arrival)
        return answer

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any] | None:
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _record(
        self, incoming: Incoming, body: dict[str, Any] | None, answer: Answer, arrival: float
    ) -> None:
        status = 0 if answer.drop else answer.status
        record = RecordedRequest(
            provider=incoming.provider,
            method=incoming.method,
            path=incoming.path,
            query=dict(incoming.query),
            headers=dict(incoming.headers),
            body=body,
            status=status,
            time=arrival,
        )
        with self._lock:
            self._requests.append(record)
            counts = self._by_provider.setdefault(incoming.provider, {})
            counts[status] = counts.get(status, 0) + 1
            if answer.drop:
                self._drops += 1
            self._ids += 1
            request_id = f"emu-{self._ids:08d}"
        if not answer.drop:
            answer.headers.setdefault("x-request-id", request_id)

    def _error(self, provider: str, status: int, message: str | None = None) -> Answer:
        if provider == YANDEX.name:
            return Answer(status, _yandex_error(status, message or _yandex_status_message(status)))
        text = message or _NEBIUS_MESSAGES.get(status, f"{_phrase(status)} (emulated).")
        return Answer(status, {"detail": text})

    def _scripted_answer(self, provider: str, scripted: _Scripted) -> Answer:
        if scripted.kind == "drop":
            answer = Answer(200, drop=True)
        elif scripted.kind == "quota":
            if provider == YANDEX.name:
                answer = Answer(429, _yandex_error(429, _YANDEX_QUOTA_MESSAGE))
            else:
                answer = Answer(429, json.loads(json.dumps(_NEBIUS_QUOTA_BODY)))
        else:
            answer = self._error(provider, scripted.status)
        answer.headers.update(scripted.headers)
        return answer

    def _fault_answer(self, provider: str, fault: str, faults: Faults) -> Answer:
        if fault == "p_drop":
            return Answer(200, drop=True)
        status = {"p503": 503, "p500": 500}.get(fault, 429)
        answer = self._error(provider, status)
        if fault == "p429_retry_after":
            answer.headers["retry-after"] = f"{faults.retry_after_s:g}"
            answer.headers["retry-after-ms"] = f"{faults.retry_after_s * 1000:g}"
        return answer

    # --- auth ----------------------------------------------------------------------

    @staticmethod
    def _credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
        scheme, _, credential = headers.get("authorization", "").strip().partition(" ")
        credential = credential.strip()
        if not scheme or not credential:
            return None
        return scheme.lower(), credential

    def _check_bearer(self, headers: Mapping[str, str]) -> Answer | None:
        found = self._credentials(headers)
        if found is None or found[0] != "bearer":
            return Answer(
                401,
                {"detail": "Missing or malformed Authorization header: use 'Bearer <API key>'."},
            )
        keys = self._knobs.valid_keys
        if keys is not None and found[1] not in keys:
            return Answer(401, {"detail": "Invalid API key."})
        return None

    def _check_yandex_auth(self, headers: Mapping[str, str], knobs: Knobs) -> Answer | None:
        found = self._credentials(headers)
        if found is None or found[0] not in ("api-key", "bearer"):
            message = (
                "UNAUTHENTICATED: missing or malformed Authorization header: use "
                "'Api-Key <API key>' or 'Bearer <IAM token>'."
            )
            return Answer(401, _yandex_error(401, message))
        if knobs.valid_keys is not None and found[1] not in knobs.valid_keys:
            message = "UNAUTHENTICATED: the API key or IAM token is invalid or expired."
            return Answer(401, _yandex_error(401, message))
        return None

    # --- rate limits ---------------------------------------------------------------

    def _window(self, provider: str, bucket: str, kind: str) -> _Window:
        key = (provider, bucket, kind)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(_WINDOW_S[provider])
        return window

    def _nebius_remaining(self, incoming: Incoming, knobs: Knobs, now: float) -> dict[str, str]:
        project = incoming.query.get(NEBIUS.project_query_param or "", "") or "default"
        with self._lock:
            requests = self._window(NEBIUS.name, project, "requests")
            tokens = self._window(NEBIUS.name, project, "tokens")
            requests.prune(now)
            tokens.prune(now)
            return self._remaining_headers(knobs, requests, tokens)

    @staticmethod
    def _remaining_headers(knobs: Knobs, requests: _Window, tokens: _Window) -> dict[str, str]:
        left_requests = (
            UNLIMITED_REMAINING if knobs.nebius_rpm is None else knobs.nebius_rpm - requests.total
        )
        left_tokens = (
            UNLIMITED_REMAINING if knobs.nebius_tpm is None else knobs.nebius_tpm - tokens.total
        )
        return {
            "x-ratelimit-remaining-requests": str(max(0, left_requests)),
            "x-ratelimit-remaining-tokens": str(max(0, left_tokens)),
        }

    # --- Nebius --------------------------------------------------------------------

    def _nebius(
        self, incoming: Incoming, body: dict[str, Any] | None, knobs: Knobs, now: float
    ) -> Answer:
        answer = self._nebius_inner(incoming, body, knobs, now)
        if "x-ratelimit-remaining-requests" not in answer.headers:
            answer.headers.update(self._nebius_remaining(incoming, knobs, now))
        return answer

    def _nebius_validate(self, raw: bytes, body: dict[str, Any] | None) -> list[dict[str, Any]]:
        if body is None:
            try:
                json.loads(raw)
            except ValueError as exc:
                return [
                    _error_detail(
                        ["body", getattr(exc, "pos", 0)], "JSON decode error", "json_invalid"
                    )
                ]
            return [
                _error_detail(
                    ["body"],
                    "Input should be a valid dictionary or object to extract fields from",
                    "model_attributes_type",
                )
            ]
        errors: list[dict[str, Any]] = []
        model = body.get("model")
        if model is None:
            errors.append(_error_detail(["body", "model"], "Field required", "missing"))
        elif not isinstance(model, str):
            errors.append(
                _error_detail(["body", "model"], "Input should be a valid string", "string_type")
            )
        errors.extend(self._nebius_validate_input(body))
        encoding = body.get("encoding_format")
        if encoding is not None and encoding not in NEBIUS.encodings:
            errors.append(
                _error_detail(
                    ["body", "encoding_format"], _literal_message(NEBIUS.encodings), "literal_error"
                )
            )
        dimensions = body.get("dimensions")
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int)
        ):
            errors.append(
                _error_detail(["body", "dimensions"], "Input should be a valid integer", "int_type")
            )
        tier = body.get("service_tier")
        if tier is not None and tier not in NEBIUS.service_tiers:
            errors.append(
                _error_detail(
                    ["body", "service_tier"],
                    _literal_message(NEBIUS.service_tiers),
                    "literal_error",
                )
            )
        user = body.get("user")
        if user is not None and not isinstance(user, str):
            errors.append(
                _error_detail(["body", "user"], "Input should be a valid string", "string_type")
            )
        return errors

    @staticmethod
    def _nebius_validate_input(body: dict[str, Any]) -> list[dict[str, Any]]:
        value = body.get("input")
        if value is None:
            return [_error_detail(["body", "input"], "Field required", "missing")]
        if isinstance(value, str):
            return []
        if not isinstance(value, list):
            return [
                _error_detail(
                    ["body", "input"],
                    "Input should be a valid string or a list of strings",
                    "union_type",
                )
            ]
        if not value:
            return [
                _error_detail(
                    ["body", "input"],
                    "List should have at least 1 item after validation, not 0",
                    "too_short",
                )
            ]
        limit = NEBIUS.max_inputs_per_request
        if len(value) > limit:
            return [
                _error_detail(
                    ["body", "input"],
                    f"List should have at most {limit} items after validation, not {len(value)}",
                    "too_long",
                )
            ]
        return [
            _error_detail(["body", "input", i], "Input should be a valid string", "string_type")
            for i, item in enumerate(value)
            if not isinstance(item, str)
        ]

    def _nebius_inner(
        self, incoming: Incoming, body: dict[str, Any] | None, knobs: Knobs, now: float
    ) -> Answer:
        auth = self._check_bearer(incoming.headers)
        if auth is not None:
            return auth
        errors = self._nebius_validate(incoming.body, body)
        if errors or body is None:
            return Answer(422, {"detail": errors})
        model: str = body["model"]
        if model not in NEBIUS.model_dimensions:
            return Answer(404, {"detail": f"Model {model!r} not found. Use GET /v1/models."})
        dimensions: int | None = body.get("dimensions")
        if dimensions is not None and dimensions != NEBIUS.model_dimensions[model]:
            bounds = NEBIUS.dimension_ranges.get(model)
            if bounds is None:
                return Answer(400, {"detail": f"Model {model!r} does not support 'dimensions'."})
            low, high = bounds
            if not low <= dimensions <= high:
                return Answer(
                    400,
                    {
                        "detail": f"'dimensions' must be between {low} and {high} for {model!r}, "
                        f"not {dimensions}."
                    },
                )
        raw_input = body["input"]
        texts: list[str] = [raw_input] if isinstance(raw_input, str) else list(raw_input)
        tier = body.get("service_tier") or "auto"
        tokens = _word_tokens(texts)
        project = incoming.query.get(NEBIUS.project_query_param or "", "") or "default"
        with self._lock:
            requests = self._window(NEBIUS.name, project, "requests")
            token_window = self._window(NEBIUS.name, project, "tokens")
            requests.prune(now)
            token_window.prune(now)
            limited: str | None = None
            over_limit = False
            # The flex tier spends no rate-limit credit (PROVIDERS.md).
            if tier != "flex":
                over = knobs.nebius_over_limit_after
                if over is not None and requests.total + 1 > over:
                    # Served past the project's limit, and said so, instead of a 429.
                    over_limit = True
                    requests.add(now, 1)
                    token_window.add(now, tokens)
                elif knobs.nebius_rpm is not None and requests.total + 1 > knobs.nebius_rpm:
                    limited = f"{knobs.nebius_rpm} requests per minute"
                elif (
                    knobs.nebius_tpm is not None and token_window.total + tokens > knobs.nebius_tpm
                ):
                    limited = f"{knobs.nebius_tpm} tokens per minute"
                else:
                    requests.add(now, 1)
                    token_window.add(now, tokens)
            remaining = self._remaining_headers(knobs, requests, token_window)
        if limited is not None:
            message = f"Rate limit exceeded: {limited} for project {project!r}. Retry later."
            return Answer(429, {"detail": message}, remaining)
        encoding = body.get("encoding_format") or "float"
        data: list[dict[str, Any]] = []
        for index, text in enumerate(texts):
            embedding: Any = (
                embed_base64(NEBIUS.name, model, text, dimensions)
                if encoding == "base64"
                else embed_array(NEBIUS.name, model, text, dimensions).tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        if knobs.shuffle and len(data) > 1:
            with self._lock:
                self._shuffle_rng.shuffle(data)
            if all(item["index"] == i for i, item in enumerate(data)):
                data.append(data.pop(0))  # never in order, so clients must re-order
        payload = {
            "id": f"embd-{uuid.uuid4().hex}",
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "service_tier": "over-limit" if over_limit else _SERVED_TIER.get(tier, tier),
        }
        return Answer(200, payload, remaining)

    # --- Yandex --------------------------------------------------------------------

    def _yandex(
        self, incoming: Incoming, body: dict[str, Any] | None, knobs: Knobs, now: float
    ) -> Answer:
        auth = self._check_yandex_auth(incoming.headers, knobs)
        if auth is not None:
            return auth
        if body is None:
            return self._invalid("the request body must be a JSON object.")
        model = body.get("model")
        folder = self._yandex_folder(model)
        if not isinstance(model, str) or folder is None:
            return self._invalid(
                f"invalid model URI {model!r}: use emb://<folder_id>/<model>/<version> with a "
                f"model in {sorted(YANDEX.model_dimensions)} and a version in "
                f"{list(YANDEX.model_versions)}, or "
                "gpt://<folder_id>/text-embeddings/<version>@<suffix>."
            )
        header_folder = incoming.headers.get((YANDEX.project_header or "").lower())
        if header_folder is not None and header_folder != folder:
            return self._invalid(
                f"folder mismatch: the model URI names folder {folder!r} but the "
                f"{YANDEX.project_header} header says {header_folder!r}."
            )
        encoding = body.get("encoding_format")
        if encoding is not None and encoding not in YANDEX.encodings:
            return self._invalid(
                f"encoding_format {encoding!r} is not supported (base64 is not supported): "
                f"use one of {list(YANDEX.encodings)}."
            )
        text = self._yandex_text(body.get("input"))
        if isinstance(text, Answer):
            return text
        space = resolve_model(YANDEX.name, model)
        dimensions = body.get("dimensions")
        if dimensions is not None and dimensions != space.dimension:
            return self._invalid(
                f"dimensions={dimensions!r} is not supported: {space.name} returns "
                f"{space.dimension} dimensions."
            )
        with self._lock:
            window = self._window(YANDEX.name, folder, "requests")
            window.prune(now)
            allowed = None if knobs.yandex_rps is None else max(1, int(knobs.yandex_rps))
            if allowed is not None and window.total >= allowed:
                message = (
                    "ai.embeddingsTextEmbeddingRequestsPerSecond.rate quota limit exceed: "
                    f"allowed {allowed} requests"
                )
                return Answer(429, _yandex_error(429, message))
            window.add(now, 1)
        vector = embed_array(YANDEX.name, model, text).tolist()
        tokens = _word_tokens([text])
        return Answer(
            200,
            {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    @staticmethod
    def _invalid(message: str) -> Answer:
        return Answer(400, _yandex_error(400, f"INVALID_ARGUMENT: {message}"))

    @staticmethod
    def _yandex_folder(model: object) -> str | None:
        """The folder of a valid Yandex model URI, else None."""
        if not isinstance(model, str):
            return None
        scheme, sep, rest = model.partition("://")
        parts = rest.split("/")
        if not sep or len(parts) != 3 or not parts[0]:
            return None
        folder, name, version = parts
        if scheme == "emb":
            ok = name in YANDEX.model_dimensions and version in YANDEX.model_versions
        elif scheme == "gpt":
            base, at, suffix = version.partition("@")
            ok = name == "text-embeddings" and bool(base) and bool(at) and bool(suffix)
        else:
            ok = False
        return folder if ok else None

    def _yandex_text(self, value: object) -> str | Answer:
        if isinstance(value, list):
            if len(value) != 1:
                return self._invalid(
                    f"input must hold exactly one text per request, got {len(value)}."
                )
            value = value[0]
        if not isinstance(value, str):
            return self._invalid("input must be a non-empty string or a list of one string.")
        if not value.strip():
            return self._invalid("input must not be empty.")
        return value
