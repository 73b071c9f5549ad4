"""The LangChain classes against the emulator, over loopback: what reaches the wire, and back.

Each test checks requests as the emulator recorded them (path, query, lower-case headers,
JSON body) and vectors against ``embed_text`` recomputed for the exact text sent.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import itertools
import logging
import pickle
import re
import textwrap
import time
import traceback
from typing import Any

import httpx2
import pytest
from langchain_core.vectorstores import InMemoryVectorStore

from studio_embeddings import (
    NEBIUS,
    AuthenticationError,
    ConnectionFailedError,
    DeadlineExceededError,
    RetryPolicy,
    ServerError,
)
from studio_embeddings.emulator import Emulator, embed_text
from studio_embeddings.langchain import NebiusEmbeddings, YandexEmbeddings

NB_KEY = "nb-e2e-secret-key-1234"
YC_KEY = "yc-e2e-secret-key-5678"
FOLDER = "b1ge2efolder"
QWEN = "Qwen/Qwen3-Embedding-8B"
DOC = f"emb://{FOLDER}/text-search-doc/latest"
QUERY = f"emb://{FOLDER}/text-search-query/latest"
FAST = RetryPolicy(initial_wait=0.001, max_wait=0.01)
TEXTS = ["The cat sat on the mat.", "Stock markets fell sharply.", "A recipe for tomato soup."]


def nebius(emu: Emulator, **kwargs: Any) -> NebiusEmbeddings:
    kwargs.setdefault("api_key", NB_KEY)
    kwargs.setdefault("base_url", emu.base_url("nebius"))
    return NebiusEmbeddings(**kwargs)


def yandex(emu: Emulator, **kwargs: Any) -> YandexEmbeddings:
    kwargs.setdefault("api_key", YC_KEY)
    kwargs.setdefault("folder_id", FOLDER)
    kwargs.setdefault("base_url", emu.base_url("yandex"))
    return YandexEmbeddings(**kwargs)


def qwen_query(text: str, task: str = NEBIUS.default_query_task) -> str:
    template = NEBIUS.query_template(QWEN)
    assert template is not None
    return template.format(task=task, query=text)


def fresh_token() -> str:
    """A module-level token source: picklable, unlike a lambda."""
    return "t1.e2e-module-token"


class TokenSource:
    """An IAM token callable that hands out a new token each time it is asked."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return f"t1.token-{self.calls}"


# ------------------------------------------------------------------ Nebius wire


def test_nebius_request_shape(emulator: Emulator) -> None:
    emb = nebius(emulator, project_id="project-42")
    vectors = emb.embed_documents(TEXTS)
    (req,) = emulator.requests
    assert (req.method, req.path) == ("POST", "/nebius/v1/embeddings")
    assert req.query == {"ai_project_id": "project-42"}
    assert req.headers["authorization"] == f"Bearer {NB_KEY}"
    assert "openai-project" not in req.headers
    assert req.body == {"model": QWEN, "input": TEXTS, "encoding_format": "base64"}
    assert vectors == [embed_text("nebius", QWEN, t) for t in TEXTS]


def test_nebius_without_project_sends_no_project_param(emulator: Emulator) -> None:
    nebius(emulator).embed_documents(["hello"])
    assert emulator.requests[0].query == {}


def test_nebius_float_encoding_gives_the_same_vectors(emulator: Emulator) -> None:
    vectors = nebius(emulator, encoding_format="float").embed_documents(TEXTS)
    assert emulator.requests[0].body["encoding_format"] == "float"  # type: ignore[index]
    assert vectors == [embed_text("nebius", QWEN, t) for t in TEXTS]


def test_nebius_query_instruction_on_queries_only(emulator: Emulator) -> None:
    emb = nebius(emulator)
    vector = emb.embed_query("capital of France")
    emb.embed_documents(["Paris is the capital of France."])
    query_req, doc_req = emulator.requests
    assert query_req.body["input"] == [qwen_query("capital of France")]  # type: ignore[index]
    assert doc_req.body["input"] == ["Paris is the capital of France."]  # type: ignore[index]
    assert vector == embed_text("nebius", QWEN, qwen_query("capital of France"))


def test_nebius_custom_and_disabled_query_instruction(emulator: Emulator) -> None:
    nebius(emulator, query_instruction="Find the recipe").embed_query("soup")
    vector = nebius(emulator, query_instruction="").embed_query("soup")
    custom, off = emulator.requests
    assert custom.body["input"] == [qwen_query("soup", "Find the recipe")]  # type: ignore[index]
    assert off.body["input"] == ["soup"]  # type: ignore[index]
    assert vector == embed_text("nebius", QWEN, "soup")


