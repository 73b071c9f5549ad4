"""Contract tests of the LlamaIndex shells against the emulator, over loopback.

LlamaIndex ships no standard test suite for embeddings, so this is ours: every behaviour the
classes promise, asserted on what reaches the (emulated) wire and on the vectors that come back.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from llama_index.core.rate_limiter import BaseRateLimiter
from llama_index.core.storage.kvstore import SimpleKVStore

from studio_embeddings import (
    NEBIUS,
    AuthenticationError,
    ConnectionFailedError,
    DeadlineExceededError,
    RetryPolicy,
    ServerError,
)
from studio_embeddings.emulator import Emulator, embed_text
from studio_embeddings.llama_index import NebiusEmbedding, YandexEmbedding

FOLDER = "b1gtestfolder"
NEBIUS_MODEL = NEBIUS.default_doc_model
QWEN_QUERY = "Instruct: {task}\nQuery:{query}"
FAST = RetryPolicy(max_retries=3, initial_wait=0.001, max_wait=0.01, jitter=False)

CORPUS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
    "The Moscow Kremlin is a fortified complex in the centre of Moscow, Russia.",
    "The Colosseum is an ancient oval amphitheatre in the centre of Rome, Italy.",
    "The Great Wall of China is a series of fortifications across northern China.",
    "Big Ben is the nickname of the Great Bell of the clock in London.",
]


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def _emulator_server() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def emu(_emulator_server: Emulator) -> Iterator[Emulator]:
    """The module's emulator, reset to its defaults before and after each test."""
    _emulator_server.reset()
    # Tests that are not about the Yandex quota should not wait for it.
    _emulator_server.configure(yandex_rps=None)
    yield _emulator_server
    _emulator_server.reset()


def make_nebius(emu: Emulator, **kwargs: Any) -> NebiusEmbedding:
    return NebiusEmbedding(
        **{"api_key": "neb-key", "base_url": emu.base_url("nebius"), "retry_policy": FAST, **kwargs}
    )


def make_yandex(emu: Emulator, **kwargs: Any) -> YandexEmbedding:
    return YandexEmbedding(
        **{
            "api_key": "ya-key",
            "folder_id": FOLDER,
            "base_url": emu.base_url("yandex"),
            "retry_policy": FAST,
            "requests_per_second": 0,
            **kwargs,
        }
    )


@dataclass(frozen=True)
class Flavour:
    """One provider as the contract tests see it."""

    name: str
    make: Callable[..., Any]
    doc_model: str
    query_model: str

    def doc_vector(self, text: str) -> list[float]:
        return embed_text(self.name, self.doc_model, text)

    def query_vector(self, text: str) -> list[float]:
        sent = text
        if self.name == "nebius":
            sent = QWEN_QUERY.format(task=NEBIUS.default_query_task, query=text)
        return embed_text(self.name, self.query_model, sent)


NEB = Flavour("nebius", make_nebius, NEBIUS_MODEL, NEBIUS_MODEL)
YA = Flavour(
    "yandex",
    make_yandex,
    f"emb://{FOLDER}/text-search-doc/latest",
    f"emb://{FOLDER}/text-search-query/latest",
)
FLAVOURS = pytest.mark.parametrize("flavour", [NEB, YA], ids=["nebius", "yandex"])


def embedding_requests(emu: Emulator) -> list[Any]:
    return [r for r in emu.requests if r.path.endswith("/embeddings")]


def max_in_flight(emu: Emulator, latency_s: float) -> int:
    """Most requests that arrived within less than one answer's latency of each other.

    Every answer takes at least ``latency_s``, so requests arriving closer together than that
    were in flight at the same time.
    """
    times = sorted(r.time for r in embedding_requests(emu))
    window = latency_s * 0.8
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


# ------------------------------------------------------------ sync and async


