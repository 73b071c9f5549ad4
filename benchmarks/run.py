"""Throughput, pacing, decode and memory benchmark of studio-embeddings against its peers.

Everything runs on 127.0.0.1: the offline emulator (``studio_embeddings.emulator``) is started
in its own process, so the client CPU measured here (``time.process_time()`` of this process)
never includes the server's work, and request / 429 counts are read from the emulator's own
records through a pipe.

| scenario | what it measures |
| --- | --- |
| 1 Nebius throughput | 2,000 documents, 80 ms + 0.5 ms per input, 4096 dims: ours (LangChain and LlamaIndex shells, sync and async) vs langchain-nebius, llama-index-embeddings-nebius, langchain-openai |
| 2 Yandex quota | 60 documents, 150 ms, 10 requests/s quota: ours vs the plain openai loop from Yandex's docs |
| 3 Nebius RPM | 2,000 documents under a 60 requests/min limit with ``requests_per_minute=60`` |
| 4 decode CPU | our base64 decode and the whole response path vs bare numpy, in-process |
| 5 memory | 100,000 short texts at 256 dims: peak traced memory vs the returned lists |
| 6 shared quota | 1, 2, 4 processes on one Yandex folder (10 requests/s, 150 ms), with and without a Redis quota store; Nebius 120 requests/min shared by 4 |
| sweep (``--sweep``) | scenario 1 with chunk_size x max_concurrency |

Usage::

    python benchmarks/run.py            # full run, a few minutes on 2 cores
    python benchmarks/run.py --quick    # smoke run, under a minute
    python benchmarks/run.py --sweep    # also the chunk_size x max_concurrency grid
    python benchmarks/run.py --only 1,4 # some scenarios

The exit status is 1 when a target fails or one of our contenders errs, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import gc
import importlib.metadata
import json
import math
import multiprocessing as mp
import os
import platform
import random
import re
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from studio_embeddings.emulator import EmulatorProcess

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    # Run from a checkout without installing: `python benchmarks/run.py`.
    sys.path.insert(0, str(ROOT / "src"))

# Nothing of the developer's set-up may leak in: no real keys, no real hosts, no proxy.
for _name in list(os.environ):
    if _name.startswith(("NEBIUS_", "YC_", "OPENAI_")):
        del os.environ[_name]
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

NEBIUS_MODEL = "Qwen/Qwen3-Embedding-8B"
KEY = "bench-key"
FOLDER = "b1gbenchfolder"
YANDEX_DOC_URI = f"emb://{FOLDER}/text-search-doc/latest"

# --------------------------------------------------------------------------- corpus

_SUBJECTS = (
    "The city council", "A small bakery", "The research team", "Local farmers",
    "A young engineer", "The museum", "Our support team", "The football club",
    "A group of students", "The hospital", "A travel blogger", "The railway company",
    "The school board", "A startup", "The orchestra", "Volunteers", "The weather service",
    "A retired teacher", "The national library", "Two chefs",
)
_VERBS = (
    "announced", "opened", "tested", "reviewed", "celebrated", "cancelled", "planned",
    "described", "funded", "repaired", "documented", "launched", "discussed", "improved",
    "shared", "organized", "studied", "photographed", "recommended", "delivered",
)
_OBJECTS = (
    "a new bike lane", "the annual harvest festival", "an electric bus route",
    "a recipe for rye bread", "the solar panels on the roof", "a free coding course",
    "the old stone bridge", "a vaccination campaign", "the winter concert series",
    "a map of hiking trails", "the river clean-up", "a community garden",
    "the late-night ferry", "a report on air quality", "the children's reading club",
    "a faster checkout system", "the restored city walls", "a jazz workshop",
    "the flood barrier", "a guide to local birds", "the tram timetable",
    "a cheese tasting", "the new science lab", "a shelter for stray cats",
    "the mountain rescue drill",
)
_PLACES = (
    "in Lisbon", "near the harbour", "in the northern district", "on the university campus",
    "in a quiet village", "downtown", "by the lake", "in the old town", "at the airport",
    "in the suburbs", "near the central station", "on the island", "in Kraków",
    "along the coast", "in the valley", "at the market square", "in Montreal",
    "beside the cathedral", "in the industrial park", "in Nairobi",
)
_TIMES = (
    "last spring", "on Monday", "this weekend", "after months of delays", "in early June",
    "before the holidays", "yesterday evening", "during the storm", "at dawn",
    "for the third year running",
)
_RADICES = (len(_SUBJECTS), len(_VERBS), len(_OBJECTS), len(_PLACES), len(_TIMES))
_COMBINATIONS = math.prod(_RADICES)  # 2,000,000 distinct sentences
_STRIDE = 7_368_787  # prime, coprime with the count: consecutive documents differ in every slot


def make_corpus(n: int) -> list[str]:
    """``n`` distinct, short, realistic sentences (deterministic)."""
    if n > _COMBINATIONS:
        msg = f"at most {_COMBINATIONS} distinct sentences"
        raise ValueError(msg)
    out = []
    for i in range(n):
        k = (i * _STRIDE + 12_345) % _COMBINATIONS
        parts = []
        slots = (_SUBJECTS, _VERBS, _OBJECTS, _PLACES, _TIMES)
        for words, radix in zip(slots, _RADICES, strict=True):
            parts.append(words[k % radix])
            k //= radix
        subject, verb, obj, place, when = parts
        out.append(f"{subject} {verb} {obj} {place} {when}.")
    assert len(set(out)) == n
    return out


# ------------------------------------------------------------- emulator process


# The emulator runs in a process of its own (studio_embeddings.emulator.EmulatorProcess), so
# the CPU seconds measured here are the client's alone.


# --------------------------------------------------------------------- results


@dataclass
class Row:
    contender: str
    mode: str  # "sync" | "async": which of ours a peer is compared with
    docs: int = 0
    wall_s: float | None = None
    docs_per_s: float | None = None
    cpu_s: float | None = None
    server_cpu_s: float | None = None
    requests: int | None = None
    refused_429: int | None = None
    ratio: float | None = None  # peer wall / our wall, for the same number of documents
    verified: str = ""
    note: str = ""
    ours: bool = False
    ref: bool = False  # the "ours" row peers of the same mode are compared with
    runs: list[float] = field(default_factory=list)  # wall of every timed run; the best is shown

    @property
    def refused_pct(self) -> float | None:
        if not self.requests:
            return None
        return 100.0 * (self.refused_429 or 0) / self.requests


@dataclass
class Target:
    scenario: str
    text: str
    passed: bool
    detail: str


@dataclass
class Report:
    machine: dict[str, Any]
    settings: dict[str, Any]
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def target(self, scenario: str, text: str, passed: bool, detail: str) -> None:
        self.targets.append(Target(scenario, text, passed, detail))
        print(f"  {'PASS' if passed else 'FAIL'}  {text}: {detail}")


def machine_info() -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "from src/" if name == "studio-embeddings" else "not installed"

    packages = (
        "studio-embeddings", "openai", "httpx", "httpx2", "numpy", "langchain-core",
        "llama-index-core", "langchain-openai", "langchain-nebius",
        "llama-index-embeddings-nebius", "uvicorn", "starlette",
    )
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": {p: version(p) for p in packages},
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio_text(row: Row) -> str:
    if row.ref:
        return "ref"
    if row.ratio is None:
        return "-"
    return f"{row.ratio:.2f}x" if row.ratio < 10 else f"{row.ratio:.0f}x"


def table(rows: Sequence[Row], markdown: bool = False) -> str:
    header = ("contender", "docs", "wall s", "docs/s", "CPU s", "server CPU s", "requests",
              "429s", "wall / ours", "vectors")
    body = []
    for r in rows:
        if r.wall_s is None:
            body.append((r.contender, str(r.docs or "-"), "-", "-", "-", "-",
                         "-" if r.requests is None else str(r.requests),
                         "-" if r.refused_429 is None else str(r.refused_429), "-",
                         r.note or r.verified))
            continue
        refused = "-" if r.refused_429 is None else (
            f"{r.refused_429} ({_fmt(r.refused_pct, 1)}%)" if r.refused_429 else "0"
        )
        body.append((
            r.contender, str(r.docs), _fmt(r.wall_s), _fmt(r.docs_per_s, 1), _fmt(r.cpu_s),
            _fmt(r.server_cpu_s), str(r.requests if r.requests is not None else "-"), refused,
            _ratio_text(r), r.verified + (f"; {r.note}" if r.note else ""),
        ))
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h)
              for i, h in enumerate(header)]
    widths[-1] = len(header[-1])  # last column free-form
    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 or i == len(cells) - 1 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(c) for c in body])


# ------------------------------------------------------------------ verification


def verify(vectors: Any, texts: Sequence[str], expected: Callable[[str], list[float]],
           dims: int, full: bool = True) -> tuple[bool, str]:
    """Count, length and exact values (all of them, or a seeded sample) in input order.

    When values differ, tell a mis-ordered but complete answer (every expected vector is
    there, at the wrong position) from wrong or missing vectors.
    """
    if not isinstance(vectors, list) or len(vectors) != len(texts):
        got = len(vectors) if isinstance(vectors, list) else type(vectors).__name__
        return False, f"WRONG COUNT {got} != {len(texts)}"
    bad_len = sum(1 for v in vectors if len(v) != dims)
    if bad_len:
        return False, f"{bad_len} vectors not {dims}-dim"
    indices = range(len(texts)) if full else sorted(
        set(random.Random(7).sample(range(len(texts)), min(25, len(texts))))
        | {0, len(texts) - 1}
    )
    mismatched = [i for i in indices if list(map(float, vectors[i])) != expected(texts[i])]
    if not mismatched:
        return True, "all exact" if full else f"{len(indices)} sampled exact"
    if full:
        wanted = sorted(tuple(expected(texts[i])) for i in mismatched)
        got = sorted(tuple(map(float, vectors[i])) for i in mismatched)
        if wanted == got:
            return False, (f"MISORDERED: {len(mismatched)}/{len(texts)} at the wrong position, "
                           "none lost")
    return False, f"WRONG VALUES at {len(mismatched)} positions, first {mismatched[:3]}"


def nebius_expected(dims: int | None = None) -> Callable[[str], list[float]]:
    from studio_embeddings.emulator import embed_text

    return lambda text: embed_text("nebius", NEBIUS_MODEL, text, dims)


def yandex_expected() -> Callable[[str], list[float]]:
    from studio_embeddings.emulator import embed_text

    return lambda text: embed_text("yandex", YANDEX_DOC_URI, text)


# ------------------------------------------------------------------- contenders

SyncFn = Callable[[list[str]], Any]
AsyncFn = Callable[[list[str]], Awaitable[Any]]


@dataclass
class Contender:
    name: str
    mode: str
    build: Callable[[str], tuple[SyncFn | None, AsyncFn | None]]  # base_url -> callables
    cap: int | None = None  # sequential peers: fewer documents, scaled
    ours: bool = False
    ref: bool = False


def _short_error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ")
    return text[:300]


def run_contender(emu: EmulatorProcess, contender: Contender, provider: str,
                  texts: list[str], expected: Callable[[str], list[float]], dims: int,
                  warm: int = 4, repeats: int = 1, repeat_under: float = 5.0) -> Row:
    """Warm up (connections, lazy clients), then time the call; best of ``repeats``.

    Before each timed call the emulator's records (and rate-limit windows) are cleared, so
    the request and 429 counts are those of that call. Calls that take ``repeat_under``
    seconds or more run once. Every run's vectors are verified.
    """
    row = Row(contender.name, contender.mode, ours=contender.ours, ref=contender.ref)
    n = len(texts) if contender.cap is None else min(contender.cap, len(texts))
    subset = texts[:n]
    row.docs = n
    if contender.cap is not None and n < len(texts):
        row.note = f"sequential: {n} of {len(texts)} docs timed, ratio scaled"
    try:
        sync_fn, async_fn = contender.build(emu.base_url(provider))
    except Exception as e:
        row.note = f"n/a: {_short_error(e)}"
        return row
    warm_texts = [f"Warm-up sentence number {i} about nothing in particular." for i in range(warm)]
    runs: list[tuple[float, float, dict[str, Any], float]] = []
    problems: list[str] = []

    clock: dict[str, float] = {}

    def before() -> float:
        emu.clear()  # a blocking pipe round-trip, before the clock starts
        server_cpu = emu.stats()["cpu"]
        gc.collect()
        clock["t0"] = time.perf_counter()
        return float(server_cpu)

    def after(vectors: Any, wall: float, cpu: float, server_cpu0: float) -> bool:
        stats = emu.stats()
        runs.append((wall, cpu, stats, stats["cpu"] - server_cpu0))
        ok, message = verify(vectors, subset, expected, dims)
        if not ok:
            problems.append(message)
        row.verified = message if ok else f"FAILED: {problems[0]}"
        return len(runs) < repeats and wall < repeat_under

    try:
        if sync_fn is not None:
            if warm:
                sync_fn(warm_texts)
            again = True
            while again:
                server_cpu0 = before()
                t0, c0 = time.perf_counter(), time.process_time()
                vectors = sync_fn(subset)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                again = after(vectors, wall, cpu, server_cpu0)
                vectors = None
        else:
            assert async_fn is not None

            async def main() -> None:
                if warm:
                    await async_fn(warm_texts)
                again = True
                while again:
                    server_cpu0 = before()
                    t0, c0 = time.perf_counter(), time.process_time()
                    result = await async_fn(subset)
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    again = after(result, wall, cpu, server_cpu0)
                    result = None

            asyncio.run(main())
    except Exception as e:
        after_s = f" after {time.perf_counter() - clock['t0']:.1f} s" if "t0" in clock else ""
        row.note = f"n/a: {_short_error(e)}{after_s}"
        if not runs:
            return row
    finally:
        gc.collect()
    wall, cpu, stats, server_cpu = min(runs, key=lambda r: r[0])
    row.wall_s, row.cpu_s, row.server_cpu_s = wall, cpu, server_cpu
    row.docs_per_s = n / wall
    row.requests = stats["requests"]
    row.refused_429 = stats["statuses"].get(429, 0)
    row.runs = [round(r[0], 4) for r in runs]
    return row


def set_ratios(rows: list[Row]) -> None:
    """Row wall / reference wall of the same mode, for the same number of documents.

    Sequential peers are timed on fewer documents; comparing docs/s is the same as
    scaling their wall time linearly to the full count.
    """
    refs = {r.mode: r for r in rows if r.ref and r.wall_s is not None}
    for r in rows:
        ref = refs.get(r.mode)
        if r.ref or r.wall_s is None or ref is None or not ref.docs_per_s or not r.docs_per_s:
            continue
        r.ratio = ref.docs_per_s / r.docs_per_s


# ---- ours

def _ours_nebius(**settings: Any) -> list[tuple[str, Callable[[str], tuple[Any, Any]]]]:
    """Our LangChain shell, falling back to the core when the shell does not import."""
    def core(url: str) -> Any:
        from studio_embeddings._client import EmbeddingsClient

        kwargs = dict(settings)
        if "chunk_size" in kwargs:
            kwargs["batch_size"] = kwargs.pop("chunk_size")
        kwargs.pop("embed_batch_size", None)
        return EmbeddingsClient("nebius", api_key=KEY, base_url=url, model=NEBIUS_MODEL, **kwargs)

    def langchain(url: str) -> Any:
        from studio_embeddings.langchain import NebiusEmbeddings

        return NebiusEmbeddings(api_key=KEY, base_url=url, model=NEBIUS_MODEL, **settings)

    try:
        import studio_embeddings.langchain  # noqa: F401
        return [("LangChain NebiusEmbeddings", langchain)]
    except Exception:
        return [("core EmbeddingsClient", core)]


def ours_nebius_contenders(**settings: Any) -> list[Contender]:
    out = []
    for label, make in _ours_nebius(**settings):
        def build_sync(url: str, make: Any = make) -> tuple[Any, Any]:
            obj = make(url)
            fn = obj.embed_documents if hasattr(obj, "embed_documents") else obj.embed
            return fn, None

        def build_async(url: str, make: Any = make) -> tuple[Any, Any]:
            obj = make(url)
            fn = obj.aembed_documents if hasattr(obj, "aembed_documents") else obj.aembed
            return None, fn

        out.append(Contender(f"ours sync ({label})", "sync", build_sync, ours=True, ref=True))
        out.append(Contender(f"ours async ({label})", "async", build_async, ours=True, ref=True))
    return out


def ours_llama_contenders() -> list[Contender]:
    def make(url: str) -> Any:
        from studio_embeddings.llama_index import NebiusEmbedding

        return NebiusEmbedding(api_key=KEY, base_url=url, model_name=NEBIUS_MODEL)

    return [
        Contender("ours sync (LlamaIndex NebiusEmbedding)", "sync",
                  lambda url: (make(url).get_text_embedding_batch, None), ours=True),
        Contender("ours async (LlamaIndex NebiusEmbedding)", "async",
                  lambda url: (None, make(url).aget_text_embedding_batch), ours=True),
    ]


# ---- peers (each one's own way of taking a base URL, read from its installed source)

def peer_contenders(sequential_cap: int | None) -> list[Contender]:
    def langchain_nebius(url: str) -> Any:
        # langchain-nebius 0.1.x: field nebius_api_base, alias base_url (env NEBIUS_API_BASE);
        # it embeds one text per request, one request after the other, sync and async.
        from langchain_nebius import NebiusEmbeddings as Peer

        return Peer(api_key=KEY, base_url=url, model=NEBIUS_MODEL)

    def llama_nebius(url: str) -> Any:
        # llama-index-embeddings-nebius 0.6: api_base= (env NEBIUS_API_BASE); batches of
        # embed_batch_size (10) texts, sequential sync, all batches at once with asyncio.gather.
        from llama_index.embeddings.nebius import NebiusEmbedding as Peer

        return Peer(model_name=NEBIUS_MODEL, api_key=KEY, api_base=url)

    def langchain_openai(url: str) -> Any:
        # The OpenAI-compatible route: chunk_size (1000) texts per request, sequential.
        from langchain_openai import OpenAIEmbeddings as Peer

        return Peer(base_url=url, api_key=KEY, model=NEBIUS_MODEL,
                    check_embedding_ctx_length=False)

    return [
        Contender("langchain-nebius sync", "sync",
                  lambda url: (langchain_nebius(url).embed_documents, None), cap=sequential_cap),
        Contender("langchain-nebius async", "async",
                  lambda url: (None, langchain_nebius(url).aembed_documents), cap=sequential_cap),
        Contender("llama-index-embeddings-nebius sync", "sync",
                  lambda url: (llama_nebius(url).get_text_embedding_batch, None)),
        Contender("llama-index-embeddings-nebius async", "async",
                  lambda url: (None, llama_nebius(url).aget_text_embedding_batch)),
        Contender("langchain-openai (compat) sync", "sync",
                  lambda url: (langchain_openai(url).embed_documents, None)),
        Contender("langchain-openai (compat) async", "async",
                  lambda url: (None, langchain_openai(url).aembed_documents)),
    ]


# -------------------------------------------------------------------- scenarios


def ab_sync_async(emu: EmulatorProcess, texts: list[str],
                  expected: Callable[[str], list[float]], pairs: int) -> dict[str, list[float]]:
    """Our LangChain shell's sync and async calls in alternating runs; every run verified."""
    from studio_embeddings.langchain import NebiusEmbeddings

    embeddings = NebiusEmbeddings(api_key=KEY, base_url=emu.base_url("nebius"), model=NEBIUS_MODEL)
    loop = asyncio.new_event_loop()
    walls: dict[str, list[float]] = {"sync": [], "async": []}
    try:
        embeddings.embed_documents(texts[:4])
        loop.run_until_complete(embeddings.aembed_documents(texts[:4]))
        for _ in range(pairs):
            for mode in ("sync", "async"):
                gc.collect()
                t0 = time.perf_counter()
                if mode == "sync":
                    vectors = embeddings.embed_documents(texts)
                else:
                    vectors = loop.run_until_complete(embeddings.aembed_documents(texts))
                walls[mode].append(round(time.perf_counter() - t0, 4))
                ok, message = verify(vectors, texts, expected, 4096, full=False)
                if not ok:
                    raise RuntimeError(f"ours {mode}: {message}")
                vectors = None
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())  # closes the loop's openai client
        loop.close()
    return walls