def test_nebius_dimensions_and_service_tier_are_sent(emulator: Emulator) -> None:
    emb = nebius(emulator, dimensions=256, service_tier="flex")
    vectors = emb.embed_documents(TEXTS[:2])
    body = emulator.requests[0].body
    assert body is not None
    assert (body["dimensions"], body["service_tier"]) == (256, "flex")
    assert vectors == [embed_text("nebius", QWEN, t, dimensions=256) for t in TEXTS[:2]]


def test_nebius_model_is_sent(emulator: Emulator) -> None:
    model = "BAAI/bge-multilingual-gemma2"
    vector = nebius(emulator, model=model).embed_documents(["hi"])[0]
    assert emulator.requests[0].body["model"] == model  # type: ignore[index]
    assert len(vector) == NEBIUS.model_dimensions[model]


def test_chunk_size_sets_the_number_of_requests(emulator: Emulator) -> None:
    texts = [f"text number {i}" for i in range(5)]
    nebius(emulator).embed_documents(texts)
    assert len(emulator.requests) == 1
    emulator.clear()
    vectors = nebius(emulator, chunk_size=2).embed_documents(texts)
    sizes = sorted(len(r.body["input"]) for r in emulator.requests)  # type: ignore[index]
    assert sizes == [1, 2, 2]
    assert vectors == [embed_text("nebius", QWEN, t) for t in texts]


# ------------------------------------------------------------------ Yandex wire


def test_yandex_request_shape_and_models(emulator: Emulator) -> None:
    emb = yandex(emulator, chunk_size=10)
    docs = emb.embed_documents(TEXTS[:2])
    query = emb.embed_query("what did the cat do?")
    assert len(emulator.requests) == 3  # one text per request, whatever chunk_size says
    for req in emulator.requests:
        assert (req.method, req.path, req.query) == ("POST", "/yandex/v1/embeddings", {})
        assert req.headers["authorization"] == f"Api-Key {YC_KEY}"
        assert req.headers["openai-project"] == FOLDER
        assert "x-data-logging-enabled" not in req.headers
        assert req.body is not None
        assert req.body["encoding_format"] == "float"
        assert set(req.body) == {"model", "input", "encoding_format"}
    by_input = {r.body["input"]: r.body["model"] for r in emulator.requests}  # type: ignore[index]
    assert by_input == {TEXTS[0]: DOC, TEXTS[1]: DOC, "what did the cat do?": QUERY}
    assert docs == [embed_text("yandex", DOC, t) for t in TEXTS[:2]]
    assert query == embed_text("yandex", QUERY, "what did the cat do?")


def test_yandex_iam_token_is_bearer(emulator: Emulator) -> None:
    yandex(emulator, api_key=None, iam_token="t1.static-token").embed_query("hi")
    assert emulator.requests[0].headers["authorization"] == "Bearer t1.static-token"


def test_yandex_model_version_and_custom_models(emulator: Emulator) -> None:
    emb = yandex(
        emulator, model_version="rc", doc_model="text-search-query", query_model="text-search-doc"
    )
    emb.embed_documents(["a document"])
    emb.embed_query("a query")
    models = [r.body["model"] for r in emulator.requests]  # type: ignore[index]
    assert models == [f"emb://{FOLDER}/text-search-query/rc", f"emb://{FOLDER}/text-search-doc/rc"]


@pytest.mark.parametrize(("value", "header"), [(False, "false"), (True, "true")])
def test_yandex_data_logging_header(emulator: Emulator, value: bool, header: str) -> None:
    yandex(emulator, data_logging=value).embed_query("hi")
    assert emulator.requests[0].headers["x-data-logging-enabled"] == header


def test_yandex_default_pacing_stays_within_the_quota(emulator: Emulator) -> None:
    texts = [f"document {i}" for i in range(12)]
    vectors = yandex(emulator).embed_documents(texts)
    statuses = [r.status for r in emulator.requests]
    assert statuses == [200] * 12  # the emulator refuses an 11th request within a second
    times = sorted(r.time for r in emulator.requests)
    assert times[-1] - times[0] >= 1.0
    assert vectors == [embed_text("yandex", DOC, t) for t in texts]


def test_yandex_pacing_off_is_fast(emulator: Emulator) -> None:
    emulator.configure(yandex_rps=None)
    yandex(emulator, requests_per_second=0).embed_documents([f"doc {i}" for i in range(12)])
    times = sorted(r.time for r in emulator.requests)
    assert times[-1] - times[0] < 0.5


