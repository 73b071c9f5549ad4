"""``studio-embeddings demo``: embeds a small corpus with both providers through LangChain and
LlamaIndex and answers a few questions by similarity; on the offline emulator when no key is set.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from studio_embeddings.cli._common import (
    emulator_settings,
    has_real_credentials,
    maybe_emulator,
)
from studio_embeddings.providers import credential_help, get_provider

__all__ = ["CORPUS", "QUESTIONS", "add_parser", "run"]

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

def _settings(provider: str, emu: Any) -> dict[str, Any]:
    """Constructor arguments for the demo classes: empty for the real provider (env is read)."""
    if emu is None:
        return {}
    return emulator_settings(provider, emu, project_key=get_provider(provider).project_param)


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


def run(args: argparse.Namespace) -> int:
    providers = ["nebius", "yandex"] if args.provider == "all" else [args.provider]
    real = {p: has_real_credentials(p) and not args.emulator for p in providers}
    with maybe_emulator(not all(real.values())) as emu:
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


def add_parser(sub: Any) -> None:
    """Register ``demo`` on the ``studio-embeddings`` subparsers ``sub``."""
    p = sub.add_parser(
        "demo",
        help="embed a small corpus and answer questions by similarity",
        description="Embeds a small corpus with LangChain and LlamaIndex and retrieves answers, "
        "on the real provider when its variables are set, else on the offline emulator:\n"
        + credential_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--provider", choices=["all", "nebius", "yandex"], default="all")
    p.add_argument("--emulator", action="store_true", help="use the emulator even if keys are set")
    p.set_defaults(func=run)