def scenario_nebius_throughput(report: Report, args: argparse.Namespace, emu: EmulatorProcess) -> None:
    n = 200 if args.quick else 2000
    cap = None if args.full_peers else (10 if args.quick else 300)
    print(f"\n== Scenario 1: Nebius throughput: {n} docs, 80 ms + 0.5 ms/input, 4096 dims ==")
    print("  (the emulator returns each answer's `data` shuffled, as the OpenAI schema allows: "
          "a client must place vectors by `index`)")
    texts = make_corpus(n)
    expected = nebius_expected()
    contenders = ours_nebius_contenders() + ours_llama_contenders() + peer_contenders(cap)
    rows = []
    in_order: dict[str, str] = {}
    repeats = 1 if args.quick else 5
    emu.configure(latency_ms=80, per_input_ms=0.5, yandex_rps=None, nebius_rpm=None, shuffle=True)
    # Fill the emulator's vector cache once so no contender pays for cold server work.
    run_contender(emu, ours_nebius_contenders()[0], "nebius", texts, expected, 4096)
    for c in contenders:
        t0 = time.perf_counter()
        row = run_contender(emu, c, "nebius", texts, expected, 4096, repeats=repeats)
        rows.append(row)
        print(f"  {c.name}: {_fmt(row.wall_s)} s {row.verified} {row.note} "
              f"[{time.perf_counter() - t0:.0f} s with set-up and checks]", flush=True)
    # A contender that mis-ordered: is it exact when the server keeps `data` in order?
    misordered = [c for c, r in zip(contenders, rows, strict=True)
                  if r.verified.startswith("FAILED")]
    if misordered and not args.quick:
        emu.configure(shuffle=False)
        for c in misordered:
            sample = texts[: min(100, n)]
            check = run_contender(emu, Contender(c.name, c.mode, c.build), "nebius",
                                  sample, expected, 4096)
            in_order[c.name] = check.verified or check.note
            print(f"  {c.name}, server keeping `data` in index order: {in_order[c.name]}")
        emu.configure(shuffle=True)
    for r in rows:
        if not r.ours and r.verified.startswith("FAILED: MISORDERED"):
            checked = in_order.get(r.contender)
            r.verified = r.verified.removeprefix("FAILED: ") + (
                "; exact when `data` comes in index order" if checked == "all exact" else
                f"; in index order: {checked or 'not checked in --quick'}")
    set_ratios(rows)
    print()
    print(table(rows))
    ours = [r for r in rows if r.ours]
    ours_bad = [f"{r.contender}: {r.verified or r.note}" for r in ours
                if r.wall_s is None or r.verified.startswith("FAILED")]
    report.target("1", "ours: every vector exact and in input order (data shuffled by the server)",
                  not ours_bad, "; ".join(ours_bad) or f"{len(ours)} contenders, all exact")
    # The throughput targets: our sync call >= 3x the fastest peer (any mode, by
    # docs/s, so sampled sequential peers compare fairly); our async no slower than our sync.
    ours_sync = next((r for r in rows if r.ours and r.mode == "sync" and r.docs_per_s), None)
    ours_async = next((r for r in rows if r.ours and r.mode == "async" and r.docs_per_s), None)
    timed_peers = [r for r in rows if not r.ours and r.docs_per_s]
    fastest = max(timed_peers, key=lambda r: r.docs_per_s or 0.0, default=None)
    if ours_sync is not None and fastest is not None:
        speedup = (ours_sync.docs_per_s or 0.0) / (fastest.docs_per_s or 1.0)
        sync_peers = [r for r in timed_peers if r.mode == "sync"]
        fastest_sync = max(sync_peers, key=lambda r: r.docs_per_s or 0.0, default=None)
        also = ""
        if fastest_sync is not None:
            also = (f"; vs the fastest sync peer ({fastest_sync.contender}) "
                    f"{(ours_sync.docs_per_s or 0.0) / (fastest_sync.docs_per_s or 1.0):.2f}x")
        report.target("1", f"{ours_sync.contender} >= 3x faster (wall) than the fastest peer",
                      speedup >= 3.0,
                      f"{speedup:.2f}x vs {fastest.contender} "
                      f"({ours_sync.docs_per_s:.0f} vs {fastest.docs_per_s:.0f} docs/s){also}")
    if ours_sync is not None and ours_async is not None:
        # The rows above time sync, then async, one after the other, and our calls get faster
        # over a process's first runs: that order alone tilts a comparison of the two. So
        # the target compares them in alternating runs (sync, async, sync, ...) by median.
        pairs = 2 if args.quick else 7
        walls = ab_sync_async(emu, texts, expected, pairs)
        sync_med = statistics.median(walls["sync"])
        async_med = statistics.median(walls["async"])
        rel = async_med / sync_med
        report.scenarios.setdefault("1", {})["sync_async_alternating"] = walls
        report.target("1", f"{ours_async.contender} no slower than {ours_sync.contender}",
                      rel <= 1.05,
                      f"alternating runs ({pairs} each), median async {async_med:.3f} s vs sync "
                      f"{sync_med:.3f} s ({rel:.2f}x; 5% allowed for timer noise on a shared "
                      f"2-core machine); best of the rows above: async {ours_async.wall_s:.2f} s, "
                      f"sync {ours_sync.wall_s:.2f} s")
    if ours_sync is not None and ours_sync.cpu_s:
        report.scenarios.setdefault("1", {})["ours_sync_cpu_ms_per_1000"] = (
            ours_sync.cpu_s * 1000.0 / ours_sync.docs * 1000.0)
    if fastest is not None:
        report.scenarios.setdefault("1", {})["fastest_peer"] = {
            "contender": fastest.contender, "docs_per_s": fastest.docs_per_s}
    peers = [r for r in rows if not r.ours and r.ratio is not None]
    closest = min(peers, key=lambda r: r.ratio or 0.0, default=None)
    if closest is not None:
        print(f"  info  closest peer: {closest.contender} took {closest.ratio:.2f}x our wall "
              f"({closest.mode}); lowest client CPU per document: "
              f"{min((r for r in rows if r.cpu_s), key=lambda r: (r.cpu_s or 0) / r.docs).contender}")
    for r in rows:
        if not r.ours and r.verified.startswith(("FAILED", "MISORDERED")):
            print(f"  info  {r.contender}: {r.verified}")
    na = [f"{r.contender}: {r.note}" for r in rows if not r.ours and r.wall_s is None]
    for line in na:
        print(f"  info  {line}")
    report.scenarios["1"] = report.scenarios.get("1", {}) | {
        "title": f"Nebius throughput: {n} docs, 80 ms + 0.5 ms/input, 4096 dims",
        "rows": [asdict(r) for r in rows], "not_run": na, "exact_when_in_order": in_order,
    }


