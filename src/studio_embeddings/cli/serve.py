"""``studio-embeddings serve``: the offline emulator of both APIs in the foreground.

Its flags are generated from :class:`~studio_embeddings.emulator.Knobs`: one per scalar knob
(``latency_ms`` -> ``--latency-ms``), typed and described as the field is. A knob that may be
None (no limit) takes 0 for None on the command line, as ``--yandex-rps 0`` always did.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import types
import typing
from typing import Any

__all__ = ["add_parser", "knob_overrides", "run"]

# Knobs with no single-value command-line form: Faults is a value of its own, keys are secrets.
_NOT_FLAGS = frozenset({"faults", "valid_keys"})


def _flag_type(hint: Any) -> tuple[type, bool]:
    """(scalar type, may be None) of a Knobs field annotation."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (scalar,) = (a for a in args if a is not type(None))
        return scalar, True
    return hint, False


def add_parser(sub: Any) -> None:
    """Register ``serve`` on the ``studio-embeddings`` subparsers ``sub``."""
    from studio_embeddings.emulator import Knobs

    p = sub.add_parser(
        "serve",
        help="run the offline emulator of both APIs",
        description="Serves Nebius at /nebius/v1/embeddings and Yandex at /yandex/v1/embeddings.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    hints = typing.get_type_hints(Knobs)
    described = Knobs.help()
    defaults = Knobs()
    for f in dataclasses.fields(Knobs):
        if f.name in _NOT_FLAGS:
            continue
        scalar, optional = _flag_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        text = described.get(f.name, "")
        if scalar is bool:
            # Unset flags stay out of the namespace, so the Knobs defaults are the only defaults.
            p.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text
            )
            continue
        if optional:  # the docs say None, the command line says 0
            text = re.sub(r"\bNone\b", "0", text)
        shown = "none" if default is None else f"{default:g}"
        p.add_argument(
            flag,
            type=scalar,
            default=argparse.SUPPRESS,
            metavar="N",
            help=f"{text} (default: {shown})",
        )
    p.set_defaults(func=run)


def knob_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The Knobs fields given on the command line, 0 meaning None where a knob may be None."""
    from studio_embeddings.emulator import Knobs

    hints = typing.get_type_hints(Knobs)
    overrides: dict[str, Any] = {}
    for f in dataclasses.fields(Knobs):
        if f.name in _NOT_FLAGS or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        overrides[f.name] = None if value == 0 and _flag_type(hints[f.name])[1] else value
    return overrides


def run(args: argparse.Namespace) -> int:
    from studio_embeddings.emulator import serve as run_server

    print(
        f"Emulator on http://{args.host}:{args.port}: "
        f"Nebius at /nebius/v1, Yandex at /yandex/v1 (Ctrl+C stops it)",
        file=sys.stderr,
    )
    try:
        run_server(host=args.host, port=args.port, **knob_overrides(args))
    except ValueError as e:
        print(f"studio-embeddings serve: error: {e}", file=sys.stderr)
        return 2
    return 0
