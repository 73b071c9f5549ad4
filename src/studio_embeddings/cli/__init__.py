"""``studio-embeddings``: the command line, one module per command.

| command | module | what it does |
| --- | --- | --- |
| ``studio-embeddings demo`` | ``demo.py`` | embeds a small corpus with both providers through LangChain and LlamaIndex and answers a few questions by similarity; on the offline emulator when no key is set |
| ``studio-embeddings serve --port 8000`` | ``serve.py`` | runs the offline emulator of both APIs on 127.0.0.1; one flag per emulator knob |
| ``studio-embeddings embed INPUT --output OUTPUT`` | ``embed.py`` (input: ``_files.py``, output formats: ``_outputs.py``) | embeds a JSONL or text file into JSONL, ``.npy`` or Parquet, resumable |

``_common.py`` holds what they share: the emulator's stand-in credentials and the environment
checks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from studio_embeddings.cli import demo, embed, serve

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``studio-embeddings`` parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="studio-embeddings",
        description="Nebius AI Studio and Yandex AI Studio embeddings: demo, emulator, ingestion.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (demo, serve, embed):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``studio-embeddings`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
