"""``studio-embeddings embed``: embed a JSONL or text file into JSONL, ``.npy`` or Parquet,
resumably.

The command is a thin shell over :class:`~studio_embeddings._client.EmbeddingsClient`: the
core batches, paces, fans out and retries, and hands back each write batch as one float32
matrix (:meth:`~studio_embeddings._client.EmbeddingsClient.embed_array`); this module reads,
validates, resumes and writes.

Read:
    ``.jsonl``, ``.ndjson`` and ``.json`` files (or ``--input-format jsonl``) hold one JSON
    object per line; the text is ``--text-field``, the id ``--id-field`` or, when the object
    has no such field, the 1-based line number. Blank lines are ignored. Any other file (or
    ``--input-format text``) holds one document per line, its id the line number.
Validate:
    the whole input is checked before anything is sent: bad UTF-8, malformed JSON, a line
    that is not an object, a missing or non-string text, an empty or whitespace-only text, an
    id that is not a string or integer. Every problem is reported with its line number (the
    first 20 printed) and the run stops with exit code 1, unless ``--skip-invalid`` skips and
    counts them.
Write:
    ``--format jsonl|npy|parquet`` (default: by the output's suffix ``.npy`` / ``.parquet``,
    else JSONL), in input order, one write batch (``--write-batch`` texts) at a time, each
    synced to disk; ``_outputs.py`` says how each format is laid out while running and when
    finished. ``--write-batch`` counts texts per write, not per request (that is
    ``--batch-size``, LangChain's ``chunk_size``); its old name ``--chunk-size`` still works,
    hidden and deprecated.
Resume:
    what an earlier run wrote stands for the first inputs (their ids are checked); a cut-off
    tail left by a crash is dropped, and only the remaining inputs are sent and appended.
    ``--overwrite`` starts over.

Memory: one write batch's matrix and the requests in flight (and, for JSONL, one row's text).

Exit codes: 0 done; 1 invalid input, an output that does not belong to the input, or a
provider error (what was written is kept: rerun to resume); 2 a setting is wrong or missing
(for instance no API key, numpy or pyarrow missing); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio_embeddings.cli._common import emulator_settings, say
from studio_embeddings.cli._files import (
    JSONL_SUFFIXES,
    REPORT_CAP,
    Format,
    Record,
    Stop,
    input_format,
    read_records,
    report_invalid,
    scan_inputs,
)
from studio_embeddings.cli._outputs import (
    Held,
    Sink,
    make_sink,
    numpy_module,
    output_format,
)
from studio_embeddings.providers import credential_help

if TYPE_CHECKING:
    from studio_embeddings._client import EmbeddingsClient

__all__ = ["add_parser", "run"]

#: Upper bound of the default write batch (texts embedded and written per step).
MAX_DEFAULT_CHUNK = 1024

_EPILOG = """\
input formats (--input-format, else by INPUT's name):
  JSONL (.jsonl, .ndjson, .json)  {"id": "doc-1", "text": "Paris is the capital of France."}
                                  one object per line; the id defaults to the line number
  text (any other name)           one document per line; the id is the line number

output formats (--format, else by OUTPUT's suffix), one record per valid input, in input order:
  jsonl (.jsonl, any other name)  {"id": ..., "embedding": [...]} per line
  npy (.npy)                      OUTPUT: a float32 matrix of shape (records, dims), for
                                  numpy.load; ids in OUTPUT's name with .ids.jsonl for its
                                  suffix (vectors.npy -> vectors.ids.jsonl), one JSON string or
                                  integer per line, line i for row i
  parquet (.parquet)              columns id (string) and embedding (fixed-size list of
                                  float32); needs pyarrow: pip install 'studio-embeddings[parquet]'
  While it runs, npy writes OUTPUT.partial (and the ids file) and parquet writes OUTPUT.parts/;
  OUTPUT appears, renamed into place, only when every record is in it.

resume: rerun the same command after an interruption; the records already written are kept
  (a cut-off tail is dropped) and only the rest is embedded. --overwrite starts over.

credentials come from the environment (never the command line):
{credentials}
  --emulator runs an offline emulator in-process instead (deterministic stand-in vectors).

exit codes: 0 done, 1 invalid input or provider error (rerun to resume), 2 bad or missing
  setting (or numpy / pyarrow missing), 130 interrupted.

examples:
  studio-embeddings embed docs.jsonl --output vectors.jsonl
  studio-embeddings embed notes.txt --output vectors.jsonl --provider yandex
  studio-embeddings embed docs.jsonl --output vectors.jsonl --emulator --skip-invalid
  studio-embeddings embed docs.jsonl --output vectors.npy        # + vectors.ids.jsonl
  studio-embeddings embed docs.jsonl --output vectors.parquet
"""


# ------------------------------------------------------------------------------ parser


def add_parser(sub: Any) -> None:
    """Register the ``embed`` subcommand on the ``studio-embeddings`` subparsers ``sub``."""
    from studio_embeddings.providers import PROVIDERS

    p = sub.add_parser(
        "embed",
        help="embed a JSONL or text file into JSONL, .npy or Parquet (resumable)",
        description="Embeds every line of INPUT and writes its id and vector to OUTPUT "
        "(JSONL, .npy with an ids file, or Parquet) in input order, in synced write batches. "
        "The input is validated before anything is sent; rerunning the same command resumes "
        "an interrupted run.",
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
        help="file to write (.jsonl, .npy or .parquet); if an earlier run wrote to it, "
        "the run resumes after the records it holds",
    )
    p.add_argument(
        "--provider",
        choices=sorted(PROVIDERS),
        default="nebius",
        help="embeddings service (default: %(default)s)",
    )
    p.add_argument(
        "--format",
        default=None,
        metavar="{jsonl,npy,parquet}",
        help="output format (default: npy for .npy, parquet for .parquet, jsonl otherwise)",
    )
    p.add_argument(
        "--input-format",
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
        "--write-batch",
        type=int,
        default=None,
        metavar="N",
        help="texts embedded and appended to OUTPUT per step, each step synced to disk "
        f"(default: 2 x batch size x concurrency, at most {MAX_DEFAULT_CHUNK})",
    )
    # The old name, hidden: "chunk size" means texts per request in LangChain (chunk_size).
    p.add_argument("--chunk-size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


# -------------------------------------------------------------------------------- run


def _client_settings(args: argparse.Namespace, emulator: Any) -> dict[str, Any]:
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
        settings.update(
            emulator_settings(args.provider, emulator, project_key="project", project=args.project)
        )
    return settings


def _default_chunk(client: EmbeddingsClient) -> int:
    settings = client.settings
    return max(1, min(MAX_DEFAULT_CHUNK, 2 * settings.batch_size * settings.max_concurrency))


def run(args: argparse.Namespace) -> int:
    """Run ``studio-embeddings embed`` for parsed ``args``; returns the exit code."""
    if args.output.is_dir():
        say(f"studio-embeddings embed: error: --output {args.output} is a directory: name a file.")
        return 2
    try:
        return _run(args)
    except Stop as stop:
        say(f"studio-embeddings embed: error: {stop.message}")
        return stop.code
    except OSError as e:  # the output (or its folder) cannot be read or written
        where = f" {e.filename}" if e.filename else ""
        say(f"studio-embeddings embed: error: cannot write{where}: {e.strerror or e}.")
        return 2


def _run(args: argparse.Namespace) -> int:
    from studio_embeddings.errors import ConfigurationError

    if args.chunk_size is not None:
        if args.write_batch is not None:
            msg = "--chunk-size is the old name of --write-batch: pass only --write-batch."
            raise Stop(msg, 2)
        say("--chunk-size is deprecated: it is now --write-batch (texts per write).")
        args.write_batch = args.chunk_size
    if args.write_batch is not None and args.write_batch < 1:
        msg = f"--write-batch must be at least 1, got {args.write_batch}."
        raise Stop(msg, 2)
    if not args.input.is_file():
        msg = f"cannot read {args.input}: no such file."
        raise Stop(msg, 2)
    # Checked before anything is read or sent: every format goes through the float32 matrix.
    sink = make_sink(output_format(args.output, args.format), args.output, numpy_module())
    for path in sink.files():
        with contextlib.suppress(OSError):
            if path.exists() and path.samefile(args.input):
                msg = f"--output must not be the input file ({path} is the input)."
                raise Stop(msg, 2)
    _note_old_format_flag(args, sink)

    with contextlib.ExitStack() as stack:
        emulator = None
        if args.emulator:
            from studio_embeddings.emulator import Emulator

            emulator = stack.enter_context(Emulator())
            say(
                f"Using the offline emulator at {emulator.url}: "
                "stand-in vectors, not the real model."
            )
        from studio_embeddings._client import EmbeddingsClient

        try:
            client = EmbeddingsClient(args.provider, **_client_settings(args, emulator))
        except ConfigurationError as e:
            hint = "" if args.emulator else "\nOr pass --emulator to try the command offline."
            msg = f"{e}{hint}"
            raise Stop(msg, 2) from None
        stack.callback(client.close)
        return _embed_file(args, client, sink)
    raise AssertionError  # pragma: no cover - ExitStack does not swallow


def _note_old_format_flag(args: argparse.Namespace, sink: Sink) -> None:
    """``--format jsonl`` used to name the input format: where that may be what was meant (JSON
    objects in a file not named .jsonl), ask which, before anything is sent or billed."""
    if (
        args.format != "jsonl"
        or args.input_format is not None
        or args.input.suffix.lower() in JSONL_SUFFIXES
    ):
        return
    with args.input.open("rb") as f:
        first = next((line for line in f if line.strip()), b"")
    if first.lstrip().startswith(b"{"):
        msg = (
            f"{args.input} holds JSON objects but is not named .jsonl, and --format now names "
            "the output format: pass --input-format jsonl to read the objects, or "
            "--input-format text to embed each line as it is."
        )
        raise Stop(msg, 2)


def _embed_file(args: argparse.Namespace, client: EmbeddingsClient, sink: Sink) -> int:
    fmt = input_format(args.input, args.input_format)
    held = Held() if args.overwrite else sink.read()
    scan = scan_inputs(args, fmt, held.ids, sink.id_key, sink.label)
    if scan.invalid_total and not args.skip_invalid:
        msg = (
            f"{scan.invalid_total} invalid line(s) in "
            f"{report_invalid(scan, args.input, REPORT_CAP)}\n"
            "Nothing was sent. Fix them, or pass --skip-invalid to embed the rest."
        )
        raise Stop(msg)
    if scan.invalid_total:
        say(
            f"Skipping {scan.invalid_total} invalid line(s) (--skip-invalid) in "
            f"{report_invalid(scan, args.input, 5)}"
        )

    if scan.mismatch is not None:
        raise Stop(scan.mismatch)
    if len(held.ids) > scan.valid:
        msg = (
            f"{args.output} holds {len(held.ids)} records but {args.input} has only "
            f"{scan.valid} valid inputs: it belongs to another input. Pass another --output, "
            "or --overwrite to start over."
        )
        raise Stop(msg)
    if held.complete and len(held.ids) == scan.valid:
        sink.tidy()
        say(f"All {scan.valid} records are already in {args.output}: nothing to do.")
        return 0

    try:
        sink.start(held, args.overwrite)
        for note in held.notes:
            say(note)
        if held.ids and len(held.ids) < scan.valid:
            say(
                f"Resuming: {len(held.ids)} of {scan.valid} records are already written; "
                f"embedding the remaining {scan.valid - len(held.ids)}."
            )
        return _Writer(args, client, sink, len(held.ids), scan.valid).run(fmt)
    finally:
        sink.close()


class _Writer:
    """Embeds the inputs after the ones already written, and appends them batch by batch."""

    def __init__(
        self,
        args: argparse.Namespace,
        client: EmbeddingsClient,
        sink: Sink,
        skipped: int,
        total: int,
    ) -> None:
        self.args = args
        self.client = client
        self.sink = sink
        self.skipped = skipped
        self.total = total
        self.written = self.requests = self.tokens = self.retries = 0
        self.bar: Any = None

    def run(self, fmt: Format) -> int:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

        from studio_embeddings.errors import StudioEmbeddingsError

        args, skipped = self.args, self.skipped
        if skipped < self.total:
            say(
                f"Embedding {self.total - skipped} text(s) from {args.input} with "
                f"{self.client.provider.name} {self.client.model_for(args.kind)!r} "
                f"into {args.output} ({self.sink.format})."
            )
        write_batch = args.write_batch or _default_chunk(self.client)
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
                if len(chunk) >= write_batch:
                    self._embed_and_write(chunk)
                    chunk = []
            if chunk:
                self._embed_and_write(chunk)
            self.sink.finish()
        except StudioEmbeddingsError as e:
            self.bar.close()
            msg = f"{e}\n{self._progress()}; rerun the same command to resume."
            raise Stop(msg) from None
        except KeyboardInterrupt:
            self.bar.close()
            say(f"{self._progress()}; rerun the same command to resume.")
            raise
        self.bar.close()
        say(
            f"Done: {self.written} embedded ({self.requests} request(s), {self.retries} retries, "
            f"{self.tokens} tokens), {skipped} already present; {args.output} holds "
            f"{self.total} records of {self.sink.dims} dimensions."
        )
        return 0

    def _progress(self) -> str:
        done = self.skipped + self.written
        return f"{done} of {self.total} records are in {self.sink.work}"

    def _pending(self, fmt: Format) -> Iterator[Record]:
        """The valid records not yet written (the written ones' ids were checked by the scan)."""
        args = self.args
        records = read_records(args.input, fmt, args.text_field, args.id_field)
        valid = (r for r in records if isinstance(r, Record))
        return itertools.islice(valid, self.skipped, None)

    def _embed_and_write(self, chunk: list[Record]) -> None:
        result = self.client.embed_array_with_result([r.text for r in chunk], kind=self.args.kind)
        assert result.array is not None
        self.sink.write([r.id for r in chunk], result.array)
        self.written += len(chunk)
        self.requests += result.requests
        self.tokens += result.total_tokens
        self.retries += result.retries
        self.bar.update(len(chunk))
