"""Deterministic, meaningful stand-in vectors: feature hashing, no model needed.

A text becomes weighted features (lower-cased word stems, stopwords down-weighted,
plus character trigrams of each word), and each feature is hashed with blake2b into
signed buckets. Every feature lands once in each *shell* of the vector
(``[0, 32)``, ``[32, 256)``, ``[256, 2048)``, ... up to the model's dimension), weighted
so each dimension carries the same energy on average; truncating to the first ``N``
dimensions (Matryoshka) therefore keeps every feature and stays meaningful.

Models of an asymmetric pair (Yandex ``text-search-doc`` / ``text-search-query``, and
likewise the ``text-embeddings-v2`` pair) share one hashing space per family, so a query vector retrieves its document, plus a small
model-keyed perturbation (:data:`_OWN_WEIGHT` of the norm) so the two stay tellable
apart. Every value is rounded to float32, so ``float`` and ``base64`` answers decode
to the same Python lists.

Hand-written (about a hundred lines, pure Python) rather than borrowed from a library
such as scikit-learn's ``HashingVectorizer``: the emulator must stay a light extra,
and the shells, the shared doc/query space and the float32 rounding are specific.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import sys
from array import array
from functools import lru_cache
from typing import NamedTuple

from studio_embeddings.providers import NEBIUS, YANDEX

__all__ = [
    "ModelSpace",
    "embed_array",
    "embed_base64",
    "embed_text",
    "resolve_model",
    "to_base64",
]

#: Relative size of the model's own perturbation: the same text embedded by the
#: doc and the query model has cosine similarity of about ``1 / (1 + 0.07**2)``.
_OWN_WEIGHT = 0.07
#: Weight of a query instruction (``Instruct: {task}``) relative to the query itself.
_INSTRUCTION_WEIGHT = 0.1
_STOPWORD_WEIGHT = 0.2
_TRIGRAM_WEIGHT = 0.3
_FIRST_SHELL = 32
_SHELL_GROWTH = 8

_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have how i
    if in into is it its of on or our so than that the their them then there these they this
    to was we were what when where which who whom why will with would you your about after
    also all any each more most not only other over some such under up very
    и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только
    ее мне было вот от меня еще нет о из ему когда даже ну ли если уже или ни быть был него
    до вас нибудь уж вам ведь там потом себя ничего ей может они тут где есть надо ней для
    мы тебя их чем была сам чтобы без будто чего раз тоже себе под будет ж тогда кто этот
    какой""".split()  # noqa: SIM905, RUF001 - a word list reads best as text; Russian is Cyrillic
)
# Naive English suffix stripping, longest first; trigrams cover other languages' morphology.
_SUFFIXES = ("ations", "ation", "ments", "ment", "ness", "ings", "ing", "edly", "ed", "ly", "s")
_NO_STRIP_ENDINGS = ("ss", "us", "is")


class ModelSpace(NamedTuple):
    """How a wire model maps onto the vector generator."""

    provider: str
    name: str  #: canonical model name (Yandex: the bare ``text-search-*`` name)
    space_key: str  #: models that share it live in one space
    own_key: str  #: keys the model's own small perturbation
    dimension: int
    template: str | None  #: query instruction template, if the model has one


def _stem(word: str) -> str:
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(_NO_STRIP_ENDINGS):
                return word
            return word[: -len(suffix)]
    return word


def _add_features(features: dict[str, float], text: str, scale: float) -> None:
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS:
            key = "w:" + word
            features[key] = features.get(key, 0.0) + _STOPWORD_WEIGHT * scale
            continue
        stem = _stem(word)
        key = "w:" + stem
        features[key] = features.get(key, 0.0) + scale
        padded = f"<{stem}>"
        for i in range(len(padded) - 2):
            key = "t:" + padded[i : i + 3]
            features[key] = features.get(key, 0.0) + _TRIGRAM_WEIGHT * scale


def _split_instruction(text: str, template: str | None) -> tuple[str, str] | None:
    """``(task, query)`` if ``text`` follows ``template`` (``...{task}...{query}``)."""
    if template is None or "{task}" not in template or "{query}" not in template:
        return None
    head, _, rest = template.partition("{task}")
    middle, _, tail = rest.partition("{query}")
    if not text.startswith(head) or not text.endswith(tail):
        return None
    body = text[len(head) : len(text) - len(tail)]
    # Tolerate whitespace drift around the separator (e5 wants "Query: ", Qwen3 "Query:").
    for separator in (middle, middle.strip()):
        cut = body.find(separator) if separator else -1
        if cut >= 0:
            return body[:cut], body[cut + len(separator) :]
    return None


