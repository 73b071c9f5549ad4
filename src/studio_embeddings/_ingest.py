"""``studio-embeddings embed``: embed a JSONL or text file into JSONL, resumably.

The command is a thin shell over :class:`~studio_embeddings._client.EmbeddingsClient`: the
core batches, paces, fans out and retries; this module reads, validates, resumes and writes.

Read:
    ``.jsonl``, ``.ndjson`` and ``.json`` files (or ``--format jsonl``) hold one JSON object per
    line; the text is ``--text-field``, the id ``--id-field`` or, when the object has no such
    field, the 1-based line number. Blank lines are ignored. Any other file (or
    ``--format text``) holds one document per line, its id the line number.
Validate:
    the whole input is checked before anything is sent: bad UTF-8, malformed JSON, a line
    that is not an object, a missing or non-string text, an empty or whitespace-only text, an
    id that is not a string or integer. Every problem is reported with its line number (the
    first 20 printed) and the run stops with exit code 1, unless ``--skip-invalid`` skips and
    counts them.
Resume:
    the output's first K complete, valid lines stand for the first K valid inputs (their ids
    are checked); a cut-off or invalid tail left by a crash is dropped, and only the remaining
    inputs are sent and appended. ``--overwrite`` starts over.
Write:
    ``{"id": ..., "embedding": [...]}`` per input, in input order, appended chunk by chunk
    (``--chunk-size`` texts, flushed and synced each time), so an interrupted run keeps what
    it finished.

Exit codes: 0 done; 1 invalid input, an output that does not belong to the input, or a
provider error (what was written is kept: rerun to resume); 2 a setting is wrong or missing
(for instance no API key); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from studio_embeddings.providers import credential_help

if TYPE_CHECKING:
    from studio_embeddings._client import EmbeddingsClient

__all__ = ["add_parser", "run"]

Format = Literal["jsonl", "text"]

#: File name endings read as JSON Lines when ``--format`` is not given.
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
#: Invalid input lines printed before "... and N more".
REPORT_CAP = 20
#: Upper bound of the default chunk (texts embedded and written per step).
MAX_DEFAULT_CHUNK = 1024

# Stand-in credentials for --emulator: the emulator accepts any non-empty key, and a real key
# must never leave for it.
_EMULATOR_KEY = "emulator-key"
_EMULATOR_PROJECT = "b1gemulatorfolder"

_EPILOG = """\
input formats:
  JSONL (.jsonl, .ndjson, .json)  {"id": "doc-1", "text": "Paris is the capital of France."}
                                  one object per line; the id defaults to the line number
  text (any other name)           one document per line; the id is the line number

output: one line {"id": ..., "embedding": [...]} per valid input, in input order.

resume: rerun the same command after an interruption; the records already in OUTPUT are
  kept (a cut-off last line is dropped) and only the rest is embedded. --overwrite starts over.

credentials come from the environment (never the command line):
{credentials}
  --emulator runs an offline emulator in-process instead (deterministic stand-in vectors).

exit codes: 0 done, 1 invalid input or provider error (rerun to resume), 2 bad or missing
  setting, 130 interrupted.

examples:
  studio-embeddings embed docs.jsonl --output vectors.jsonl
  studio-embeddings embed notes.txt --output vectors.jsonl --provider yandex
  studio-embeddings embed docs.jsonl --output vectors.jsonl --emulator --skip-invalid