def scenario_yandex(report: Report, args: argparse.Namespace, emu: EmulatorProcess) -> None:
    n = 30 if args.quick else 60
    print(f"\n== Scenario 2: Yandex quota: {n} docs, 150 ms, 10 requests/s per folder ==")
    texts = make_corpus(n)
    expected = yandex_expected()

    try:
        from studio_embeddings.langchain import YandexEmbeddings

        label = "LangChain YandexEmbeddings"
    except Exception:
        YandexEmbeddings = None
        label = "core EmbeddingsClient"

    def ours(mode: str) -> Contender:
        def build(url: str) -> tuple[Any, Any]:
            if YandexEmbeddings is not None:
                obj: Any = YandexEmbeddings(api_key=KEY, folder_id=FOLDER, base_url=url)
                s, a = obj.embed_documents, obj.aembed_documents
            else:
                from studio_embeddings._client import EmbeddingsClient

                obj = EmbeddingsClient("yandex", api_key=KEY, project=FOLDER, base_url=url)
                s, a = obj.embed, obj.aembed
            return (s, None) if mode == "sync" else (None, a)

        return Contender(f"ours {mode} ({label})", mode, build, ours=True, ref=True)

    def plain_loop(url: str) -> tuple[Any, Any]:
        import openai

        # As in Yandex's docs: one text per request, one request after the other.
        client = openai.OpenAI(api_key=KEY, base_url=url, project=FOLDER)

        def run(docs: list[str]) -> list[list[float]]:
            out = []
            for text in docs:
                response = client.embeddings.create(
                    model=f"emb://{FOLDER}/text-search-doc/latest", input=text,
                    encoding_format="float",
                )
                out.append(response.data[0].embedding)
            return out

        return run, None

    contenders = [ours("sync"), ours("async"),
                  Contender("plain openai loop (Yandex docs)", "sync", plain_loop,
                            cap=None if args.quick is False or args.full_peers else 15)]
    rows = []
    emu.configure(latency_ms=150, per_input_ms=0, yandex_rps=10, nebius_rpm=None, shuffle=True)
    for c in contenders:
        row = run_contender(emu, c, "yandex", texts, expected, 256, warm=2)
        rows.append(row)
        print(f"  {c.name}: {_fmt(row.wall_s)} s {row.verified} {row.note}".rstrip(),
              flush=True)
    set_ratios(rows)
    print()
    print(table(rows))
    for r in rows:
        if not r.ours:
            continue
        ok = (r.docs_per_s or 0) >= 9.5 and (r.refused_pct or 0) <= 5.0 and \
            not r.verified.startswith("FAILED") and r.wall_s is not None
        report.target("2", f"{r.contender}: >= 9.5 docs/s with <= 5% refused", ok,
                      f"{_fmt(r.docs_per_s, 2)} docs/s, {_fmt(r.refused_pct or 0.0, 1)}% refused "
                      f"({r.refused_429}/{r.requests}), {r.verified or r.note}")
    plain = rows[-1]
    print(f"  info  plain openai loop: {_fmt(plain.docs_per_s, 2)} docs/s (expected ~6/s: "
          "sequential, latency-bound)")
    report.scenarios["2"] = {"title": f"Yandex: {n} docs, 150 ms, 10 requests/s quota",
                             "rows": [asdict(r) for r in rows]}