@FLAVOURS
def test_sync_documents_and_query(emu: Emulator, flavour: Flavour) -> None:
    e = flavour.make(emu)
    texts = ["The Eiffel Tower is in Paris.", "The Kremlin is in Moscow."]
    assert e.get_text_embedding_batch(texts) == [flavour.doc_vector(t) for t in texts]
    assert e.get_text_embedding(texts[0]) == flavour.doc_vector(texts[0])
    assert e.get_query_embedding("Which tower?") == flavour.query_vector("Which tower?")
    assert e._get_text_embeddings(texts) == [flavour.doc_vector(t) for t in texts]
    assert e._get_query_embedding("Which tower?") == flavour.query_vector("Which tower?")


@FLAVOURS
async def test_async_documents_and_query(emu: Emulator, flavour: Flavour) -> None:
    e = flavour.make(emu)
    texts = ["The Eiffel Tower is in Paris.", "The Kremlin is in Moscow."]
    assert await e.aget_text_embedding_batch(texts) == [flavour.doc_vector(t) for t in texts]
    assert await e.aget_text_embedding(texts[1]) == flavour.doc_vector(texts[1])
    assert await e.aget_query_embedding("Which tower?") == flavour.query_vector("Which tower?")
    assert await e._aget_text_embeddings(texts) == [flavour.doc_vector(t) for t in texts]
    assert await e._aget_text_embedding(texts[0]) == flavour.doc_vector(texts[0])
    assert await e._aget_query_embedding("q") == flavour.query_vector("q")


def test_nebius_batch_order_across_many_batches(emu: Emulator) -> None:
    e = make_nebius(emu, embed_batch_size=3, max_concurrency=4)
    texts = [f"document number {i} about topic {i % 7}" for i in range(40)]
    expected = [NEB.doc_vector(t) for t in texts]
    assert e.get_text_embedding_batch(texts) == expected
    assert len(embedding_requests(emu)) == 14
    emu.clear()
    assert asyncio.run(e.aget_text_embedding_batch(texts)) == expected
    assert len(embedding_requests(emu)) == 14


def test_yandex_batch_order_one_text_per_request(emu: Emulator) -> None:
    e = make_yandex(emu, max_concurrency=6)
    texts = [f"text {i} on subject {i * 3}" for i in range(18)]
    expected = [YA.doc_vector(t) for t in texts]
    assert e.get_text_embedding_batch(texts) == expected
    assert asyncio.run(e.aget_text_embedding_batch(texts)) == expected
    requests = embedding_requests(emu)
    assert len(requests) == 36
    assert all(isinstance(r.body["input"], str) for r in requests)


def test_embed_batch_size_changes_the_number_of_requests(emu: Emulator) -> None:
    texts = [f"t{i}" for i in range(10)]
    for size, count in ((1, 10), (2, 5), (4, 3), (10, 1), (64, 1)):
        emu.clear()
        make_nebius(emu, embed_batch_size=size).get_text_embedding_batch(texts)
        requests = embedding_requests(emu)
        assert len(requests) == count
        assert max(len(r.body["input"]) for r in requests) == min(size, 10)


def test_one_call_for_the_whole_list_not_one_per_slice(emu: Emulator) -> None:
    # LlamaIndex's own batch path calls _get_text_embeddings once per embed_batch_size slice;
    # ours hands the whole list to the core, which runs the slices concurrently.
    emu.configure(latency_ms=80)
    e = make_nebius(emu, embed_batch_size=2, max_concurrency=5)
    start = time.monotonic()
    e.get_text_embedding_batch([f"t{i}" for i in range(10)])
    elapsed = time.monotonic() - start
    assert len(embedding_requests(emu)) == 5
    assert max_in_flight(emu, 0.08) == 5
    assert elapsed < 5 * 0.08


# -------------------------------------------------------------- concurrency


@pytest.mark.parametrize("mode", ["sync", "async"])
@FLAVOURS
def test_max_concurrency_is_respected(emu: Emulator, flavour: Flavour, mode: str) -> None:
    latency = 0.1
    emu.configure(latency_ms=latency * 1000)
    e = flavour.make(emu, embed_batch_size=1, max_concurrency=3)
    texts = [f"text {i}" for i in range(9)]
    if mode == "sync":
        vectors = e.get_text_embedding_batch(texts)
    else:
        vectors = asyncio.run(e.aget_text_embedding_batch(texts))
    assert vectors == [flavour.doc_vector(t) for t in texts]
    assert len(embedding_requests(emu)) == 9
    assert max_in_flight(emu, latency) == 3


