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

import os
import signal
import sys
from types import FrameType


def _interrupted_while_starting(signum: int, frame: FrameType | None) -> None:
    # Ctrl-C while the command's modules load: nothing has started, so leave quietly.
    sys.stderr.write("interrupted\n")
    os._exit(130)


# Only while this package loads (the slow part of the command's start), and only when Python's
# own handler is in place (the main thread of a plain process); restored below.
_previous = signal.getsignal(signal.SIGINT)
if _previous is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import argparse  # noqa: E402 - after the handler: these imports take most of the start
from collections.abc import Sequence  # noqa: E402

from studio_embeddings.cli import demo, embed, serve  # noqa: E402

__all__ = ["build_parser", "console", "main"]


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
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def console() -> None:
    """The console script: :func:`main`, then an exit that a late Ctrl-C cannot turn into a
    traceback (the work is done; only the interpreter's shutdown is left)."""
    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


if _previous is signal.default_int_handler:
    signal.signal(signal.SIGINT, _previous)  # a KeyboardInterrupt again, which main() handles