def _features(text: str, template: str | None) -> dict[str, float]:
    features: dict[str, float] = {}
    parts = _split_instruction(text, template)
    if parts is None:
        _add_features(features, text, 1.0)
    else:
        task, query = parts
        _add_features(features, query, 1.0)
        _add_features(features, task, _INSTRUCTION_WEIGHT)
    if not features:
        # No word characters at all: still a stable, text-specific unit vector.
        features["raw:" + text] = 1.0
    return features


@lru_cache(maxsize=64)
def _shells(dimension: int) -> tuple[tuple[int, int, float], ...]:
    """``(start, size, weight)`` of each shell of a ``dimension``-long vector."""
    shells: list[tuple[int, int, float]] = []
    start, end = 0, min(_FIRST_SHELL, dimension)
    while start < dimension:
        size = end - start
        shells.append((start, size, math.sqrt(size / dimension)))
        start, end = end, min(end * _SHELL_GROWTH, dimension)
    return tuple(shells)


@lru_cache(maxsize=256)
def _hash_key(key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8"), digest_size=32).digest()


@lru_cache(maxsize=1 << 15)
def _buckets(key: str, feature: str, dimension: int) -> tuple[tuple[int, float], ...]:
    """Signed bucket of ``feature`` in each shell, hashed with blake2b keyed by ``key``."""
    shells = _shells(dimension)
    digest = hashlib.blake2b(
        feature.encode("utf-8"), digest_size=min(64, 4 * len(shells)), key=_hash_key(key)
    ).digest()
    out: list[tuple[int, float]] = []
    for i, (start, size, weight) in enumerate(shells):
        word = int.from_bytes(digest[4 * i : 4 * i + 4], "little")
        sign = -1.0 if word & 1 else 1.0
        out.append((start + (word >> 1) % size, sign * weight))
    return tuple(out)


def _hash_into(
    vec: dict[int, float], features: dict[str, float], key: str, dimension: int, scale: float
) -> None:
    sparse: dict[int, float] = {}
    get = sparse.get
    for feature, weight in features.items():
        for index, signed in _buckets(key, feature, dimension):
            sparse[index] = get(index, 0.0) + signed * weight
    norm = math.sqrt(math.fsum(v * v for v in sparse.values())) or 1.0
    factor = scale / norm
    get = vec.get
    for index, value in sparse.items():
        vec[index] = get(index, 0.0) + value * factor


def resolve_model(provider: str, model: str) -> ModelSpace:
    """Map a wire ``model`` value of ``provider`` onto its vector space.

    Raises:
        ValueError: the provider or the model is unknown.
    """
    if provider == NEBIUS.name:
        if model not in NEBIUS.model_dimensions:
            msg = f"Unknown Nebius model {model!r}: use one of {sorted(NEBIUS.model_dimensions)}."
            raise ValueError(msg)
        return ModelSpace(
            provider=provider,
            name=model,
            space_key=f"nebius:{model}",
            own_key=f"nebius-own:{model}",
            dimension=NEBIUS.model_dimensions[model],
            template=NEBIUS.query_templates.get(model),
        )
    if provider == YANDEX.name:
        name = _yandex_name(model)
        if name is None:
            msg = (
                f"Unknown Yandex model {model!r}: use emb://<folder>/<name>/<version> with a "
                f"name in {sorted(YANDEX.model_dimensions)}, gpt://<folder>/text-embeddings/"
                "<version>@<suffix>, or a bare name."
            )
            raise ValueError(msg)
        return ModelSpace(
            provider=provider,
            name=name,
            # doc and query of one family form an asymmetric pair: one shared space; another
            # family hashes with its own key, so its vectors are not comparable.
            space_key=f"yandex:{YANDEX.model_families.get(name, name)}",
            own_key=f"yandex-own:{name}",
            dimension=YANDEX.model_dimensions[name],
            template=None,
        )
    msg = f"Unknown provider {provider!r}: use one of {[NEBIUS.name, YANDEX.name]}."
    raise ValueError(msg)


def _yandex_name(model: str) -> str | None:
    if model in YANDEX.model_dimensions:
        return model
    if model.startswith("emb://"):
        parts = model[len("emb://") :].split("/")
        if len(parts) == 3 and parts[0] and parts[1] in YANDEX.model_dimensions:
            return parts[1]
        return None
    if model.startswith("gpt://"):
        parts = model[len("gpt://") :].split("/")
        if len(parts) == 3 and parts[0] and parts[1] == "text-embeddings" and "@" in parts[2]:
            # A fine-tuned embedder is a tuned document model.
            return YANDEX.default_doc_model
    return None


@lru_cache(maxsize=2048)
def _cached(space: ModelSpace, text: str, dimensions: int | None) -> array[float]:
    features = _features(text, space.template)
    sparse: dict[int, float] = {}
    _hash_into(sparse, features, space.space_key, space.dimension, 1.0)
    # Word features suffice for the small perturbation, and cost a fraction of all features.
    own = {k: v for k, v in features.items() if not k.startswith("t:")} or features
    _hash_into(sparse, own, space.own_key, space.dimension, _OWN_WEIGHT)
    size = space.dimension
    if dimensions is not None and dimensions != space.dimension:
        # Matryoshka: keep the first N dimensions, then renormalise.
        size = dimensions
        sparse = {i: v for i, v in sparse.items() if i < size}
    norm = math.sqrt(sum(v * v for v in sparse.values()))
    dense = [0.0] * size
    if norm == 0.0:
        dense[0] = 1.0
    else:
        for index, value in sparse.items():
            dense[index] = value / norm
    return array("f", dense)  # rounds every value to float32


def embed_array(
    provider: str, model: str, text: str, dimensions: int | None = None
) -> array[float]:
    """Like :func:`embed_text`, as a (shared, do not mutate) float32 ``array``."""
    space = resolve_model(provider, model)
    if dimensions is None or dimensions == space.dimension:
        return _cached(space, text, None)
    ranges = (NEBIUS if provider == NEBIUS.name else YANDEX).dimension_ranges
    low, high = ranges.get(space.name, (space.dimension, space.dimension))
    if not low <= dimensions <= high:
        msg = f"dimensions={dimensions} is not available for {model!r}: " + (
            f"use {low}..{high}." if low < high else f"it has {space.dimension} only."
        )
        raise ValueError(msg)
    return _cached(space, text, dimensions)


def embed_text(provider: str, model: str, text: str, dimensions: int | None = None) -> list[float]:
    """The exact vector the emulator answers for ``text`` embedded by ``model``.

    Tests recompute expected vectors with it. Vectors are deterministic, L2-normalised,
    float32-exact (so ``float`` and ``base64`` answers decode to this same list), and
    meaningful: texts that share words land near each other.

    Args:
        provider: ``"nebius"`` or ``"yandex"``.
        model: the wire ``model`` value. For Yandex the full
            ``emb://<folder>/text-search-doc/latest`` URI (the folder and version do not
            change the vector), a fine-tuned ``gpt://`` URI, or the bare name.
        text: the input text exactly as sent, query instruction included.
        dimensions: Matryoshka truncation (first N values, renormalised); None for the
            model's native size.

    Returns:
        The vector as a list of Python floats.

    Raises:
        ValueError: unknown provider or model, or ``dimensions`` out of range.

    Example:
        >>> vec = embed_text("yandex", "emb://b1g/text-search-doc/latest", "Paris")
        >>> len(vec)
        256
    """
    return embed_array(provider, model, text, dimensions).tolist()


@lru_cache(maxsize=2048)
def embed_base64(provider: str, model: str, text: str, dimensions: int | None = None) -> str:
    """The ``encoding_format=base64`` answer for ``text``: base64 of :func:`to_base64`.

    Cached like the vectors, so a benchmark's server spends its time on the wire, not on
    encoding the same vector again.
    """
    return base64.b64encode(to_base64(embed_array(provider, model, text, dimensions))).decode()


def to_base64(vector: array[float]) -> bytes:
    """Little-endian float32 bytes of ``vector`` (what ``encoding_format=base64`` encodes)."""
    if sys.byteorder == "little":
        return vector.tobytes()
    swapped = array("f", vector)
    swapped.byteswap()
    return swapped.tobytes()