async def test_async_batch_does_not_block_the_event_loop(emu: Emulator) -> None:
    emu.configure(latency_ms=100)
    e = make_nebius(emu, embed_batch_size=1, max_concurrency=2)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await e.aget_text_embedding_batch([f"t{i}" for i in range(4)])
    done.set()
    await task
    assert ticks >= 10  # ~200 ms of answers; the loop kept ticking throughout


def test_yandex_default_pacing_stays_within_the_quota(emu: Emulator) -> None:
    emu.configure(yandex_rps=10)
    e = make_yandex(emu, requests_per_second=None)
    assert e.requests_per_second == 10
    texts = [f"t{i}" for i in range(13)]
    start = time.monotonic()
    assert e.get_text_embedding_batch(texts) == [YA.doc_vector(t) for t in texts]
    assert time.monotonic() - start >= 1.1  # 13 requests at 10/s: the 13th waits 1.2 s
    # The core paces to 97% of the quota (Provider.pacing_headroom): the 11th request lands
    # ~30 ms clear of the emulator's sliding 1 s window. On a heavily loaded machine one
    # request may still meet the boundary; it is then retried, never lost.
    statuses = [r.status for r in embedding_requests(emu)]
    assert statuses.count(200) == 13
    assert statuses.count(429) <= 1


# ----------------------------------------------------- doc vs query, encodings


def test_yandex_doc_and_query_models_in_the_uri(emu: Emulator) -> None:
    e = make_yandex(emu)
    e.get_text_embedding("doc")
    e.get_query_embedding("query")
    doc, query = embedding_requests(emu)
    assert doc.body["model"] == f"emb://{FOLDER}/text-search-doc/latest"
    assert query.body["model"] == f"emb://{FOLDER}/text-search-query/latest"
    assert (doc.body["input"], query.body["input"]) == ("doc", "query")


def test_yandex_model_version_and_query_model_fields(emu: Emulator) -> None:
    e = make_yandex(emu, model_version="rc", query_model="text-search-doc")
    e.get_query_embedding("q")
    assert embedding_requests(emu)[0].body["model"] == f"emb://{FOLDER}/text-search-doc/rc"


def test_nebius_instruction_on_queries_only(emu: Emulator) -> None:
    e = make_nebius(emu)
    e.get_text_embedding_batch(["a document"])
    e.get_query_embedding("a question")
    doc, query = embedding_requests(emu)
    assert doc.body["input"] == ["a document"]
    assert query.body["input"] == [
        QWEN_QUERY.format(task=NEBIUS.default_query_task, query="a question")
    ]


def test_nebius_instruction_off_and_custom(emu: Emulator) -> None:
    make_nebius(emu, query_instruction="").get_query_embedding("raw question")
    make_nebius(emu, query_instruction="Find the landmark").get_query_embedding("tower")
    off, custom = embedding_requests(emu)
    assert off.body["input"] == ["raw question"]
    assert custom.body["input"] == ["Instruct: Find the landmark\nQuery:tower"]


def test_yandex_sends_float_only(emu: Emulator) -> None:
    e = make_yandex(emu)
    e.get_text_embedding_batch(["a", "b"])
    asyncio.run(e.aget_query_embedding("c"))
    assert [r.body["encoding_format"] for r in embedding_requests(emu)] == ["float"] * 3
    with pytest.raises(ValueError, match="encoding_format"):
        make_yandex(emu, encoding_format="base64")


def test_nebius_base64_by_default_decodes_exactly(emu: Emulator) -> None:
    text = "Exact decoding of base64 vectors"
    vector = make_nebius(emu).get_text_embedding(text)
    as_float = make_nebius(emu, encoding_format="float").get_text_embedding(text)
    b64, flt = embedding_requests(emu)
    assert (b64.body["encoding_format"], flt.body["encoding_format"]) == ("base64", "float")
    assert vector == as_float == embed_text("nebius", NEBIUS_MODEL, text)