def scenario_nebius_rpm(report: Report, args: argparse.Namespace, emu: EmulatorProcess) -> None:
    n, chunk = (192, 64) if args.quick else (2000, 64)
    requests = math.ceil(n / chunk)
    print(f"\n== Scenario 3: Nebius under 60 requests/min: {n} docs, chunk_size={chunk} "
          f"({requests} requests), requests_per_minute=60 ==")
    texts = make_corpus(n)
    expected = nebius_expected()

    def build(url: str) -> tuple[Any, Any]:
        _, make = _ours_nebius(chunk_size=chunk, requests_per_minute=60)[0]
        obj = make(url)
        return (obj.embed_documents if hasattr(obj, "embed_documents") else obj.embed), None

    rows = []
    emu.configure(latency_ms=80, per_input_ms=0.5, yandex_rps=None, nebius_rpm=60, shuffle=True)
    c = Contender("ours sync, requests_per_minute=60", "sync", build, ours=True, ref=True)
    row = run_contender(emu, c, "nebius", texts, expected, 4096, warm=0)
    rows.append(row)
    print(f"  {c.name}: {_fmt(row.wall_s)} s {row.verified} {row.note}".rstrip(), flush=True)
    if not args.quick:
        # What happens without client-side pacing once requests outnumber the minute's
        # budget: 125 requests of 16 against 60/min.
        time.sleep(0.1)

        def build_unpaced(url: str) -> tuple[Any, Any]:
            from studio_embeddings._client import EmbeddingsClient

            obj = EmbeddingsClient("nebius", api_key=KEY, base_url=url, model=NEBIUS_MODEL,
                                   batch_size=16)
            return obj.embed, None

        c2 = Contender("info: ours unpaced (no requests_per_minute), chunk 16", "info",
                       build_unpaced, ours=False)
        row2 = run_contender(emu, c2, "nebius", texts, expected, 4096, warm=0)
        if row2.wall_s is None:
            stats = emu.stats()
            row2.requests = stats["requests"]
            row2.refused_429 = stats["statuses"].get(429, 0)
            # "n/a: RateLimitError: <message> (gave up after 6 attempts) after 15.3 s"
            kind = row2.note.removeprefix("n/a: ").split(":", 1)[0]
            gave_up = re.search(r"\(gave up after \d+ attempts\)", row2.note)
            elapsed = re.search(r"after [\d.]+ s$", row2.note)
            row2.note = " ".join(x for x in (
                f"raised {kind}", gave_up.group(0) if gave_up else "",
                elapsed.group(0) if elapsed else "") if x)
        rows.append(row2)
        print(f"  {c2.name}: {_fmt(row2.wall_s)} s {row2.verified} {row2.note}".rstrip(),
              flush=True)
    set_ratios(rows)
    print()
    print(table(rows))
    r = rows[0]
    ok = r.wall_s is not None and not r.verified.startswith("FAILED") and \
        (r.refused_pct or 0) <= 10.0
    report.target("3", "nothing lost, <= 10% of requests refused", ok,
                  f"{r.verified or r.note}; {r.refused_429}/{r.requests} refused; "
                  f"{_fmt(r.wall_s, 1)} s for {requests} requests (ideal {requests - 1} s + latency)")
    report.scenarios["3"] = {"title": f"Nebius, 60 requests/min: {n} docs in {requests} requests",
                             "rows": [asdict(x) for x in rows]}


