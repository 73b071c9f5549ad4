"""Embed a JSONL or Parquet file with Ray Data: N actors sharing one provider quota via Redis.

Usage::

    python examples/ray_ingest.py input.jsonl out/ --actors 2 \\
        --quota-store redis://127.0.0.1:6379/0

    # Nebius instead of Yandex, a Parquet input with the texts in column "body":
    python examples/ray_ingest.py docs.parquet out/ --provider nebius --text-column body

Each input row keeps its columns and gets an ``embedding`` column (float32 vectors); the output
is a Parquet dataset in ``out/``. Every actor paces itself through the same Redis quota
(``--quota-store``, or the ``STUDIO_EMBEDDINGS_QUOTA_STORE`` variable), so 4 actors on one Yandex
folder send 10 requests/s together, not 10 each. Without a store, each actor paces alone: fine
for one actor, a storm of 429s for several.

Credentials come from the usual variables: ``YC_API_KEY`` (or ``YC_IAM_TOKEN``) and
``YC_FOLDER_ID`` for Yandex, ``NEBIUS_API_KEY`` (and ``NEBIUS_PROJECT_ID``) for Nebius. When
none is set, the script starts the offline emulator (``studio_embeddings.emulator``) in this
process and embeds against it, so the example runs anywhere; a Redis server is still needed
for ``--quota-store`` (``redis-server --port 6379`` or ``docker run -p 6379:6379 redis``).

Needs ``pip install 'studio-embeddings[ray,redis,langchain,emulator]'``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any


def build_embeddings(provider: str, quota_store: str | None) -> tuple[Any, Any]:
    """The embeddings object the actors get, and the emulator serving it (or None)."""
    from studio_embeddings.langchain import NebiusEmbeddings, YandexEmbeddings

    emulator = None
    settings: dict[str, Any] = {"quota_store": quota_store}
    has_key = (
        os.environ.get("NEBIUS_API_KEY")
        if provider == "nebius"
        else (os.environ.get("YC_API_KEY") or os.environ.get("YC_IAM_TOKEN"))
    )
    if not has_key:
        from studio_embeddings.emulator import Emulator

        # Actors are other processes on this machine: they reach it over loopback.
        emulator = Emulator(latency_ms=50).start()
        print(f"no {provider} key set: embedding against the emulator at {emulator.url}")
        settings.update(api_key="emulator-key", base_url=emulator.base_url(provider))
        if provider == "yandex":
            settings["folder_id"] = os.environ.get("YC_FOLDER_ID", "b1gexamplefolder")
        else:
            settings["project_id"] = os.environ.get("NEBIUS_PROJECT_ID", "example-project")
    cls = NebiusEmbeddings if provider == "nebius" else YandexEmbeddings
    return cls(**settings), emulator


def read(path: str) -> Any:
    import ray

    if path.endswith((".parquet", ".pq")) or Path(path).is_dir():
        return ray.data.read_parquet(path)
    return ray.data.read_json(path, lines=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("input", help="a .jsonl (one JSON object a line) or .parquet file")
    parser.add_argument("output", help="a directory for the Parquet output")
    parser.add_argument("--provider", choices=("yandex", "nebius"), default="yandex")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--actors", type=int, default=2, help="embedding actors (default 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per batch (default 32)")
    parser.add_argument(
        "--quota-store",
        default=os.environ.get("STUDIO_EMBEDDINGS_QUOTA_STORE"),
        help="redis://, rediss:// or unix:// URL shared by the actors "
        "(default: $STUDIO_EMBEDDINGS_QUOTA_STORE; none: each actor paces alone)",
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="for ray.init (local runs)")
    args = parser.parse_args(argv)

    import ray

    from studio_embeddings.ray import Embedder

    if args.quota_store is None and args.actors > 1:
        print(
            f"warning: {args.actors} actors without --quota-store each pace to the whole quota",
            file=sys.stderr,
        )
    embeddings, emulator = build_embeddings(args.provider, args.quota_store)
    try:
        if not ray.is_initialized():
            ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
        started = time.monotonic()
        dataset = read(args.input).map_batches(
            Embedder,
            fn_constructor_kwargs={"embeddings": embeddings, "text_column": args.text_column},
            compute=ray.data.ActorPoolStrategy(size=args.actors),
            batch_size=args.batch_size,
            num_cpus=0.5,  # waiting on the network: two actors a core is plenty
        )
        dataset.write_parquet(args.output)
        rows = ray.data.read_parquet(args.output).count()
        took = time.monotonic() - started
        print(f"embedded {rows} rows in {took:.1f} s ({rows / took:.1f} rows/s) -> {args.output}")
    finally:
        if emulator is not None:
            emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