def test_nebius_dimensions_and_service_tier(emu: Emulator) -> None:
    e = make_nebius(emu, dimensions=64, service_tier="flex")
    vector = e.get_text_embedding("short vector")
    assert vector == embed_text("nebius", NEBIUS_MODEL, "short vector", dimensions=64)
    body = embedding_requests(emu)[0].body
    assert (body["dimensions"], body["service_tier"]) == (64, "flex")


# -------------------------------------------------------- project id and auth


def test_nebius_project_id_goes_in_the_query_string(emu: Emulator) -> None:
    make_nebius(emu, project_id="proj-42").get_text_embedding("x")
    make_nebius(emu).get_text_embedding("x")
    with_project, without = embedding_requests(emu)
    assert with_project.query == {"ai_project_id": "proj-42"}
    assert "ai_project_id" not in without.query
    assert "openai-project" not in with_project.headers


def test_yandex_folder_goes_in_the_uri_and_header(emu: Emulator) -> None:
    make_yandex(emu).get_query_embedding("x")
    request = embedding_requests(emu)[0]
    assert request.body["model"].startswith(f"emb://{FOLDER}/")
    assert request.headers["openai-project"] == FOLDER
    assert request.query == {}


def test_auth_headers(emu: Emulator) -> None:
    make_nebius(emu).get_text_embedding("x")
    make_yandex(emu).get_text_embedding("x")
    make_yandex(emu, api_key=None, iam_token="iam-token").get_text_embedding("x")
    nebius, ya_key, ya_token = embedding_requests(emu)
    assert nebius.headers["authorization"] == "Bearer neb-key"
    assert ya_key.headers["authorization"] == "Api-Key ya-key"
    assert ya_token.headers["authorization"] == "Bearer iam-token"


def test_env_credentials_reach_the_request(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEBIUS_API_KEY", "env-neb")
    monkeypatch.setenv("NEBIUS_API_BASE", emu.base_url("nebius"))
    monkeypatch.setenv("NEBIUS_PROJECT_ID", "env-project")
    monkeypatch.setenv("YC_IAM_TOKEN", "env-iam")
    monkeypatch.setenv("YC_FOLDER_ID", "b1genv")
    monkeypatch.setenv("YC_API_BASE", emu.base_url("yandex"))
    NebiusEmbedding().get_text_embedding("x")
    YandexEmbedding(requests_per_second=0).get_text_embedding("x")
    nebius, ya = embedding_requests(emu)
    assert nebius.headers["authorization"] == "Bearer env-neb"
    assert nebius.query == {"ai_project_id": "env-project"}
    assert ya.headers["authorization"] == "Bearer env-iam"
    assert ya.body["model"] == "emb://b1genv/text-search-doc/latest"


@FLAVOURS
def test_openai_env_never_reaches_a_request(
    emu: Emulator, flavour: Flavour, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-leak")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/openai-leak")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-leak")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-leak")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "X-Leak: yes")
    e = flavour.make(emu)
    e.get_text_embedding_batch(["a", "b"])
    asyncio.run(e.aget_query_embedding("c"))
    requests = embedding_requests(emu)
    assert requests
    for r in requests:
        dump = repr((r.headers, r.query, r.body, r.path))
        assert "leak" not in dump.lower()
        assert "openai-organization" not in r.headers
        assert r.headers.get("openai-project") in (None, FOLDER)


def test_data_logging_and_default_headers(emu: Emulator) -> None:
    make_yandex(emu, data_logging=False, default_headers={"x-trace-id": "abc"}).get_text_embedding(
        "x"
    )
    make_nebius(emu, default_headers={"x-trace-id": "def"}).get_text_embedding("x")
    ya, nebius = embedding_requests(emu)
    assert ya.headers["x-data-logging-enabled"] == "false"
    assert ya.headers["x-trace-id"] == "abc"
    assert nebius.headers["x-trace-id"] == "def"
    assert "x-data-logging-enabled" not in nebius.headers


