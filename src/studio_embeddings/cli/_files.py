"""``studio-embeddings embed``'s input: reading and checking it, and matching it against what
an output already holds (for resuming). The output formats live in ``_outputs.py``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "JSONL_SUFFIXES",
    "REPORT_CAP",
    "Format",
    "Invalid",
    "Record",
    "Scan",
    "Stop",
    "input_format",
    "read_records",
    "report_invalid",
    "scan_inputs",
]

Format = Literal["jsonl", "text"]

#: File name endings read as JSON Lines when ``--input-format`` is not given.
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
#: Invalid input lines printed before "... and N more".
REPORT_CAP = 20


class Stop(Exception):
    """Ends the command with a message on stderr and an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Record:
    """One valid input: its 1-based line number, id and text."""

    line: int
    id: str | int
    text: str


@dataclass(frozen=True)
class Invalid:
    """One input line that cannot be embedded, and why."""

    line: int
    reason: str


@dataclass
class Scan:
    valid: int = 0
    invalid: list[Invalid] = field(default_factory=list)
    invalid_total: int = 0
    mismatch: str | None = None


# ------------------------------------------------------------------------------ input


def input_format(path: Path, given: str | None) -> Format:
    """``--input-format`` if given, else by name: JSONL for ``.jsonl``/``.ndjson``/``.json``."""
    if given is not None:
        return "jsonl" if given == "jsonl" else "text"
    return "jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "text"


def _decode_line(raw: bytes, number: int) -> str | Invalid:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Invalid(number, f"not valid UTF-8 (byte {e.start + 1})")
    if number == 1:
        line = line.removeprefix("\ufeff")
    return line


def _jsonl_record(line: str, number: int, text_field: str, id_field: str) -> Record | Invalid:
    try:
        obj = json.loads(line)
    except ValueError as e:
        return Invalid(number, f"malformed JSON ({e})")
    if not isinstance(obj, dict):
        return Invalid(number, f"a JSON {type(obj).__name__}, not an object")
    if text_field not in obj:
        return Invalid(number, f"no {text_field!r} field")
    text = obj[text_field]
    if not isinstance(text, str):
        return Invalid(number, f"{text_field!r} is {_json_type(text)}, not a string")
    if not text.strip():
        return Invalid(number, f"{text_field!r} is empty or whitespace only")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            return Invalid(
                number, f"{text_field!r} cannot be encoded as UTF-8 (a lone surrogate at {e.start})"
            )
    ident = obj.get(id_field, number)
    if isinstance(ident, bool) or not isinstance(ident, (str, int)):
        return Invalid(number, f"{id_field!r} is {_json_type(ident)}, not a string or integer")
    return Record(number, ident, text)


def _json_type(value: object) -> str:
    names = {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "an array",
        dict: "an object",
        str: "a string",
    }
    return names.get(type(value), type(value).__name__)


def read_records(
    path: Path, fmt: Format, text_field: str = "text", id_field: str = "id"
) -> Iterator[Record | Invalid]:
    """Every line of ``path`` as a :class:`Record` or an :class:`Invalid`, in order.

    Blank lines of a JSONL file are not records and yield nothing.
    """
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            line = _decode_line(raw, number)
            if isinstance(line, Invalid):
                yield line
            elif fmt == "jsonl":
                if line.strip():
                    yield _jsonl_record(line, number, text_field, id_field)
            elif not line.strip():
                yield Invalid(number, "empty or whitespace only")
            else:
                yield Record(number, number, line)


def scan_inputs(
    args: argparse.Namespace,
    fmt: Format,
    written: list[Any],
    key: Callable[[str | int], Any] = lambda ident: ident,
    label: str = "",
) -> Scan:
    """Count and check the inputs; ``written`` are the ids the output already holds.

    ``key`` turns an input id into the form the output stores (Parquet ids are strings);
    ``label`` names a record of the output in a mismatch message (``OUTPUT line``).
    """
    scan = Scan()
    label = label or f"{args.output} line"
    for item in read_records(args.input, fmt, args.text_field, args.id_field):
        if isinstance(item, Invalid):
            scan.invalid_total += 1
            if len(scan.invalid) < REPORT_CAP:
                scan.invalid.append(item)
            continue
        if (
            scan.valid < len(written)
            and scan.mismatch is None
            and written[scan.valid] != key(item.id)
        ):
            scan.mismatch = (
                f"{label} {scan.valid + 1} has id {written[scan.valid]!r} but input "
                f"record {scan.valid + 1} (line {item.line}) has id {item.id!r}: the output "
                "belongs to another input. Pass another --output, or --overwrite to start over."
            )
        scan.valid += 1
    return scan


def report_invalid(scan: Scan, path: Path, cap: int) -> str:
    lines = [f"  line {item.line}: {item.reason}" for item in scan.invalid[:cap]]
    if scan.invalid_total > cap:
        lines.append(f"  ... and {scan.invalid_total - cap} more")
    return f"{path}:\n" + "\n".join(lines)
