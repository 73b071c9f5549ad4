"""The shared quota's pieces that need no server: URLs, scopes, masking, pickling, the extra."""

from __future__ import annotations

import hashlib
import importlib
import pickle
import sys

import pytest

pytest.importorskip("redis", reason="redis-py is missing: pip install 'studio-embeddings[redis]'")

from studio_embeddings import ConfigurationError, QuotaStoreError, StudioEmbeddingsError
from studio_embeddings._quota_redis import RedisLimiter, mask_url, quota_scope

SECRET = "pa55-w0rd"


def _limiter(url: str, **kwargs: object) -> RedisLimiter:
    rates: dict[str, object] = {
        "requests_per_second": 10.0,
        "requests_per_minute": None,
        "tokens_per_minute": None,
    }
    rates.update(kwargs)
    return RedisLimiter(url, "yandex:folder", **rates)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"redis://:{SECRET}@cache:6379/0", "redis://:****@cache:6379/0"),
        (f"rediss://user:{SECRET}@cache:6380/2", "rediss://user:****@cache:6380/2"),
        (f"redis://{SECRET}@cache", "redis://****@cache"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        (f"unix:///run/r.sock?db=1&password={SECRET}", "unix:///run/r.sock?db=1&password=****"),
        (f"unix://:{SECRET}@/run/r.sock", "unix://:****@/run/r.sock"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert SECRET not in mask_url(url)


def test_repr_and_str_mask_the_password() -> None:
    limiter = _limiter(f"redis://:{SECRET}@cache:6379/0")
    assert repr(limiter) == "RedisLimiter('redis://:****@cache:6379/0', scope='yandex:folder')"
    assert SECRET not in str(limiter)


@pytest.mark.parametrize(
    "url",
    [f"http://:{SECRET}@cache:6379", f":{SECRET}@cache:6379", "", f"memcached://u:{SECRET}@h"],
)
def test_only_redis_urls_are_accepted(url: str) -> None:
    with pytest.raises(ConfigurationError, match="redis://, rediss:// or unix://") as info:
        _limiter(url)
    assert SECRET not in str(info.value)


def test_an_invalid_redis_url_is_a_configuration_error_without_the_password() -> None:
    with pytest.raises(ConfigurationError, match="not a valid Redis URL") as info:
        _limiter(f"redis://:{SECRET}@cache:notaport/0")
    assert SECRET not in str(info.value)
    assert ":****@" in str(info.value)


@pytest.mark.parametrize("scope", ["", "a b", "x{y}"])
def test_scope_is_checked(scope: str) -> None:
    with pytest.raises(ConfigurationError, match="scope"):
        RedisLimiter(
            "redis://cache",
            scope,
            requests_per_second=1,
            requests_per_minute=None,
            tokens_per_minute=None,
        )


@pytest.mark.parametrize(
    "field", ["requests_per_second", "requests_per_minute", "tokens_per_minute"]
)
def test_negative_rates_are_refused(field: str) -> None:
    with pytest.raises(ConfigurationError, match="positive"):
        _limiter("redis://cache", **{field: -1.0})


def test_quota_scope() -> None:
    assert quota_scope("yandex", "b1gfolder", "key") == "yandex:b1gfolder"
    assert quota_scope("nebius", "proj-1", None) == "nebius:proj-1"
    key = "v1.secret-api-key"
    scope = quota_scope("nebius", None, key)
    assert scope == f"nebius:key-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    assert key not in scope
    with pytest.raises(ConfigurationError, match="project"):
        quota_scope("nebius", None, None)


def test_pickles_without_a_connection() -> None:
    limiter = _limiter(f"redis://:{SECRET}@cache:6379/0", tokens_per_minute=6000.0)
    limiter.on_success()
    copy = pickle.loads(pickle.dumps(limiter))
    assert repr(copy) == repr(limiter)
    assert copy._client is None
    assert copy._accepted == 0  # counts belong to the process that saw the requests
    assert copy._rates == limiter._rates


def test_headroom_applies_to_the_configured_rates() -> None:
    limiter = _limiter("redis://cache", requests_per_second=10.0, tokens_per_minute=6000.0)
    (rps, tpm) = limiter._rates
    assert rps[0] == pytest.approx(1 / 9.7)
    assert tpm[0] == pytest.approx(60 / (6000 * 0.97))
    assert tpm[1] == pytest.approx(6000 * 0.97 / 6)


def test_quota_store_error_is_a_studio_embeddings_error() -> None:
    assert issubclass(QuotaStoreError, StudioEmbeddingsError)


def test_without_redis_the_import_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "studio_embeddings._quota_redis")
    with pytest.raises(ImportError, match=r"pip install 'studio-embeddings\[redis\]'"):
        importlib.import_module("studio_embeddings._quota_redis")