"""


class _Stop(Exception):
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
class _Scan:
    valid: int = 0
    invalid: list[Invalid] = field(default_factory=list)
    invalid_total: int = 0
    mismatch: str | None = None


@dataclass
class _Done:
    """What an existing output already holds."""

    ids: list[Any] = field(default_factory=list)
    keep_bytes: int = 0
    size: int = 0
    dims: int | None = None
    repair_newline: bool = False


# ------------------------------------------------------------------------------ parser


def add_parser(sub: Any) -> None:
    """Register the ``embed`` subcommand on the ``studio-embeddings`` subparsers ``sub``."""
    from studio_embeddings.providers import PROVIDERS

    p = sub.add_parser(
        "embed",
        help="embed a JSONL or text file into JSONL (resumable)",
        description='Embeds every line of INPUT and writes {"id", "embedding"} JSON lines '
        "to OUTPUT in input order, in flushed chunks. The input is validated before anything "
        "is sent; rerunning the same command resumes an interrupted run.",
        epilog=_EPILOG.replace("{credentials}", credential_help()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", type=Path, help="JSONL or text file to embed")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="OUTPUT",
        help="JSONL file to write; if it exists, the run resumes after the records it holds",
    )
    p.add_argument(
        "--provider",
        choices=sorted(PROVIDERS),
        default="nebius",
        help="embeddings service (default: %(default)s)",
    )
    p.add_argument(
        "--format",
        choices=["jsonl", "text"],
        default=None,
        help="input format (default: jsonl for .jsonl/.ndjson/.json names, text otherwise)",
    )
    p.add_argument(
        "--text-field",
        default="text",
        metavar="NAME",
        help="JSONL field holding the text (default: %(default)s)",
    )
    p.add_argument(
        "--id-field",
        default="id",
        metavar="NAME",
        help="JSONL field holding the id, a string or integer; "
        "the 1-based line number when absent (default: %(default)s)",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip and count invalid lines instead of stopping before anything is sent",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over: discard what OUTPUT holds instead of resuming",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--emulator",
        action="store_true",
        help="embed with an in-process offline emulator (no key needed, stand-in vectors)",
    )
    where.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="service root ending in /v1, e.g. a 'studio-embeddings serve' emulator "
        "(default: $NEBIUS_API_BASE / $YC_API_BASE, else the provider's)",
    )
    p.add_argument(
        "--project",
        default=None,
        metavar="ID",
        help="Nebius project id / Yandex folder id (default: $NEBIUS_PROJECT_ID / $YC_FOLDER_ID)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model name or URI (default: the provider's document model, or its query model "
        "with --kind query)",
    )
    p.add_argument(
        "--kind",
        choices=["document", "query"],
        default="document",
        help="embed the texts as documents or as search queries (default: %(default)s)",
    )
    p.add_argument(
        "--dimensions",
        type=int,
        default=None,
        metavar="N",
        help="output vector length, for models that support it",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help="texts per request (default: the provider's; Yandex takes 1)",
    )
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="requests in flight at once (default: the provider's)",
    )
    p.add_argument(
        "--requests-per-second",
        type=float,
        default=None,
        metavar="R",
        help="client-side pace; 0 for none (default: the provider's quota, Yandex 10)",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        metavar="N",
        help="texts embedded and appended to OUTPUT per step "
        f"(default: 2 x batch size x concurrency, at most {MAX_DEFAULT_CHUNK})",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------ input


def input_format(path: Path, given: str | None) -> Format:
    """``--format`` if given, else by file name: JSONL for ``.jsonl``/``.ndjson``/``.json``."""
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


def _scan(args: argparse.Namespace, fmt: Format, written: list[Any]) -> _Scan:
    """Count and check the inputs; ``written`` are the ids the output already holds."""
    scan = _Scan()
    for item in read_records(args.input, fmt, args.text_field, args.id_field):
        if isinstance(item, Invalid):
            scan.invalid_total += 1
            if len(scan.invalid) < REPORT_CAP:
                scan.invalid.append(item)
            continue
        if scan.valid < len(written) and scan.mismatch is None and written[scan.valid] != item.id:
            scan.mismatch = (
                f"{args.output} line {scan.valid + 1} has id {written[scan.valid]!r} but input "
                f"record {scan.valid + 1} (line {item.line}) has id {item.id!r}: the output "
                "belongs to another input. Pass another --output, or --overwrite to start over."
            )
        scan.valid += 1
    return scan


def _report_invalid(scan: _Scan, path: Path, cap: int) -> str:
    lines = [f"  line {item.line}: {item.reason}" for item in scan.invalid[:cap]]
    if scan.invalid_total > cap:
        lines.append(f"  ... and {scan.invalid_total - cap} more")
    return f"{path}:\n" + "\n".join(lines)


# ----------------------------------------------------------------------------- output


def _valid_output_line(raw: bytes) -> tuple[Any, int] | None:
    """(id, vector length) of an output line, or None if it is not a record."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict) or "id" not in obj:
        return None
    vector = obj.get("embedding")
    if not isinstance(vector, list) or not vector:
        return None
    return obj["id"], len(vector)