def scenario_decode(report: Report, args: argparse.Namespace, emu: EmulatorProcess) -> None:
    import numpy as np
    import pybase64

    from studio_embeddings._wire import ListRows, parse_answer, plan
    from studio_embeddings._wire import decode as _decode
    from studio_embeddings.emulator._vectors import embed_array, to_base64

    n = 256 if args.quick else 1024
    batch = 64
    repeats = 3 if args.quick else 5
    print(f"\n== Scenario 4: decode CPU: {n} vectors of 4096 dims (base64), in-process ==")
    texts = make_corpus(n)
    strings = [base64.b64encode(to_base64(embed_array("nebius", NEBIUS_MODEL, t))).decode("ascii")
               for t in texts]
    rng = random.Random(3)
    bodies = []
    for start in range(0, n, batch):
        data = [{"object": "embedding", "index": i, "embedding": strings[start + i]}
                for i in range(min(batch, n - start))]
        rng.shuffle(data)
        payload = {"object": "list", "data": data, "model": NEBIUS_MODEL,
                   "usage": {"prompt_tokens": 10, "total_tokens": 10}}
        bodies.append((start, json.dumps(payload, separators=(",", ":")).encode()))
    batches = plan(texts, batch)
    assert [b.start for b in batches] == [s for s, _ in bodies]

    # The bare reference uses the fastest base64 decoder there is (pybase64, also ours), so
    # the ratios below measure our overhead, not a faster base64; the stdlib one is shown too.
    def bare_decode() -> Any:
        return [np.frombuffer(pybase64.b64decode(s), dtype="<f4").tolist() for s in strings]

    def bare_decode_stdlib() -> Any:
        return [np.frombuffer(base64.b64decode(s), dtype="<f4").tolist() for s in strings]

    def ours_decode() -> Any:
        return [_decode(s, "Nebius") for s in strings]

    def bare_store() -> Any:
        out: list[Any] = [None] * n
        for start, body in bodies:
            for item in json.loads(body)["data"]:
                out[start + item["index"]] = np.frombuffer(
                    pybase64.b64decode(item["embedding"]), dtype="<f4").tolist()
        return out

    def ours_store() -> Any:
        rows = ListRows(n)
        for b, (_, body) in zip(batches, bodies, strict=True):
            answer = parse_answer(body, len(b.texts), "Nebius")
            for offset, embedding in enumerate(answer.embeddings):
                rows.put(b.start + offset, embedding, answer.lifted, "Nebius")
        return rows.out

    def best(fn: Callable[[], Any]) -> tuple[float, Any]:
        times = []
        result = None
        for _ in range(repeats):
            result = None
            gc.collect()
            c0 = time.process_time()
            result = fn()
            times.append(time.process_time() - c0)
        return min(times) * 1000.0 / n * 1000.0, result  # ms of CPU per 1,000 vectors

    results = {}
    reference = bare_decode()
    for name, fn in (("bare numpy decode", bare_decode),
                     ("info: bare numpy decode, stdlib base64", bare_decode_stdlib),
                     ("ours _decode", ours_decode),
                     ("bare json.loads + numpy + place", bare_store),
                     ("ours _store (whole response path)", ours_store)):
        ms, out = best(fn)
        exact = out == reference
        results[name] = {"ms_per_1000": ms, "exact": exact}
        del out
    gc.collect()
    lines = [("path", "CPU ms / 1,000 vectors", "vs bare", "exact")]
    pairs = {"ours _decode": "bare numpy decode",
             "ours _store (whole response path)": "bare json.loads + numpy + place"}
    for name, res in results.items():
        compare = pairs | {"info: bare numpy decode, stdlib base64": "bare numpy decode"}
        base = results.get(compare.get(name, name))
        rel = res["ms_per_1000"] / base["ms_per_1000"] if base else 1.0
        res["vs_bare"] = rel
        lines.append((name, f"{res['ms_per_1000']:.1f}", f"{rel:.2f}x", str(res["exact"])))
    widths = [max(len(row[i]) for row in lines) for i in range(4)]
    print()
    for i, row in enumerate(lines):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                        for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for ours_name, bare_name in pairs.items():
        res = results[ours_name]
        report.target("4", f"{ours_name} within 2x of {bare_name}",
                      res["vs_bare"] <= 2.0 and res["exact"],
                      f"{res['ms_per_1000']:.1f} vs {results[bare_name]['ms_per_1000']:.1f} ms "
                      f"per 1,000 vectors ({res['vs_bare']:.2f}x), exact={res['exact']}")
    call_cpu = report.scenarios.get("1", {}).get("ours_sync_cpu_ms_per_1000")
    if call_cpu:
        bare = results["bare numpy decode"]["ms_per_1000"]
        report.target("4", "client CPU of our whole sync call (scenario 1) within 2x of a bare "
                      "np.frombuffer(...).tolist() decode of the same payloads",
                      call_cpu <= 2.0 * bare,
                      f"{call_cpu:.0f} vs {bare:.0f} ms per 1,000 vectors ({call_cpu / bare:.2f}x)")
    report.scenarios["4"] = {"title": f"decode CPU, {n} 4096-dim base64 vectors",
                             "results": results, "markdown_rows": lines}