# --------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("field", ["requests_per_second", "requests_per_minute"])
def test_request_pacing(emulator: Emulator, field: str) -> None:
    rate = {"requests_per_second": 20, "requests_per_minute": 1200}[field]
    nebius(emulator, chunk_size=1, **{field: rate}).embed_documents([f"t{i}" for i in range(5)])
    times = sorted(r.time for r in emulator.requests)
    assert times[-1] - times[0] >= 0.18  # 4 gaps of 0.05 s


def test_max_concurrency_sync(emulator: Emulator) -> None:
    emulator.configure(latency_ms=150)
    texts = [f"text {i}" for i in range(4)]
    nebius(emulator, chunk_size=1, max_concurrency=1).embed_documents(texts)
    serial = sorted(r.time for r in emulator.requests)
    assert all(b - a >= 0.12 for a, b in itertools.pairwise(serial))
    emulator.clear()
    nebius(emulator, chunk_size=1, max_concurrency=4).embed_documents(texts)
    parallel = sorted(r.time for r in emulator.requests)
    assert parallel[-1] - parallel[0] < 0.1


async def test_max_concurrency_async(emulator: Emulator) -> None:
    emulator.configure(latency_ms=150)
    await nebius(emulator, chunk_size=1, max_concurrency=2).aembed_documents(
        [f"text {i}" for i in range(4)]
    )
    t = sorted(r.time for r in emulator.requests)
    assert t[1] - t[0] < 0.1  # two in flight ...
    assert t[2] - t[0] >= 0.12  # ... and no third before one of them answered


@pytest.mark.parametrize("provider", ["nebius", "yandex"])
async def test_sync_and_async_agree_in_order(emulator: Emulator, provider: str) -> None:
    emb = nebius(emulator, chunk_size=2) if provider == "nebius" else yandex(emulator)
    model, qmodel = (QWEN, QWEN) if provider == "nebius" else (DOC, QUERY)
    qtext = qwen_query("a question") if provider == "nebius" else "a question"
    sync_docs = await asyncio.to_thread(emb.embed_documents, TEXTS)
    async_docs = await emb.aembed_documents(TEXTS)
    sync_query = await asyncio.to_thread(emb.embed_query, "a question")
    async_query = await emb.aembed_query("a question")
    expected = [embed_text(provider, model, t) for t in TEXTS]
    assert sync_docs == async_docs == expected
    assert sync_query == async_query == embed_text(provider, qmodel, qtext)


@pytest.mark.parametrize("provider", ["nebius", "yandex"])
async def test_progress_bar_moves_sync_and_async(
    emulator: Emulator, capsys: pytest.CaptureFixture[str], provider: str
) -> None:
    make = nebius if provider == "nebius" else yandex
    emb = make(emulator, chunk_size=1, show_progress_bar=True)
    await asyncio.to_thread(emb.embed_documents, TEXTS)
    err = capsys.readouterr().err
    assert f"Embedding ({provider})" in err
    assert "3/3" in err
    await emb.aembed_documents(TEXTS)
    assert "3/3" in capsys.readouterr().err
    emb.show_progress_bar = False  # rebuilds the core client without the bar
    await emb.aembed_documents(TEXTS)
    assert capsys.readouterr().err == ""