def read_done(path: Path) -> _Done:
    """What ``path`` already holds: the ids of its leading valid lines, and where they end.

    A crash can only leave a cut-off tail (each chunk is written at once and flushed), so
    invalid lines at the end are dropped; an invalid line followed by valid ones means the
    file is not ours, and stops the run.
    """
    done = _Done()
    if not path.exists():
        return done
    bad_line = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            done.size += len(raw)
            whole = raw if raw.endswith(b"\n") else raw + b"\n"
            # A last line without its newline is kept only if it is whole (written by hand).
            parsed = _valid_output_line(whole) if raw.strip() else None
            if parsed is not None and done.dims is not None and parsed[1] != done.dims:
                parsed = None
            if parsed is None:
                bad_line = bad_line or number
                continue
            if bad_line:
                msg = (
                    f"{path} line {bad_line} is not an embedding record, but valid records "
                    "follow it: this file was not written by an interrupted run. Pass another "
                    "--output, or --overwrite to start over."
                )
                raise _Stop(msg)
            done.ids.append(parsed[0])
            done.dims = parsed[1]
            done.keep_bytes += len(raw)
            done.repair_newline = whole is not raw
    return done


def _line(ident: str | int, vector: list[float]) -> str:
    return (
        json.dumps({"id": ident, "embedding": vector}, ensure_ascii=False, separators=(",", ":"))
        + "\n"
    )


def _check_vectors(vectors: list[list[float]], dims: int | None) -> int:
    for vector in vectors:
        if dims is None:
            dims = len(vector)
        if len(vector) != dims:
            msg = (
                f"The new vectors have {len(vector)} dimensions but the output holds "
                f"{dims}-dimensional ones: was it written with another model or --dimensions? "
                "Pass the same settings, another --output, or --overwrite."
            )
            raise _Stop(msg)
        if not all(math.isfinite(x) for x in vector):
            msg = "The provider returned a vector with NaN or infinity; nothing of it was written."
            raise _Stop(msg)
    assert dims is not None
    return dims


# -------------------------------------------------------------------------------- run


def _client_settings(args: argparse.Namespace, emulator: Any) -> dict[str, Any]:
    from studio_embeddings.providers import get_provider

    p = get_provider(args.provider)
    settings: dict[str, Any] = {
        "batch_size": args.batch_size,
        "max_concurrency": args.max_concurrency,
        "requests_per_second": args.requests_per_second,
        "dimensions": args.dimensions,
        "project": args.project,
        "base_url": args.base_url,
    }
    if args.model:
        settings["query_model" if args.kind == "query" else "model"] = args.model
    if emulator is not None:
        settings["api_key"] = _EMULATOR_KEY
        settings["base_url"] = emulator.base_url(p.name)
        if p.project_required and not args.project:
            settings["project"] = _EMULATOR_PROJECT
    return settings