def test_iam_token_callable_is_refreshed_on_401(emu: Emulator) -> None:
    issued: list[str] = []

    def fresh_token() -> str:
        issued.append(f"iam-{len(issued) + 1}")
        return issued[-1]

    e = make_yandex(emu, api_key=None, iam_token=fresh_token)
    emu.script("yandex", [401])
    assert e.get_text_embedding("x") == YA.doc_vector("x")
    assert issued == ["iam-1", "iam-2"]
    assert [r.headers["authorization"] for r in embedding_requests(emu)] == [
        "Bearer iam-1",
        "Bearer iam-2",
    ]
    assert [r.status for r in embedding_requests(emu)] == [401, 200]


async def test_iam_token_callable_is_refreshed_on_401_async(emu: Emulator) -> None:
    tokens = iter(["old", "new"])
    e = make_yandex(emu, api_key=None, iam_token=lambda: next(tokens))
    emu.script("yandex", [401])
    assert await e.aget_query_embedding("x") == YA.query_vector("x")
    assert [r.headers["authorization"] for r in embedding_requests(emu)] == [
        "Bearer old",
        "Bearer new",
    ]


def test_wrong_key_is_not_retried(emu: Emulator) -> None:
    emu.configure(valid_keys=["right"])
    with pytest.raises(AuthenticationError) as info:
        make_nebius(emu, api_key="wrong-key-value").get_text_embedding("x")
    assert "wrong-key-value" not in str(info.value)
    assert len(embedding_requests(emu)) == 1


# ------------------------------------------------------------------ retries


@pytest.mark.parametrize("mode", ["sync", "async"])
@FLAVOURS
def test_max_retries_bounds_the_attempts(emu: Emulator, flavour: Flavour, mode: str) -> None:
    e = flavour.make(emu, max_retries=2)
    emu.script(flavour.name, [503, 503, 503, 503])
    call: Callable[[], object] = (
        (lambda: e.get_text_embedding("x"))
        if mode == "sync"
        else (lambda: asyncio.run(e.aget_text_embedding("x")))
    )
    with pytest.raises(ServerError):
        call()
    assert len(embedding_requests(emu)) == 3
    emu.clear()
    emu.script(flavour.name, [503, 503])
    assert e.get_text_embedding("x") == flavour.doc_vector("x")
    assert [r.status for r in embedding_requests(emu)] == [503, 503, 200]


def test_max_retries_zero_is_one_attempt(emu: Emulator) -> None:
    emu.script("nebius", [503])
    with pytest.raises(ServerError):
        make_nebius(emu, max_retries=0).get_text_embedding("x")
    assert len(embedding_requests(emu)) == 1


def test_timeout_field(emu: Emulator) -> None:
    emu.configure(latency_ms=400)
    with pytest.raises(ConnectionFailedError, match="timeout"):
        make_nebius(emu, timeout=0.05, max_retries=0).get_text_embedding("x")


# ---------------------------------------------------------------- callbacks