def scenario_array(report: Report, args: argparse.Namespace, emu: EmulatorProcess) -> None:
    """The numpy path (embed_array) beside the list path, on scenario 1's set-up."""
    import numpy as np
    import pybase64

    from studio_embeddings._wire import ArrayRows, parse_answer, plan
    from studio_embeddings.emulator._vectors import embed_array, to_base64
    from studio_embeddings.langchain import NebiusEmbeddings

    n = 200 if args.quick else 2000
    repeats = 2 if args.quick else 5
    print(f"\n== Scenario 7: Nebius array path: {n} docs, 80 ms + 0.5 ms/input, 4096 dims ==")
    texts = make_corpus(n)
    emu.configure(latency_ms=80, per_input_ms=0.5, yandex_rps=None, nebius_rpm=None, shuffle=True)
    emb = NebiusEmbeddings(api_key=KEY, base_url=emu.base_url("nebius"), model=NEBIUS_MODEL)
    emb.embed_documents(texts[:64])
    emb.embed_array(texts[:64])
    runs: dict[str, list[tuple[float, float]]] = {"list": [], "array": []}
    lists: Any = None
    matrix: Any = None
    for _ in range(repeats):  # alternating, so neither side gets the warmer process
        for name, fn in (("list", emb.embed_documents), ("array", emb.embed_array)):
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn(texts)
            runs[name].append((time.perf_counter() - t0, time.process_time() - c0))
            if name == "list":
                lists = out
            else:
                matrix = out
            del out
    wall = {k: min(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: min(c for _, c in v) for k, v in runs.items()}
    exact = bool(matrix.tobytes() == np.asarray(lists, dtype=np.float32).tobytes())
    ok, message = verify(lists, texts, nebius_expected(), 4096, full=False)
    del lists
    gc.collect()
    # The bare reference: the same payloads, decoded into a matrix allocated once.
    batch = 64
    strings = [base64.b64encode(to_base64(embed_array("nebius", NEBIUS_MODEL, t))).decode("ascii")
               for t in texts]
    bodies = []
    for start in range(0, n, batch):
        data = [{"object": "embedding", "index": i, "embedding": strings[start + i]}
                for i in range(min(batch, n - start))]
        random.Random(start).shuffle(data)
        bodies.append(json.dumps({"object": "list", "data": data, "model": NEBIUS_MODEL,
                                  "usage": {"total_tokens": 1}}).encode())

    def bare() -> Any:
        out = np.empty((n, 4096), dtype=np.float32)
        for start, body in zip(range(0, n, batch), bodies, strict=True):
            for item in json.loads(body)["data"]:
                out[start + item["index"]] = np.frombuffer(pybase64.b64decode(item["embedding"]), "<f4")
        return out

    def ours_rows() -> Any:
        rows = ArrayRows(n, np)
        for b, body in zip(plan(texts, batch), bodies, strict=True):
            answer = parse_answer(body, len(b.texts), "Nebius")
            for offset, embedding in enumerate(answer.embeddings):
                rows.put(b.start + offset, embedding, answer.lifted, "Nebius")
        return rows.matrix

    def best_cpu(fn: Callable[[], Any]) -> float:
        times = []
        for _ in range(repeats):
            gc.collect()
            c0 = time.process_time()
            fn()
            times.append(time.process_time() - c0)
        return min(times)

    bare_cpu, rows_cpu = best_cpu(bare), best_cpu(ours_rows)
    rows_exact = bool(ours_rows().tobytes() == bare().tobytes())
    # Memory: one traced call; the peak over the returned matrix.
    gc.collect()
    tracemalloc.start()
    base_mem, _ = tracemalloc.get_traced_memory()
    traced = emb.embed_array(texts)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    mem_ratio = (peak - base_mem) / traced.nbytes
    del traced
    per_k = 1e6 / n  # seconds for n vectors -> ms per 1,000
    lines = [("path", "wall s", "client CPU s", "CPU ms / 1,000 vectors", "exact"),
             ("embed_documents (lists)", f"{wall['list']:.3f}", f"{cpu['list']:.3f}",
              f"{cpu['list'] * per_k:.1f}", str(ok)),
             ("embed_array (float32 matrix)", f"{wall['array']:.3f}", f"{cpu['array']:.3f}",
              f"{cpu['array'] * per_k:.1f}", str(exact)),
             ("ours: parse + ArrayRows, in-process", "-", f"{rows_cpu:.3f}",
              f"{rows_cpu * per_k:.1f}", str(rows_exact)),
             ("bare json.loads + np.frombuffer into a matrix", "-", f"{bare_cpu:.3f}",
              f"{bare_cpu * per_k:.1f}", "ref")]
    for row in lines:
        print("  " + " | ".join(row))
    report.target("7", "embed_array equals embed_documents cast to float32, bit for bit",
                  exact and ok, f"{message}; matrix exact={exact}")
    report.target("7", "client CPU of embed_array <= 1/3 of embed_documents'",
                  cpu["array"] <= cpu["list"] / 3,
                  f"{cpu['array']:.3f} vs {cpu['list']:.3f} s ({cpu['array'] / cpu['list']:.2f}x)")
    report.target("7", "embed_array's whole-call client CPU within 2x of a bare np.frombuffer "
                  "decode into a preallocated matrix", cpu["array"] <= 2 * bare_cpu,
                  f"{cpu['array']:.3f} vs {bare_cpu:.3f} s ({cpu['array'] / bare_cpu:.2f}x); our "
                  f"response path alone (parse + rows) {rows_cpu / bare_cpu:.2f}x")
    report.target("7", "wall of embed_array <= 0.6x embed_documents'",
                  wall["array"] <= 0.6 * wall["list"],
                  f"{wall['array']:.3f} vs {wall['list']:.3f} s ({wall['array'] / wall['list']:.2f}x)")
    fastest = report.scenarios.get("1", {}).get("fastest_peer")
    if fastest and fastest.get("docs_per_s"):
        speedup = (n / wall["array"]) / fastest["docs_per_s"]
        report.target("7", "embed_array >= 5x faster than the fastest peer (scenario 1)",
                      speedup >= 5, f"{speedup:.2f}x vs {fastest['contender']} "
                      f"({n / wall['array']:.0f} vs {fastest['docs_per_s']:.0f} docs/s)")
    report.target("7", "peak traced memory of embed_array < 1.5x the returned matrix",
                  mem_ratio < 1.5, f"{mem_ratio:.2f}x ({(peak - base_mem) / 2**20:.0f} MiB peak, "
                  f"{n * 4096 * 4 / 2**20:.0f} MiB matrix)")
    report.scenarios["7"] = {"title": f"Nebius array path: {n} docs, 4096 dims",
                             "wall_s": wall, "cpu_s": cpu, "bare_cpu_s": bare_cpu,
                             "rows_cpu_s": rows_cpu, "memory_ratio": mem_ratio,
                             "markdown_rows": lines}


def _deep_size(vectors: list[list[float]]) -> int:
    size = sys.getsizeof(vectors)
    for v in vectors:
        size += sys.getsizeof(v) + sum(map(sys.getsizeof, v))
    return size


def _measure_memory(emu: EmulatorProcess, embed: Callable[[list[str]], Any],
                    texts: list[str]) -> dict[str, Any]:
    embed(["warm-up text one", "warm-up text two"])  # builds the openai client first
    emu.clear()
    server_cpu0 = emu.stats()["cpu"]
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    t0, c0 = time.perf_counter(), time.process_time()
    vectors = embed(texts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stats = emu.stats()
    ok, message = verify(vectors, texts, nebius_expected(256), 256, full=False)
    returned = _deep_size(vectors)
    del vectors
    gc.collect()
    return {"texts": len(texts), "wall_s": wall, "cpu_s": cpu,
            "server_cpu_s": stats["cpu"] - server_cpu0, "requests": stats["requests"],
            "refused_429": stats["statuses"].get(429, 0), "returned_bytes": returned,
            "peak_bytes": peak - base, "retained_bytes": current - base,
            "ratio": (peak - base) / returned, "ok": ok, "verified": message}


def scenario_memory(report: Report, args: argparse.Namespace, emu: EmulatorProcess) -> None:
    n = 5_000 if args.quick else 100_000
    n_llama = n // 5  # the ratio does not depend on the size; keeps the run short
    print(f"\n== Scenario 5: memory: {n} short texts, Qwen3 dimensions=256, zero latency ==")
    emu.configure(latency_ms=0, per_input_ms=0, yandex_rps=None, nebius_rpm=None, shuffle=True)
    texts = make_corpus(n)
    label, make = _ours_nebius(dimensions=256)[0]
    contenders: list[tuple[str, Callable[[], Callable[[list[str]], Any]], list[str]]] = [
        (label, lambda: getattr(make(emu.base_url("nebius")), "embed_documents", None)
         or make(emu.base_url("nebius")).embed, texts),
    ]

    def llama() -> Callable[[list[str]], Any]:
        from studio_embeddings.llama_index import NebiusEmbedding

        return NebiusEmbedding(api_key=KEY, base_url=emu.base_url("nebius"),
                               model_name=NEBIUS_MODEL, dimensions=256).get_text_embedding_batch

    contenders.append(("LlamaIndex NebiusEmbedding", llama, texts[:n_llama]))
    mib = 1024 * 1024
    results = {}
    for name, build, subset in contenders:
        try:
            res = _measure_memory(emu, build(), subset)
        except Exception as e:
            print(f"  {name}: n/a: {_short_error(e)}")
            report.target("5", f"{name}: peak traced memory < 2x the returned lists", False,
                          _short_error(e))
            continue
        results[name] = res
        print(f"  {name}: {res['texts']} texts in {res['wall_s']:.1f} s under tracemalloc "
              f"({res['texts'] / res['wall_s']:.0f} docs/s), client CPU {res['cpu_s']:.1f} s, "
              f"server CPU {res['server_cpu_s']:.1f} s, {res['requests']} requests, "
              f"{res['refused_429']} refused; vectors: {res['verified']}")
        print(f"    returned lists {res['returned_bytes'] / mib:.1f} MiB; peak traced during the "
              f"call {res['peak_bytes'] / mib:.1f} MiB; retained after "
              f"{res['retained_bytes'] / mib:.1f} MiB")
        report.target("5", f"{name}: peak traced memory of the call < 2x the returned lists",
                      res["ok"] and res["ratio"] < 2.0,
                      f"{res['ratio']:.2f}x ({res['peak_bytes'] / mib:.0f} / "
                      f"{res['returned_bytes'] / mib:.0f} MiB, {res['texts']} texts); "
                      f"{res['verified']}")
    report.scenarios["5"] = {"title": f"memory, short texts at 256 dims (LangChain shell {n}, "
                                      f"LlamaIndex shell {n_llama})", "results": results}


def scenario_sweep(report: Report, args: argparse.Namespace, emu: EmulatorProcess) -> None:
    n = 400 if args.quick else 2000
    chunks = (16, 32, 64, 128, 256)
    concurrencies = (4, 8, 16, 32)
    repeats = 1 if args.quick else 3
    print(f"\n== Sweep: scenario 1 ({n} docs, 80 ms + 0.5 ms/input), core sync, "
          f"best of {repeats} ==")
    from studio_embeddings._client import EmbeddingsClient

    texts = make_corpus(n)
    expected = nebius_expected()
    grid: dict[str, dict[str, Any]] = {}
    emu.configure(latency_ms=80, per_input_ms=0.5, yandex_rps=None, nebius_rpm=None, shuffle=True)
    url = emu.base_url("nebius")
    EmbeddingsClient("nebius", api_key=KEY, base_url=url, model=NEBIUS_MODEL).embed(texts)
    for chunk in chunks:
        for conc in concurrencies:
            client = EmbeddingsClient("nebius", api_key=KEY, base_url=url,
                                      model=NEBIUS_MODEL, batch_size=chunk,
                                      max_concurrency=conc)
            client.embed(texts[:4])
            best_wall, best_cpu, verified = math.inf, math.inf, ""
            for _ in range(repeats):
                gc.collect()
                t0, c0 = time.perf_counter(), time.process_time()
                vectors = client.embed(texts)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
                ok, message = verify(vectors, texts, expected, 4096, full=False)
                verified = message if ok else f"FAILED: {message}"
                del vectors
            client.close()
            grid[f"{chunk}x{conc}"] = {"chunk_size": chunk, "max_concurrency": conc,
                                       "wall_s": best_wall, "cpu_s": best_cpu,
                                       "docs_per_s": n / best_wall, "verified": verified}
            print(f"  chunk_size={chunk:<4} max_concurrency={conc:<3} "
                  f"{best_wall:6.2f} s  {n / best_wall:7.0f} docs/s  CPU {best_cpu:.2f} s"
                  f"  {verified}", flush=True)
    print("\n  docs/s (rows: chunk_size, columns: max_concurrency)")
    print("  " + "chunk".ljust(7) + "".join(f"{c:>9}" for c in concurrencies))
    for chunk in chunks:
        print("  " + str(chunk).ljust(7) + "".join(
            f"{grid[f'{chunk}x{c}']['docs_per_s']:>9.0f}" for c in concurrencies))
    best_key = max(grid, key=lambda k: grid[k]["docs_per_s"])
    from studio_embeddings.providers import NEBIUS

    current = f"{NEBIUS.default_batch_size}x{NEBIUS.default_max_concurrency}"
    default = grid.get(current)
    print(f"  best: chunk_size={grid[best_key]['chunk_size']}, max_concurrency="
          f"{grid[best_key]['max_concurrency']} at {grid[best_key]['docs_per_s']:.0f} docs/s"
          + (f"; current default {current}: {default['docs_per_s']:.0f} docs/s" if default else ""))
    report.scenarios["sweep"] = {"title": f"chunk_size x max_concurrency, {n} docs",
                                 "grid": grid, "best": best_key}


# ------------------------------------------------------------------------- main


# ------------------------------------------------------------------ 6: a quota shared by processes


def _start_redis() -> tuple[Any, str]:
    """A redis-server of this run's own on a free loopback port (as the tests' fixture)."""
    import shutil
    import socket
    import subprocess
    import tempfile

    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed: apt-get install redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.02)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


def _quota_worker(provider: str, url: str, store: str | None, worker: int, n: int,
                  settings: dict[str, Any], barrier: Any, out: Any) -> None:
    try:
        from studio_embeddings._client import EmbeddingsClient

        project = {"project": FOLDER} if provider == "yandex" else {"project": "bench-project"}
        client = EmbeddingsClient(provider, api_key=KEY, base_url=url, quota_store=store,
                                  **project, **settings)
        texts = [f"process {worker}: {t}" for t in make_corpus(n)]
        barrier.wait(timeout=120)
        t0 = time.monotonic()
        vectors = client.embed(texts)
        t1 = time.monotonic()
        if provider == "yandex":
            expected = yandex_expected()
        else:
            expected = nebius_expected(settings.get("dimensions"))
        exact = all(v == expected(t) for v, t in zip(vectors, texts, strict=True))
        out.put((worker, t0, t1, len(vectors), exact, ""))
    except BaseException as e:  # reported in the table
        out.put((worker, 0.0, 0.0, 0, False, _short_error(e)))


def _shared_run(emu: EmulatorProcess, provider: str, processes: int, n_each: int,
                store: str | None, **settings: Any) -> Row:
    emu.clear()
    time.sleep(1.1)  # the last run's requests leave the 1 s window
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_quota_worker, args=(provider, emu.base_url(provider), store,
                                                     w, n_each, settings, barrier, out))
             for w in range(processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(10)
    stats = emu.stats()
    errors = [r[5] for r in results if r[5]]
    docs = sum(r[3] for r in results)
    label = f"{processes} process{'es' if processes > 1 else ''}, " + (
        "shared store" if store else "unshared")
    row = Row(label, "info", docs=processes * n_each, ours=True,
              requests=stats["requests"], refused_429=stats["statuses"].get(429, 0))
    if errors:
        row.note = f"{len(errors)} failed: {errors[0]}"
    else:
        row.wall_s = max(r[2] for r in results) - min(r[1] for r in results)
        row.docs_per_s = docs / row.wall_s
        row.verified = "all exact" if all(r[4] for r in results) else "FAILED: a vector differs"
    return row


def scenario_shared_quota(report: Report, args: argparse.Namespace, emu: EmulatorProcess) -> None:
    n_total = 40 if args.quick else 240
    print(f"\n== Scenario 6: one quota shared by processes: Yandex {n_total} docs in all, 150 ms, "
          "10 requests/s per folder; Nebius 120 requests/min shared by 4 ==")
    redis_proc, store = _start_redis()
    rows: list[Row] = []
    try:
        emu.configure(latency_ms=150, per_input_ms=0, yandex_rps=10, nebius_rpm=None, shuffle=True)
        for processes in (1, 2, 4):
            for shared in (True, False):
                if processes == 1 and not shared:
                    continue  # one process alone: the store changes nothing but a round trip
                row = _shared_run(emu, "yandex", processes, n_total // processes,
                                  store if shared else None)
                rows.append(row)
                print(f"  {row.contender}: {_fmt(row.docs_per_s)} docs/s, "
                      f"{row.refused_429}/{row.requests} refused {row.note}".rstrip(), flush=True)
        neb_requests = 10 if args.quick else 24  # per process: 4 x 24 = 96 at 120/min
        emu.configure(latency_ms=80, per_input_ms=0.5, yandex_rps=None, nebius_rpm=120)
        neb = _shared_run(emu, "nebius", 4, neb_requests * 4, store, batch_size=4,
                          requests_per_minute=120, dimensions=256)
        neb.contender = "Nebius, 4 processes, requests_per_minute=120, shared store"
        rows.append(neb)
        print(f"  {neb.contender}: {_fmt(neb.wall_s)} s, {neb.refused_429}/{neb.requests} "
              f"refused {neb.note}".rstrip(), flush=True)
    finally:
        emu.configure(nebius_rpm=None)
        redis_proc.terminate()
        redis_proc.wait(10)
    print()
    print(table(rows))
    four = next(r for r in rows if r.contender == "4 processes, shared store")
    ok = (four.docs_per_s or 0) >= 9.3 and (four.refused_pct or 0) <= 2.0 and \
        four.verified == "all exact"
    unshared = next(r for r in rows if r.contender == "4 processes, unshared")
    report.target("6", "4 processes sharing the store: >= 9.3 docs/s with <= 2% refused", ok,
                  f"{_fmt(four.docs_per_s)} docs/s, {_fmt(four.refused_pct or 0.0, 1)}% refused "
                  f"({four.refused_429}/{four.requests}); unshared: "
                  f"{_fmt(unshared.docs_per_s)} docs/s, {_fmt(unshared.refused_pct or 0.0, 1)}% "
                  f"refused ({unshared.refused_429}/{unshared.requests}) {unshared.note}".rstrip())
    ok = neb.wall_s is not None and (neb.refused_pct or 0) <= 2.0 and neb.verified == "all exact"
    report.target("6", "Nebius, 120 requests/min shared by 4 processes: <= 2% refused", ok,
                  f"{_fmt(neb.refused_pct or 0.0, 1)}% refused ({neb.refused_429}/{neb.requests})"
                  f", {_fmt(neb.wall_s, 1)} s, {neb.verified or neb.note}")
    report.scenarios["6"] = {"title": f"one quota shared by processes ({n_total} Yandex docs in all)",
                             "rows": [asdict(r) for r in rows]}


def markdown_summary(report: Report) -> str:
    m = report.machine
    out = [f"Measured {m['date']} on {m['platform']}, {m['cpu_count']} CPUs (load average "
           f"{m['load_average_at_start'][0]} at start), Python {m['python']}, openai "
           f"{m['versions']['openai']}; emulator in its own process on 127.0.0.1; CPU s = the "
           "client process only; wall / ours = the row's wall over our LangChain shell's, same "
           "mode, same document count (sequential peers timed on a sample, scaled).", ""]
    for key in ("1", "2", "3", "6"):
        scenario = report.scenarios.get(key)
        if scenario is None:
            continue
        rows = [Row(**{k: v for k, v in r.items()}) for r in scenario["rows"]]
        out += [f"**{key}. {scenario['title']}**", "", table(rows, markdown=True), ""]
    if "4" in report.scenarios:
        s = report.scenarios["4"]
        lines = s["markdown_rows"]
        out += [f"**4. {s['title']}**", "", "| " + " | ".join(lines[0]) + " |",
                "|" + "|".join(" --- " for _ in lines[0]) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in lines[1:]] + [""]
    if "5" in report.scenarios:
        s = report.scenarios["5"]
        mib = 1024 * 1024
        out += [f"**5. {s['title']}**", "",
                "| contender | texts | wall s (traced) | returned MiB | peak MiB | peak / returned |",
                "| --- | --- | --- | --- | --- | --- |"]
        out += [f"| {name} | {r['texts']} | {r['wall_s']:.1f} | {r['returned_bytes'] / mib:.0f} | "
                f"{r['peak_bytes'] / mib:.0f} | {r['ratio']:.2f}x |"
                for name, r in s["results"].items()] + [""]
    if report.targets:
        out += ["| scenario | target | result | detail |", "| --- | --- | --- | --- |"]
        out += [f"| {t.scenario} | {t.text} | {'PASS' if t.passed else 'FAIL'} | {t.detail} |"
                for t in report.targets]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run under ~60 s")
    parser.add_argument("--sweep", action="store_true", help="also the chunk_size x concurrency grid")
    parser.add_argument("--only", default="1,2,3,4,5,7",
                        help="comma-separated scenarios to run (1-7, sweep); default 1-5 and 7 "
                             "(6 needs redis-server)")
    parser.add_argument("--full-peers", action="store_true",
                        help="time sequential peers on every document instead of a sample")
    parser.add_argument("--json", default=None,
                        help="write results here (default benchmarks/results.json; "
                             "--quick writes nothing unless given)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    selected = {s.strip() for s in args.only.split(",") if s.strip()}
    if args.sweep:
        selected.add("sweep")

    report = Report(machine=machine_info(), settings=vars(args))
    m = report.machine
    print(f"studio-embeddings benchmark, {m['date']}")
    print(f"machine: {m['platform']} ({m['machine']}), {m['cpu_count']} CPUs, Python {m['python']}"
          f", load average {m['load_average_at_start']}")
    if m["load_average_at_start"][0] > 0.5 * (m["cpu_count"] or 1):
        print("warning: the machine is busy; wall times will be noisy (CPU seconds less so)")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    print("emulator: its own process on 127.0.0.1; CPU s = this (client) process only; "
          "'wall / ours' = a row's wall / our LangChain shell's wall in the same mode (sync or "
          "async), for the same number of documents")
    started = time.perf_counter()
    scenarios: list[tuple[str, Callable[[Report, argparse.Namespace, EmulatorProcess], None]]] = [
        ("1", scenario_nebius_throughput), ("2", scenario_yandex), ("3", scenario_nebius_rpm),
        ("4", scenario_decode), ("5", scenario_memory), ("6", scenario_shared_quota),
        ("7", scenario_array),
        ("sweep", scenario_sweep),
    ]
    crashed = []
    # One emulator process for the whole run; each scenario sets every knob it relies on.
    with EmulatorProcess(yandex_rps=None) as emu:
        for key, fn in scenarios:
            if key not in selected:
                continue
            t0 = time.perf_counter()
            try:
                fn(report, args, emu)
            except Exception as e:  # report and go on with the other scenarios
                crashed.append(key)
                report.target(key, "scenario ran", False, _short_error(e))
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"  ({key}: {time.perf_counter() - t0:.0f} s; load average now {load})",
                  flush=True)
    total = time.perf_counter() - started
    report.settings["total_seconds"] = round(total, 1)

    print("\n== Targets ==")
    for t in report.targets:
        print(f"  {'PASS' if t.passed else 'FAIL'}  [{t.scenario}] {t.text}: {t.detail}")
    print(f"\ntotal {total:.0f} s")
    print("\n== Markdown (for the README) ==\n")
    print(markdown_summary(report))

    path = args.json or (None if args.quick else str(ROOT / "benchmarks" / "results.json"))
    if path:
        data = {"machine": report.machine, "settings": report.settings,
                "scenarios": report.scenarios, "targets": [asdict(t) for t in report.targets]}
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(f"\nresults written to {path}")
    return 1 if any(not t.passed for t in report.targets) or crashed else 0


if __name__ == "__main__":
    sys.exit(main())