def _default_chunk(client: EmbeddingsClient) -> int:
    settings = client.settings
    return max(1, min(MAX_DEFAULT_CHUNK, 2 * settings.batch_size * settings.max_concurrency))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``studio-embeddings embed`` for parsed ``args``; returns the exit code."""
    try:
        return _run(args)
    except _Stop as stop:
        _say(f"studio-embeddings embed: error: {stop.message}")
        return stop.code


def _run(args: argparse.Namespace) -> int:
    from studio_embeddings.errors import ConfigurationError

    if args.chunk_size is not None and args.chunk_size < 1:
        msg = f"--chunk-size must be at least 1, got {args.chunk_size}."
        raise _Stop(msg, 2)
    if not args.input.is_file():
        msg = f"cannot read {args.input}: no such file."
        raise _Stop(msg, 2)
    with contextlib.suppress(OSError):
        if args.output.exists() and args.output.samefile(args.input):
            msg = "--output must not be the input file."
            raise _Stop(msg, 2)

    with contextlib.ExitStack() as stack:
        emulator = None
        if args.emulator:
            from studio_embeddings.emulator import Emulator

            emulator = stack.enter_context(Emulator())
            _say(
                f"Using the offline emulator at {emulator.url}: "
                "stand-in vectors, not the real model."
            )
        from studio_embeddings._client import EmbeddingsClient

        try:
            client = EmbeddingsClient(args.provider, **_client_settings(args, emulator))
        except ConfigurationError as e:
            hint = "" if args.emulator else "\nOr pass --emulator to try the command offline."
            msg = f"{e}{hint}"
            raise _Stop(msg, 2) from None
        stack.callback(client.close)
        return _embed_file(args, client)
    raise AssertionError  # pragma: no cover - ExitStack does not swallow


def _embed_file(args: argparse.Namespace, client: EmbeddingsClient) -> int:
    fmt = input_format(args.input, args.format)
    done = _Done() if args.overwrite else read_done(args.output)
    scan = _scan(args, fmt, done.ids)
    if scan.invalid_total and not args.skip_invalid:
        msg = (
            f"{scan.invalid_total} invalid line(s) in "
            f"{_report_invalid(scan, args.input, REPORT_CAP)}\n"
            "Nothing was sent. Fix them, or pass --skip-invalid to embed the rest."
        )
        raise _Stop(msg)
    if scan.invalid_total:
        _say(
            f"Skipping {scan.invalid_total} invalid line(s) (--skip-invalid) in "
            f"{_report_invalid(scan, args.input, 5)}"
        )

    if scan.mismatch is not None:
        raise _Stop(scan.mismatch)
    if len(done.ids) > scan.valid:
        msg = (
            f"{args.output} holds {len(done.ids)} records but {args.input} has only "
            f"{scan.valid} valid inputs: it belongs to another input. Pass another --output, "
            "or --overwrite to start over."
        )
        raise _Stop(msg)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    mode = "r+b" if args.output.exists() and not args.overwrite else "w+b"
    with args.output.open(mode) as out:
        out.truncate(done.keep_bytes)
        out.seek(done.keep_bytes)
        if done.repair_newline:
            out.write(b"\n")
        if done.size > done.keep_bytes:
            _say(
                f"Dropped an incomplete tail of {done.size - done.keep_bytes} bytes "
                f"from {args.output}."
            )
        if done.ids and len(done.ids) < scan.valid:
            _say(
                f"Resuming: {len(done.ids)} of {scan.valid} records are already in "
                f"{args.output}; embedding the remaining {scan.valid - len(done.ids)}."
            )
        return _Writer(args, client, out, done, scan.valid).run(fmt)


class _Writer:
    """Embeds the inputs after the ones already written, and appends them chunk by chunk."""

    def __init__(
        self,
        args: argparse.Namespace,
        client: EmbeddingsClient,
        out: IO[bytes],
        done: _Done,
        total: int,
    ) -> None:
        self.args = args
        self.client = client
        self.out = out
        self.done = done
        self.dims = done.dims
        self.total = total
        self.written = self.requests = self.tokens = self.retries = 0
        self.bar: Any = None

    def run(self, fmt: Format) -> int:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

        from studio_embeddings.errors import StudioEmbeddingsError

        args, skipped = self.args, len(self.done.ids)
        if skipped == self.total:
            _say(f"All {self.total} records are already in {args.output}: nothing to do.")
            return 0
        _say(
            f"Embedding {self.total - skipped} text(s) from {args.input} with "
            f"{self.client.provider.name} {self.client.model_for(args.kind)!r} "
            f"into {args.output}."
        )
        chunk_size = args.chunk_size or _default_chunk(self.client)
        self.bar = tqdm(
            total=self.total,
            initial=skipped,
            unit="text",
            desc="Embedding",
            disable=args.no_progress,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        try:
            chunk: list[Record] = []
            for record in self._pending(fmt):
                chunk.append(record)
                if len(chunk) >= chunk_size:
                    self._embed_and_write(chunk)
                    chunk = []
            if chunk:
                self._embed_and_write(chunk)
        except StudioEmbeddingsError as e:
            self.bar.close()
            msg = (
                f"{e}\n{skipped + self.written} of {self.total} records are in {args.output}; "
                "rerun the same command to resume."
            )
            raise _Stop(msg) from None
        except KeyboardInterrupt:
            self.bar.close()
            _say(
                f"{skipped + self.written} of {self.total} records are in {args.output}; "
                "rerun the same command to resume."
            )
            raise
        self.bar.close()
        _say(
            f"Done: {self.written} embedded ({self.requests} request(s), {self.retries} retries, "
            f"{self.tokens} tokens), {skipped} already present; {args.output} holds "
            f"{self.total} records of {self.dims} dimensions."
        )
        return 0

    def _pending(self, fmt: Format) -> Iterator[Record]:
        """The valid records not yet written (the written ones' ids were checked by the scan)."""
        args = self.args
        records = read_records(args.input, fmt, args.text_field, args.id_field)
        valid = (r for r in records if isinstance(r, Record))
        return itertools.islice(valid, len(self.done.ids), None)

    def _embed_and_write(self, chunk: list[Record]) -> None:
        result = self.client.embed_with_result([r.text for r in chunk], kind=self.args.kind)
        self.dims = _check_vectors(result.vectors, self.dims)
        # One write per chunk: a crash leaves at most a cut-off last line, which resume drops.
        lines = (_line(r.id, v) for r, v in zip(chunk, result.vectors, strict=True))
        self.out.write("".join(lines).encode("utf-8"))
        self.out.flush()
        os.fsync(self.out.fileno())
        self.written += len(chunk)
        self.requests += result.requests
        self.tokens += result.total_tokens
        self.retries += result.retries
        self.bar.update(len(chunk))