def test_progress_bar_field(emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    nebius(emulator, show_progress_bar=True).embed_documents(TEXTS)
    assert "3/3" in capsys.readouterr().err
    nebius(emulator).embed_documents(TEXTS)
    assert capsys.readouterr().err == ""


def test_openai_env_never_reaches_a_request(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-leak")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-leak")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-leak")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "x-openai-leak: yes")
    monkeypatch.setenv("NEBIUS_API_KEY", NB_KEY)
    monkeypatch.setenv("NEBIUS_API_BASE", emulator.base_url("nebius"))
    NebiusEmbeddings().embed_documents(["hello"])
    yandex(emulator).embed_documents(["hello"])
    nb, yc = emulator.requests
    for req in (nb, yc):
        assert "openai-organization" not in req.headers
        assert "x-openai-leak" not in req.headers
        assert "leak" not in repr(req.headers)
    assert nb.headers["authorization"] == f"Bearer {NB_KEY}"
    assert "openai-project" not in nb.headers
    assert yc.headers["authorization"] == f"Api-Key {YC_KEY}"
    assert yc.headers["openai-project"] == FOLDER


def test_default_headers_are_sent(emulator: Emulator) -> None:
    nebius(emulator, default_headers={"x-trace-id": "abc"}).embed_documents(["x"])
    yandex(emulator, default_headers={"x-trace-id": "def"}).embed_documents(["x"])
    assert [r.headers["x-trace-id"] for r in emulator.requests] == ["abc", "def"]


async def test_http_clients_are_used(emulator: Emulator) -> None:
    seen: list[str] = []

    def on_request(request: httpx2.Request) -> None:
        seen.append(f"sync {request.url.path}")

    async def on_async_request(request: httpx2.Request) -> None:
        seen.append(f"async {request.url.path}")

    with httpx2.Client(event_hooks={"request": [on_request]}) as sync_http:
        async with httpx2.AsyncClient(event_hooks={"request": [on_async_request]}) as async_http:
            emb = nebius(emulator, http_client=sync_http, http_async_client=async_http)
            await asyncio.to_thread(emb.embed_documents, ["x"])
            await emb.aembed_documents(["y"])
    assert seen == ["sync /nebius/v1/embeddings", "async /nebius/v1/embeddings"]


def test_max_retries_counts_attempts(emulator: Emulator) -> None:
    emulator.script("nebius", [503, 503, 503])
    emb = nebius(emulator, max_retries=2, retry_policy=FAST)
    with pytest.raises(ServerError) as info:
        emb.embed_documents(["x"])
    assert len(emulator.requests) == 3
    assert info.value.attempts == 3
    emulator.clear()
    emulator.script("yandex", [503, 503])
    vector = yandex(emulator, max_retries=2, retry_policy=FAST).embed_documents(["x"])
    assert [r.status for r in emulator.requests] == [503, 503, 200]
    assert vector == [embed_text("yandex", DOC, "x")]


async def test_max_retries_zero_async(emulator: Emulator) -> None:
    emulator.script("nebius", [503])
    with pytest.raises(ServerError):
        await nebius(emulator, max_retries=0).aembed_documents(["x"])
    assert len(emulator.requests) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_iam_token_callable_is_refreshed_on_401(emulator: Emulator, mode: str) -> None:
    source = TokenSource()
    emb = yandex(emulator, api_key=None, iam_token=source)
    emulator.script("yandex", [401])
    if mode == "sync":
        vector = await asyncio.to_thread(emb.embed_query, "hi")
    else:
        vector = await emb.aembed_query("hi")
    auth = [(r.status, r.headers["authorization"]) for r in emulator.requests]
    assert auth == [(401, "Bearer t1.token-1"), (200, "Bearer t1.token-2")]
    assert source.calls == 2
    assert vector == embed_text("yandex", QUERY, "hi")


def test_timeout(emulator: Emulator) -> None:
    emulator.configure(latency_ms=500)
    start = time.monotonic()
    with pytest.raises(ConnectionFailedError, match="timeout"):
        nebius(emulator, timeout=0.1, max_retries=0).embed_documents(["x"])
    assert time.monotonic() - start < 0.45


def test_deadline(emulator: Emulator) -> None:
    emulator.configure(latency_ms=500)
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        nebius(emulator, deadline=0.2, retry_policy=FAST).embed_documents(["x"])
    assert time.monotonic() - start < 0.45


# ----------------------------------------------------------------- secrets


def test_no_secret_in_logs_or_errors(emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    emulator.configure(valid_keys={"only-this-key"})
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        for emb in (
            nebius(emulator),
            yandex(emulator),
            yandex(emulator, api_key=None, iam_token="t1.secret-iam"),
        ):
            with pytest.raises(AuthenticationError) as info:
                emb.embed_documents(["x"])
            errors.append(info.value)
        emulator.configure(valid_keys=None)
        nebius(emulator).embed_documents(["ok"])
        # Retries are logged too; one call recovers, one gives up.
        emulator.script("nebius", [503, 503, 503])
        nebius(emulator, retry_policy=FAST).embed_documents(["retried"])
        emulator.script("yandex", [500, 500])
        with pytest.raises(ServerError) as failed:
            yandex(emulator, max_retries=1, retry_policy=FAST).embed_documents(["x"])
        errors.append(failed.value)
    text = caplog.text + "".join(
        f"{e}{e!r}{''.join(traceback.format_exception(e))}" for e in errors
    )
    assert "openai" in caplog.text  # the SDK did log at DEBUG: the check is meaningful
    for secret in (NB_KEY, YC_KEY, "t1.secret-iam"):
        assert secret not in text


# ------------------------------------------------------------------ pickle


def test_pickled_objects_still_work(emulator: Emulator) -> None:
    nb = nebius(emulator, project_id="p1", chunk_size=2)
    before = nb.embed_documents(TEXTS)  # live clients exist now
    nb_copy = pickle.loads(pickle.dumps(nb))
    assert nb_copy.embed_documents(TEXTS) == before
    yc = yandex(emulator, api_key=None, iam_token=fresh_token)
    yc.embed_query("hi")
    yc_copy = pickle.loads(pickle.dumps(yc))
    assert yc_copy.embed_query("hi") == embed_text("yandex", QUERY, "hi")
    last = emulator.requests[-1]
    assert (last.query, last.headers["authorization"]) == ({}, "Bearer t1.e2e-module-token")
    assert all(r.query.get("ai_project_id") == "p1" for r in emulator.requests[:4])


async def test_pickled_object_works_async(emulator: Emulator) -> None:
    copy = pickle.loads(pickle.dumps(yandex(emulator)))
    assert await copy.aembed_documents(["x"]) == [embed_text("yandex", DOC, "x")]


# ------------------------------------------------------------- vector store

CORPUS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
    "Python is a popular programming language for data science.",
    "Football is played by two teams of eleven players with a ball.",
    "The Great Wall of China stretches thousands of kilometres.",
    "Coffee is brewed from roasted coffee beans.",
]


@pytest.mark.parametrize("provider", ["nebius", "yandex"])
def test_in_memory_vector_store_finds_the_right_document(emulator: Emulator, provider: str) -> None:
    emb = nebius(emulator) if provider == "nebius" else yandex(emulator)
    store = InMemoryVectorStore.from_texts(CORPUS, embedding=emb)
    (hit,) = store.similarity_search("Which tower stands in Paris?", k=1)
    assert hit.page_content == CORPUS[0]
    (plants,) = store.similarity_search("How do plants use sunlight?", k=1)
    assert plants.page_content == CORPUS[1]


async def test_in_memory_vector_store_async(emulator: Emulator) -> None:
    store = await InMemoryVectorStore.afrom_texts(CORPUS, embedding=nebius(emulator))
    (hit,) = await store.asimilarity_search("a programming language for data", k=1)
    assert hit.page_content == CORPUS[2]


# ------------------------------------------------------- docstring examples


def _code_blocks(doc: str) -> list[tuple[str, str]]:
    """``(language, text)`` of each ``.. code-block::`` in an RST docstring, in order."""
    lines = inspect.cleandoc(doc).splitlines()
    blocks: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        match = re.match(r"(\s*)\.\. code-block:: (\w+)", lines[i])
        i += 1
        if not match:
            continue
        indent, body = len(match.group(1)), []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            body.append(lines[i])
            i += 1
        blocks.append((match.group(2), textwrap.dedent("\n".join(body)).strip()))
    return blocks


def _run_examples(doc: str) -> int:
    """Run the python blocks in one namespace; check each against the output block after it."""
    blocks = _code_blocks(doc)
    namespace: dict[str, Any] = {}
    ran = 0
    for n, (lang, source) in enumerate(blocks):
        if lang != "python":
            continue
        code = compile(
            source, f"<docstring block {n}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = eval(code, namespace)  # our own docstring examples
            if inspect.iscoroutine(result):
                asyncio.run(result)
        ran += 1
        following = blocks[n + 1] if n + 1 < len(blocks) else None
        if following is not None and following[0] == "none":
            assert out.getvalue().strip() == following[1], source
    return ran


@pytest.mark.parametrize("cls", [NebiusEmbeddings, YandexEmbeddings])
def test_docstring_examples_run(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, cls: type[Any]
) -> None:
    monkeypatch.setenv("NEBIUS_API_KEY", NB_KEY)
    monkeypatch.setenv("NEBIUS_API_BASE", emulator.base_url("nebius"))
    monkeypatch.setenv("YC_API_KEY", YC_KEY)
    monkeypatch.setenv("YC_FOLDER_ID", FOLDER)
    monkeypatch.setenv("YC_API_BASE", emulator.base_url("yandex"))
    doc = cls.__doc__
    assert doc is not None
    for section in (
        "Setup:",
        "Key init args",
        "Instantiate:",
        "Embed single text:",
        "Embed multiple texts:",
        "Async:",
    ):
        assert section in doc
    assert _run_examples(doc) == 4
    assert emulator.requests
    assert all(r.status == 200 for r in emulator.requests)
    # Every argument the docstring lists as a key init arg is a real field.
    listed = re.findall(r"^ {4}(\w+): ", inspect.cleandoc(doc), flags=re.MULTILINE)
    assert listed
    assert set(listed) <= set(cls.model_fields)