class Recorder(BaseCallbackHandler):
    """Keeps every EMBEDDING event's start and end payloads."""

    def __init__(self) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self.starts: list[dict[str, Any]] = []
        self.ends: list[dict[str, Any]] = []

    def on_event_start(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        if event_type == CBEventType.EMBEDDING:
            self.starts.append(payload or {})
        return event_id

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        if event_type == CBEventType.EMBEDDING:
            self.ends.append(payload or {})

    def start_trace(self, trace_id: str | None = None) -> None:
        return None

    def end_trace(self, trace_id: str | None = None, trace_map: Any = None) -> None:
        return None


def _words(texts: list[str]) -> int:
    return sum(len(t.split()) for t in texts)


@pytest.mark.parametrize("mode", ["sync", "async"])
@FLAVOURS
def test_embedding_events_carry_chunks_vectors_and_usage(
    emu: Emulator, flavour: Flavour, mode: str
) -> None:
    recorder = Recorder()
    e = flavour.make(emu, callback_manager=CallbackManager([recorder]), embed_batch_size=2)
    texts = ["one two three", "four five", "six", "seven eight nine ten"]
    if mode == "sync":
        vectors = e.get_text_embedding_batch(texts)
        query = e.get_query_embedding("where is it")
    else:
        vectors = asyncio.run(e.aget_text_embedding_batch(texts))
        query = asyncio.run(e.aget_query_embedding("where is it"))
    assert len(recorder.starts) == len(recorder.ends) == 2  # one event per call
    assert recorder.starts[0][EventPayload.SERIALIZED]["model_name"] == e.model_name
    batch, single = recorder.ends
    assert batch[EventPayload.CHUNKS] == texts
    assert batch[EventPayload.EMBEDDINGS] == vectors
    usage = batch[EventPayload.ADDITIONAL_KWARGS]
    # The emulator counts whitespace words as tokens and reports them as usage.total_tokens.
    assert usage["total_tokens"] == _words(texts)
    assert usage["requests"] == len(embedding_requests(emu)) - 1
    assert usage["model"] == flavour.doc_model
    assert single[EventPayload.EMBEDDINGS] == [query]
    assert single[EventPayload.ADDITIONAL_KWARGS]["model"] == flavour.query_model
    assert single[EventPayload.ADDITIONAL_KWARGS]["total_tokens"] > 0


def test_usage_counts_retries(emu: Emulator) -> None:
    recorder = Recorder()
    e = make_nebius(emu, callback_manager=CallbackManager([recorder]))
    emu.script("nebius", [503])
    e.get_text_embedding_batch(["a b"])
    assert recorder.ends[0][EventPayload.ADDITIONAL_KWARGS]["retries"] == 1


def test_failed_call_ends_its_event_with_the_exception(emu: Emulator) -> None:
    recorder = Recorder()
    e = make_nebius(emu, callback_manager=CallbackManager([recorder]), max_retries=0)
    emu.script("nebius", [503])
    with pytest.raises(ServerError):
        e.get_text_embedding_batch(["a"])
    assert isinstance(recorder.ends[0][EventPayload.EXCEPTION], ServerError)


def test_token_counting_handler_sees_the_chunks(emu: Emulator) -> None:
    counter = TokenCountingHandler(tokenizer=str.split)
    e = make_nebius(emu, callback_manager=CallbackManager([counter]), embed_batch_size=1)
    texts = ["alpha beta", "gamma delta epsilon"]
    e.get_text_embedding_batch(texts)
    assert counter.total_embedding_token_count == 5
    assert len(counter.embedding_token_counts) == 2


def test_instrumentation_events_are_dispatched(emu: Emulator) -> None:
    seen: list[BaseEvent] = []

    class Collect(BaseEventHandler):
        def handle(self, event: BaseEvent, **kwargs: Any) -> None:
            if isinstance(event, (EmbeddingStartEvent, EmbeddingEndEvent)):
                seen.append(event)

    root = get_dispatcher()
    handler = Collect()
    root.add_event_handler(handler)
    try:
        make_nebius(emu).get_text_embedding_batch(["x", "y"])
    finally:
        root.event_handlers.remove(handler)
    start, end = seen
    assert isinstance(start, EmbeddingStartEvent)
    assert "api_key" not in repr(start.model_dict)
    assert isinstance(end, EmbeddingEndEvent)
    assert end.chunks == ["x", "y"]


# ----------------------------------------------------- LlamaIndex integration


@pytest.fixture
def no_llm() -> Iterator[None]:
    previous = Settings._llm
    Settings.llm = None
    yield
    Settings._llm = previous


@pytest.mark.usefixtures("no_llm")
@FLAVOURS
def test_vector_store_index_retrieves_the_expected_hit(emu: Emulator, flavour: Flavour) -> None:
    e = flavour.make(emu)
    index = VectorStoreIndex.from_documents([Document(text=t) for t in CORPUS], embed_model=e)
    hits = index.as_retriever(similarity_top_k=1).retrieve("Which tower stands in Paris?")
    assert "Eiffel Tower" in hits[0].node.get_content()
    hits = index.as_retriever(similarity_top_k=1).retrieve("fortress in Moscow")
    assert "Kremlin" in hits[0].node.get_content()
    models = {r.body["model"] for r in embedding_requests(emu)}
    assert models == {flavour.doc_model, flavour.query_model}


@pytest.mark.usefixtures("no_llm")
@FLAVOURS
async def test_vector_store_index_async(emu: Emulator, flavour: Flavour) -> None:
    e = flavour.make(emu)
    index = await asyncio.to_thread(
        VectorStoreIndex.from_documents,
        [Document(text=t) for t in CORPUS],
        embed_model=e,
        use_async=True,
    )
    hits = await index.as_retriever(similarity_top_k=1).aretrieve("Which tower stands in Paris?")
    assert "Eiffel Tower" in hits[0].node.get_content()


# ------------------------------------------------------- pickle, cache, limiter


@FLAVOURS
def test_works_after_unpickling(emu: Emulator, flavour: Flavour) -> None:
    e = flavour.make(emu, max_retries=1)
    e.get_text_embedding("warm the connection pool")
    copy = pickle.loads(pickle.dumps(e))
    assert copy.get_text_embedding_batch(["a", "b"]) == [flavour.doc_vector(t) for t in "ab"]
    assert asyncio.run(copy.aget_query_embedding("q")) == flavour.query_vector("q")
    emu.clear()
    emu.script(flavour.name, [503, 503, 503])
    with pytest.raises(ServerError):
        copy.get_text_embedding("x")
    assert len(embedding_requests(emu)) == 2


def test_embeddings_cache_is_used_and_keeps_queries_apart(emu: Emulator) -> None:
    e = make_yandex(emu, embeddings_cache=SimpleKVStore())
    first = e.get_text_embedding_batch(["paris", "rome"])
    assert len(embedding_requests(emu)) == 2
    assert e.get_text_embedding_batch(["rome", "paris", "oslo"]) == [
        first[1],
        first[0],
        YA.doc_vector("oslo"),
    ]
    assert len(embedding_requests(emu)) == 3
    # The same text as a query needs the query model: a cached document vector must not answer.
    query = e.get_query_embedding("paris")
    assert query == YA.query_vector("paris") != first[0]
    assert asyncio.run(e.aget_query_embedding("paris")) == query
    assert len(embedding_requests(emu)) == 4


def test_llama_index_rate_limiter_is_acquired_per_request(emu: Emulator) -> None:
    class Counting(BaseRateLimiter):
        def __init__(self) -> None:
            self.calls: list[int] = []
            self.lock = threading.Lock()

        def acquire(self, num_tokens: int = 0) -> None:
            with self.lock:
                self.calls.append(num_tokens)

        async def async_acquire(self, num_tokens: int = 0) -> None:
            self.acquire(num_tokens)

    limiter = Counting()
    e = make_nebius(emu, embed_batch_size=2, rate_limiter=limiter)
    e.get_text_embedding_batch(["a", "b", "c", "d", "e"])
    assert len(limiter.calls) == 3
    asyncio.run(e.aget_query_embedding("q"))
    assert len(limiter.calls) == 4


def test_show_progress_uses_the_same_client(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    e = make_nebius(emu, embed_batch_size=1, max_concurrency=2)
    texts = [f"t{i}" for i in range(4)]
    assert e.get_text_embedding_batch(texts, show_progress=True) == [
        NEB.doc_vector(t) for t in texts
    ]
    assert "4/4" in capsys.readouterr().err
    assert e.client.show_progress_bar is False


def test_deadline_field(emu: Emulator) -> None:
    emu.configure(latency_ms=400)
    e = make_nebius(emu, deadline=0.1, max_retries=3)
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        e.get_text_embedding("x")
    assert time.monotonic() - start < 0.35
