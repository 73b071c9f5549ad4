"""The wire: request bodies out; response parsing, decoding and checks in.

A response is parsed once (:func:`parse_body` lifts the base64 strings out of the body so that
``json.loads`` never copies them), checked (one item per input, each index once, every vector
of one length, every value a finite number) and each vector is written into a *target* it is
given: :class:`ListRows` builds the ``list[list[float]]`` the frameworks want. Nothing here
knows which provider it talks to beyond the :class:`~studio_embeddings.providers.Provider` data.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pybase64 import b64decode

from studio_embeddings.errors import ResponseError

if TYPE_CHECKING:
    from studio_embeddings._settings import Settings

__all__ = [
    "Answer",
    "ArrayRows",
    "Batch",
    "ListRows",
    "Rows",
    "check_texts",
    "parse_answer",
    "plan",
    "request_kwargs",
]


@dataclass
class Batch:
    """The texts of one request and where they start in the call."""

    start: int
    texts: list[str]
    tokens: int  # estimated input tokens (characters / 4), for token-rate pacing


def check_texts(texts: Iterable[str]) -> list[str]:
    """The texts as a list, each a non-blank string that UTF-8 can carry; errors name the
    position, and nothing is sent before every text passed."""
    if texts is None or isinstance(texts, (str, bytes, Mapping)):
        what = "a single string: wrap it in a list" if isinstance(texts, str) else "a list"
        msg = f"texts must be a list of strings, not {type(texts).__name__} ({what})."
        raise TypeError(msg)
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            msg = f"texts[{i}] is {type(text).__name__}, not str: every text must be a string."
            raise TypeError(msg)
        if not text.strip():
            msg = f"texts[{i}] is empty or whitespace only: providers refuse or mis-embed it."
            raise ValueError(msg)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                msg = (
                    f"texts[{i}] cannot be encoded as UTF-8: {e.reason} at character "
                    f"{e.start} (a lone surrogate such as '\\ud800'?)."
                )
                raise ValueError(msg) from None
    return out


def plan(texts: Sequence[str], batch_size: int) -> list[Batch]:
    """Split ``texts`` into requests of at most ``batch_size`` texts, in order."""
    return [
        Batch(i, list(texts[i : i + batch_size]), sum(map(len, texts[i : i + batch_size])) // 4 + 1)
        for i in range(0, len(texts), batch_size)
    ]


def request_kwargs(
    settings: Settings, batch: Batch, model: str, timeout: float, authorization: str
) -> dict[str, Any]:
    """Keyword arguments of ``embeddings.create`` for one request; every value explicit."""
    single = settings.provider.max_inputs_per_request == 1
    texts: str | list[str] = batch.texts[0] if single else batch.texts
    extra_body: dict[str, Any] = {}
    if not single:
        # The SDK walks every item of `input` through its typed transform (about 45 us a
        # text, 15% of a bulk call's CPU); the same list sent as a body extra is not
        # walked. The extra replaces the placeholder in the JSON body.
        extra_body["input"] = texts
        texts = [""]
    if settings.service_tier is not None:
        # Not an argument of the openai SDK: it travels in the body as an extra.
        extra_body["service_tier"] = settings.service_tier
    kwargs: dict[str, Any] = {
        "input": texts,
        "model": model,
        "encoding_format": settings.encoding_format,
        "extra_headers": {"Authorization": authorization},
        "timeout": timeout,
    }
    if extra_body:
        kwargs["extra_body"] = extra_body
    if settings.dimensions is not None:
        kwargs["dimensions"] = settings.dimensions
    if settings.user is not None:
        kwargs["user"] = settings.user
    return kwargs


# ------------------------------------------------------------------ responses


class Rows(Protocol):
    """Where the vectors of a call go, row by row (a list of lists, or a float32 matrix)."""

    dims: int | None

    def put(self, row: int, embedding: Any, lifted: Lifted, provider: str) -> None:
        """Decode ``embedding`` (a float list, base64 text, or a lifted string's number)
        into row ``row``; raise :class:`ResponseError` if it is not a vector of ``dims``."""


@dataclass
class Answer:
    """A checked 200 answer: its items in input order, what it reported."""

    embeddings: list[Any]  # one per input, in input order (a float list, base64, or a number)
    lifted: Lifted
    tokens: int
    service_tier: str | None


def parse_answer(body: bytes, n: int, provider: str) -> Answer:
    """Parse and check the body of a 200 answer to a request of ``n`` inputs."""
    try:
        payload, lifted = parse_body(body)
        data = payload["data"]
    except (ValueError, KeyError, TypeError, RecursionError) as e:  # RecursionError: [[[[...
        msg = f"{provider} answered 200 with a body that is not an embeddings list: {body[:200]!r}"
        raise ResponseError(msg) from e
    if not isinstance(data, list) or len(data) != n:
        got = len(data) if isinstance(data, list) else type(data).__name__
        msg = f"{provider} returned {got} vectors for {n} inputs."
        raise ResponseError(msg)
    ordered: list[Any] = [None] * n
    seen = [False] * n
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            msg = f"{provider} returned data[{position}] = {type(item).__name__}, not an object."
            raise ResponseError(msg)
        index = item.get("index", 0 if n == 1 else None)
        if type(index) is not int or not 0 <= index < n or seen[index]:
            msg = (
                f"{provider} returned a vector with a missing, duplicate or out-of-range index "
                f"{index!r} for a request of {n} inputs."
            )
            raise ResponseError(msg)
        seen[index] = True
        ordered[index] = item.get("embedding")
    usage = payload.get("usage") if isinstance(payload, dict) else None
    tokens = 0
    if isinstance(usage, dict):
        reported = usage.get("total_tokens") or usage.get("prompt_tokens") or 0
        ok = isinstance(reported, (int, float)) and 0 <= reported < 2**63  # not NaN or inf
        tokens = int(reported) if ok else 0
    tier = payload.get("service_tier") if isinstance(payload, dict) else None
    return Answer(ordered, lifted, tokens, tier if isinstance(tier, str) else None)


class ListRows:
    """Vectors as ``list[list[float]]``, the frameworks' type."""

    def __init__(self, n: int) -> None:
        self.out: list[list[float] | None] = [None] * n
        self.dims: int | None = None

    def put(self, row: int, embedding: Any, lifted: Lifted, provider: str) -> None:
        vec = decode(embedding, provider, lifted)
        check_length(self, len(vec), provider)
        self.out[row] = vec

    def vectors(self) -> list[list[float]]:
        if any(v is None for v in self.out):  # pragma: no cover - guarded by the checks
            msg = "Some inputs got no vector."
            raise ResponseError(msg)
        return self.out  # type: ignore[return-value]


class ArrayRows:
    """Vectors as one C-contiguous float32 matrix, allocated once at the first vector's length.

    base64 answers are decoded straight into their rows (no Python float is built); float
    answers are parsed into them. The values are the float32 values the provider sent.
    """

    def __init__(self, n: int, np: Any) -> None:
        self.n = n
        self.np = np  # numpy, imported by the caller (an optional dependency)
        self.dims: int | None = None
        self.matrix: Any = None

    def put(self, row: int, embedding: Any, lifted: Lifted, provider: str) -> None:
        raw = base64_of(embedding, lifted)
        if raw is not None:
            data = b64_float32(raw, provider)
            self._row(row, len(data) // 4, provider)[:] = self.np.frombuffer(data, "<f4")
        elif isinstance(embedding, list) and embedding:
            check_floats(embedding, provider)
            target = self._row(row, len(embedding), provider)
            target[:] = embedding
            if not self.np.isfinite(target).all():  # finite as float64, past float32's range
                msg = f"{provider} returned an embedding value outside the float32 range."
                raise ResponseError(msg)
        else:
            decode(embedding, provider, lifted)  # raises the list path's error for it

    def _row(self, row: int, length: int, provider: str) -> Any:
        check_length(self, length, provider)
        if self.matrix is None:
            self.matrix = self.np.empty((self.n, length), dtype=self.np.float32)
        return self.matrix[row]

    def array(self, dims: int) -> Any:
        if self.matrix is None:  # no text: an empty matrix of the expected width
            return self.np.empty((0, dims), dtype=self.np.float32)
        return self.matrix


def check_length(rows: Rows, length: int, provider: str) -> None:
    """Every vector of one call has the length of the first."""
    if rows.dims is None:
        rows.dims = length
    elif length != rows.dims:
        msg = f"{provider} returned vectors of different lengths ({rows.dims} and {length}) in one call."
        raise ResponseError(msg)


def check_floats(values: list[Any], provider: str) -> None:
    """A vector sent as a JSON list: non-empty, every item a finite number."""
    try:
        # sum() runs in C; a NaN or an infinity makes it non-finite, a non-number a TypeError.
        total = sum(values, 0.0)
    except OverflowError:  # an integer literal past float's range
        msg = f"{provider} returned an embedding with a value out of float range."
        raise ResponseError(msg) from None
    except TypeError:
        bad = next((v for v in values if type(v) not in (float, int)), None)
        msg = f"{provider} returned an embedding with a non-number item {bad!r}."
        raise ResponseError(msg) from None
    if total - total != 0.0:  # NaN or infinite (a finite sum of float32 values cannot overflow)
        msg = f"{provider} returned an embedding with a NaN or infinite value."
        raise ResponseError(msg)
    if any(type(v) is bool for v in values):
        msg = f"{provider} returned an embedding with a boolean item."
        raise ResponseError(msg)


def check_float32_bytes(data: bytes | memoryview, provider: str) -> None:
    """Little-endian float32 bytes hold no NaN or infinity (all exponent bits set)."""
    high = bytes(data[3::4])
    if b"\x7f" not in high and b"\xff" not in high:
        return  # the common case, decided by two memchr scans
    low = bytes(data[2::4])
    if any((h & 0x7F) == 0x7F and (lo & 0x80) for h, lo in zip(high, low, strict=False)):
        msg = f"{provider} returned an embedding with a NaN or infinite value."
        raise ResponseError(msg)


def b64_float32(raw: str | memoryview, provider: str) -> bytes:
    """base64 text -> float32 bytes, checked (valid base64, whole floats, none NaN/inf)."""
    try:
        data = b64decode(raw, validate=True)
    except ValueError as e:  # binascii.Error is a ValueError
        msg = f"{provider} returned an embedding that is not base64 of float32 values: {e}"
        raise ResponseError(msg) from e
    if len(data) % 4:
        msg = (
            f"{provider} returned an embedding that is not base64 of float32 values: "
            f"{len(data)} bytes is not a whole number of floats"
        )
        raise ResponseError(msg)
    if not data:
        msg = f"{provider} returned an empty embedding."
        raise ResponseError(msg)
    check_float32_bytes(data, provider)
    return data


def base64_of(embedding: Any, lifted: Lifted) -> str | memoryview | None:
    """The base64 text of an item's embedding (inline or lifted), or None for a float list."""
    if isinstance(embedding, str):
        return embedding
    if type(embedding) is int:
        # A number the server sent itself (or a lifted string another item took) is None.
        return lifted.take(embedding)
    return None


_LITTLE_ENDIAN = array("f", [1.0]).tobytes() == b"\x00\x00\x80?"


def decode(embedding: Any, provider: str, lifted: Lifted | None = None) -> list[float]:
    """One item's embedding as a list of floats, checked."""
    if isinstance(embedding, list):
        if not embedding:
            msg = f"{provider} returned an empty embedding."
            raise ResponseError(msg)
        check_floats(embedding, provider)
        return embedding
    raw = base64_of(embedding, lifted or Lifted(memoryview(b""), [], []))
    if raw is None:
        msg = f"{provider} returned an embedding of type {type(embedding).__name__}, not a list or base64."
        raise ResponseError(msg)
    # pybase64 decodes about 10x faster than binascii, and array() turns the bytes into
    # floats as fast as numpy does, without needing it.
    vec = array("f", b64_float32(raw, provider))
    if not _LITTLE_ENDIAN:  # pragma: no cover - big-endian hosts
        vec.byteswap()
    return vec.tolist()


_EMBEDDING_KEY = b'"embedding"'
_JSON_SPACE = b" \t\r\n"


@dataclass
class Lifted:
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


def parse_body(body: bytes) -> tuple[Any, Lifted]:
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
        return json.loads(body), Lifted(memoryview(body), spans, [])
    pieces.append(body[copied:])
    return json.loads(b"".join(pieces)), Lifted(memoryview(body), spans, [False] * len(spans))
