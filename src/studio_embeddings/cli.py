"""``studio-embeddings``: the command line.

| command | what it does |
| --- | --- |
| ``studio-embeddings demo`` | embeds a small corpus with both providers through LangChain and LlamaIndex and answers a few questions by similarity; on the offline emulator when no key is set |
| ``studio-embeddings serve --port 8000`` | runs the offline emulator of both APIs on 127.0.0.1 |
| ``studio-embeddings embed INPUT --output OUTPUT`` | embeds a JSONL or text file into JSONL, resumable |
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from studio_embeddings.providers import credential_help

__all__ = ["main"]

CORPUS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, built for the 1889 World's Fair.",
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar and oxygen.",
    "Python is a programming language known for readable code and a large standard library.",
    "Football, called soccer in some countries, is played by two teams of eleven players.",
    "To cook pasta, boil it in plenty of salted water until it is al dente, then drain it.",
    "In 1969 the Apollo 11 mission landed the first astronauts on the Moon.",
    "A stock market is where shares of public companies are bought and sold by investors.",
    "Cats are small domesticated carnivores that sleep for most of the day and purr.",
]
QUESTIONS = [
    "Which tower stands in Paris?",
    "How do plants make sugar from sunlight?",
    "When did astronauts first land on the Moon?",
    "How long should I boil pasta?",
]

_EMULATOR_KEY = "emulator-key"
_EMULATOR_FOLDER = "b1gemulatorfolder"


def _has_real_credentials(provider: str) -> bool:
    from studio_embeddings.providers import get_provider

    p = get_provider(provider)
    names = p.api_key_envs + ((p.token_env,) if p.token_env else ())
    has_key = any(os.environ.get(n) for n in names)
    has_project = not p.project_required or bool(p.project_env and os.environ.get(p.project_env))
    return has_key and has_project


@contextlib.contextmanager
def _maybe_emulator(needed: bool) -> Iterator[Any]:
    if not needed:
        yield None
        return
    from studio_embeddings.emulator import Emulator

    with Emulator() as emu:
        yield emu


def _settings(provider: str, emu: Any) -> dict[str, Any]:
    """Constructor arguments for the demo classes: empty for the real provider (env is read)."""
    from studio_embeddings.providers import get_provider

    if emu is None:
        return {}
    p = get_provider(provider)
    settings: dict[str, Any] = {"api_key": _EMULATOR_KEY, "base_url": emu.base_url(provider)}
    if p.project_required:
        settings[p.project_param] = _EMULATOR_FOLDER
    return settings


def _demo_langchain(provider: str, emu: Any) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    from studio_embeddings.langchain import NebiusEmbeddings, YandexEmbeddings

    cls = {"nebius": NebiusEmbeddings, "yandex": YandexEmbeddings}[provider]
    embeddings = cls(**_settings(provider, emu))
    started = time.perf_counter()
    store = InMemoryVectorStore.from_texts(CORPUS, embeddings)
    elapsed = time.perf_counter() - started
    print(f"  LangChain {cls.__name__}: {len(CORPUS)} documents in {elapsed:.2f} s")
    for question in QUESTIONS:
        doc, score = store.similarity_search_with_score(question, k=1)[0]
        print(f"    Q: {question}\n       -> {doc.page_content}  (score {score:.3f})")


def _demo_llama_index(provider: str, emu: Any) -> None:
    from llama_index.core import Document, VectorStoreIndex

    from studio_embeddings.llama_index import NebiusEmbedding, YandexEmbedding

    cls = {"nebius": NebiusEmbedding, "yandex": YandexEmbedding}[provider]
    embed_model = cls(**_settings(provider, emu))
    started = time.perf_counter()
    index = VectorStoreIndex.from_documents(
        [Document(text=text) for text in CORPUS], embed_model=embed_model
    )
    elapsed = time.perf_counter() - started
    print(f"  LlamaIndex {cls.__name__}: {len(CORPUS)} documents in {elapsed:.2f} s")
    retriever = index.as_retriever(similarity_top_k=1)
    for question in QUESTIONS[:2]:
        node = retriever.retrieve(question)[0]
        print(f"    Q: {question}\n       -> {node.get_content()}  (score {node.score:.3f})")


def demo(args: argparse.Namespace) -> int:
    providers = ["nebius", "yandex"] if args.provider == "all" else [args.provider]
    real = {p: _has_real_credentials(p) and not args.emulator for p in providers}
    with _maybe_emulator(not all(real.values())) as emu:
        if emu is not None:
            missing = [p for p in providers if not real[p]]
            print(
                f"No provider credentials for {', '.join(missing)}; a real run needs:\n"
                f"{credential_help()}\n"
                f"Using the offline emulator at {emu.url}. Its vectors are deterministic "
                "stand-ins (feature hashing), not the real models.\n"
            )
        for provider in providers:
            where = "the real service" if real[provider] else "the emulator"
            print(f"== {provider} on {where} ==")
            _demo_langchain(provider, None if real[provider] else emu)
            _demo_llama_index(provider, None if real[provider] else emu)
            print()
    return 0


def serve(args: argparse.Namespace) -> int:
    from studio_embeddings.emulator import serve as run_server

    print(
        f"Emulator on http://{args.host}:{args.port}: "
        f"Nebius at /nebius/v1, Yandex at /yandex/v1 (Ctrl+C stops it)",
        file=sys.stderr,
    )
    run_server(
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        yandex_rps=args.yandex_rps or None,
        nebius_rpm=args.nebius_rpm,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio-embeddings",
        description="Nebius AI Studio and Yandex AI Studio embeddings: demo, emulator, ingestion.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_demo = sub.add_parser(
        "demo",
        help="embed a small corpus and answer questions by similarity",
        description="Embeds a small corpus with LangChain and LlamaIndex and retrieves answers, "
        "on the real provider when its variables are set, else on the offline emulator:\n"
        + credential_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_demo.add_argument("--provider", choices=["all", "nebius", "yandex"], default="all")
    p_demo.add_argument(
        "--emulator", action="store_true", help="use the emulator even if keys are set"
    )
    p_demo.set_defaults(func=demo)

    p_serve = sub.add_parser(
        "serve",
        help="run the offline emulator of both APIs",
        description="Serves Nebius at /nebius/v1/embeddings and Yandex at /yandex/v1/embeddings.",
    )
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    p_serve.add_argument(
        "--yandex-rps", type=float, default=10.0, help="Yandex quota per folder; 0: none"
    )
    p_serve.add_argument(
        "--nebius-rpm", type=float, default=None, help="Nebius requests/min per project"
    )
    p_serve.set_defaults(func=serve)

    try:
        from studio_embeddings import _ingest
    except ImportError:  # pragma: no cover - the ingest command ships with the package
        _ingest = None  # type: ignore[assignment]
    if _ingest is not None:
        _ingest.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``studio-embeddings`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
