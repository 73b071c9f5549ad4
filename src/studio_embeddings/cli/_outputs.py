"""``studio-embeddings embed``'s output formats, each resumable: JSONL, ``.npy`` and Parquet.

Every format is a :class:`Sink` with the same life: :meth:`~Sink.read` tells what an earlier
run left (read only: nothing is touched before the input has been checked), :meth:`~Sink.start`
repairs or clears it, :meth:`~Sink.write` appends one write batch (ids and a float32 matrix)
durably, and :meth:`~Sink.finish` makes the output whole. A file at the output's own name is
always complete; work in progress lives under names that say so.

| format | while running | finished |
| --- | --- | --- |
| ``jsonl`` | ``OUTPUT`` itself, one ``{"id", "embedding"}`` line per record, appended and synced per batch; a cut-off last line is dropped on resume | ``OUTPUT`` |
| ``npy`` | ``OUTPUT.partial``: a ``.npy`` header then the float32 rows, appended; the ids in ``IDS`` (``OUTPUT`` with ``.ids.jsonl`` for its suffix), one JSON string or integer per line, appended after the rows | the header rewritten with the row count, then ``OUTPUT.partial`` renamed to ``OUTPUT`` |
| ``parquet`` | ``OUTPUT.parts/``: one Parquet file per write batch, written under a temporary name and renamed, so each is whole or absent | the parts copied row group by row group into ``OUTPUT.partial``, renamed to ``OUTPUT``, the parts removed |

For ``npy`` the rows are synced before their ids, so after a crash the ids file never runs ahead
of the rows: resume keeps as many records as both hold and cuts the rest.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from studio_embeddings.cli._files import Stop

__all__ = [
    "OUTPUT_FORMATS",
    "Held",
    "JsonlSink",
    "NpySink",
    "OutputFormat",
    "ParquetSink",
    "Sink",
    "ids_path",
    "make_sink",
    "numpy_module",
    "output_format",
    "pyarrow_modules",
    "read_lines",
]

OutputFormat = Literal["jsonl", "npy", "parquet"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("jsonl", "npy", "parquet")
_BY_SUFFIX: dict[str, OutputFormat] = {".jsonl": "jsonl", ".npy": "npy", ".parquet": "parquet"}

#: Bytes of the ``.npy`` header this command writes: room for any row count, so the header
#: can be rewritten in place at the end (64-byte aligned, as numpy's own headers are).
NPY_HEADER = 128
_NPY_MAGIC = b"\x93NUMPY\x01\x00"


def output_format(path: Path, given: str | None) -> OutputFormat:
    """``--format`` if given, else by the output's suffix (``.npy``, ``.parquet``), else JSONL."""
    if given is not None:
        if given == "text":
            msg = (
                "--format names the output format (jsonl, npy or parquet); "
                "for plain-text input pass --input-format text."
            )
            raise Stop(msg, 2)
        if given not in OUTPUT_FORMATS:
            msg = f"unknown output format {given!r}: choose jsonl, npy or parquet."
            raise Stop(msg, 2)
        return given  # type: ignore[return-value]
    return _BY_SUFFIX.get(path.suffix.lower(), "jsonl")


def numpy_module() -> Any:
    """numpy, or a :class:`Stop` naming the extra (every format goes through the array path)."""
    try:
        return importlib.import_module("numpy")
    except ImportError:
        msg = "studio-embeddings embed needs numpy: pip install 'studio-embeddings[numpy]'"
        raise Stop(msg, 2) from None


def pyarrow_modules() -> tuple[Any, Any]:
    """(pyarrow, pyarrow.parquet), or a :class:`Stop` naming the ``parquet`` extra."""
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError:
        msg = "--format parquet needs pyarrow: pip install 'studio-embeddings[parquet]'"
        raise Stop(msg, 2) from None


def ids_path(output: Path) -> Path:
    """The ids sidecar of a ``.npy`` output: ``vectors.npy`` -> ``vectors.ids.jsonl``."""
    return output.with_name(
        output.stem + ".ids.jsonl" if output.suffix else output.name + ".ids.jsonl"
    )


@dataclass
class Held:
    """What an output already holds: the ids of its records in order, and their length."""

    ids: list[Any] = field(default_factory=list)
    dims: int | None = None
    #: the output is finished (at its own name), not work in progress
    complete: bool = False
    #: what resuming will repair, said when it starts
    notes: list[str] = field(default_factory=list)


def _fsync_dir(path: Path) -> None:
    # A rename is durable once its directory is synced (not possible on every platform).
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sync(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())


def _check_dims(matrix: Any, dims: int | None, np: Any) -> int:
    width = int(matrix.shape[1])
    if dims is not None and width != dims:
        msg = (
            f"The new vectors have {width} dimensions but the output holds "
            f"{dims}-dimensional ones: was it written with another model or --dimensions? "
            "Pass the same settings, another --output, or --overwrite."
        )
        raise Stop(msg)
    # A float64 sum of float32 values cannot overflow, so it is finite unless one value is not
    # (and it needs no temporary array the size of the matrix, as isfinite(matrix) would).
    if not np.isfinite(matrix.sum(dtype=np.float64)):
        msg = "The provider returned a vector with NaN or infinity; nothing of it was written."
        raise Stop(msg)
    return width


# ------------------------------------------------------------------------- line files


@dataclass
class Lines:
    """The leading valid lines of a line file (JSONL output, or an ids sidecar)."""

    values: list[Any] = field(default_factory=list)
    dims: int | None = None
    keep_bytes: int = 0
    size: int = 0
    repair_newline: bool = False


def read_lines(
    path: Path, parse: Callable[[bytes], tuple[Any, int | None] | None], what: str
) -> Lines:
    """The values of ``path``'s leading valid lines (``parse`` gives (value, length) or None).

    A crash can only leave a cut-off tail, so invalid lines at the end are dropped; an invalid
    line followed by valid ones means the file is not ours, and stops the run.
    """
    done = Lines()
    if not path.exists():
        return done
    bad_line = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            done.size += len(raw)
            whole = raw if raw.endswith(b"\n") else raw + b"\n"
            # A last line without its newline is kept only if it is whole (written by hand).
            parsed = parse(whole) if raw.strip() else None
            if parsed is not None and None not in (done.dims, parsed[1]) and parsed[1] != done.dims:
                parsed = None
            if parsed is None:
                bad_line = bad_line or number
                continue
            if bad_line:
                msg = (
                    f"{path} line {bad_line} is not {what}, but valid records follow it: this "
                    "file was not written by an interrupted run. Pass another --output, or "
                    "--overwrite to start over."
                )
                raise Stop(msg)
            done.values.append(parsed[0])
            done.dims = parsed[1]
            done.keep_bytes += len(raw)
            done.repair_newline = whole is not raw
    return done


def _record_line(raw: bytes) -> tuple[Any, int] | None:
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


def _id_line(raw: bytes) -> tuple[Any, None] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return value, None


def _cut(path: Path, lines: Lines) -> IO[bytes]:
    """``path`` opened for appending after its valid lines (created if missing)."""
    f = path.open("r+b" if path.exists() else "w+b")
    f.truncate(lines.keep_bytes)
    f.seek(lines.keep_bytes)
    if lines.repair_newline:
        f.write(b"\n")
    return f


def _dropped(path: Path, lines: Lines) -> list[str]:
    if lines.size > lines.keep_bytes:
        return [f"Dropped an incomplete tail of {lines.size - lines.keep_bytes} bytes from {path}."]
    return []


# ------------------------------------------------------------------------------ sinks


class Sink:
    """One output format (see the module docstring)."""

    format: OutputFormat
    #: how a resumed record is named in a mismatch message, e.g. "OUTPUT line"
    label: str = ""

    def __init__(self, path: Path, np: Any) -> None:
        self.path = path
        self.np = np
        self.dims: int | None = None
        self.rows = 0
        #: where the records written so far are, until :meth:`finish`
        self.work = path

    def files(self) -> list[Path]:
        """Every path this sink may write (none may be the input)."""
        return [self.path]

    def id_key(self, ident: str | int) -> Any:
        """An input id as this format stores it (to compare with what an output holds)."""
        return ident

    def read(self) -> Held:
        raise NotImplementedError

    def start(self, held: Held, overwrite: bool) -> None:
        raise NotImplementedError

    def write(self, ids: Sequence[str | int], matrix: Any) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Make the output whole (its name appears only now, for npy and Parquet)."""

    def tidy(self) -> None:
        """Remove what a run that crashed after finishing left behind (nothing to embed)."""

    def close(self) -> None:
        """Release open files (after an error too); what was written stays for a resume."""


class JsonlSink(Sink):
    """``{"id": ..., "embedding": [...]}`` per line, appended and synced per write batch."""

    format = "jsonl"

    def __init__(self, path: Path, np: Any) -> None:
        super().__init__(path, np)
        self.label = f"{path} line"
        self.lines = Lines()
        self.out: IO[bytes] | None = None

    def read(self) -> Held:
        self.lines = read_lines(self.path, _record_line, "an embedding record")
        lines = self.lines
        whole = lines.size == lines.keep_bytes and not lines.repair_newline
        return Held(
            list(lines.values),
            lines.dims,
            complete=self.path.exists() and whole,
            notes=_dropped(self.path, lines),
        )

    def start(self, held: Held, overwrite: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.out = _cut(self.path, Lines() if overwrite else self.lines)
        self.dims, self.rows = held.dims, len(held.ids)

    def write(self, ids: Sequence[str | int], matrix: Any) -> None:
        assert self.out is not None
        self.dims = _check_dims(matrix, self.dims, self.np)
        # Row by row through the file's buffer: only one row's Python floats at a time. The
        # floats are the float32 values themselves (as the list path gives them), and their
        # repr reads back as the same float64, so as the same float32 bits.
        for ident, row in zip(ids, matrix, strict=True):
            line = json.dumps(
                {"id": ident, "embedding": row.tolist()}, ensure_ascii=False, separators=(",", ":")
            )
            self.out.write(line.encode("utf-8") + b"\n")
        _sync(self.out)
        self.rows += len(ids)

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None


def _npy_header(rows: int, dims: int) -> bytes:
    # numpy writes no header for an array it has not seen yet, and this one must be rewritten in
    # place, so it is built here at a fixed size (format 1.0, as numpy.lib.format documents it).
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dims}), }}"
    body = text.ljust(NPY_HEADER - len(_NPY_MAGIC) - 2 - 1) + "\n"
    return _NPY_MAGIC + struct.pack("<H", len(body)) + body.encode("latin1")


class NpySink(Sink):
    """The matrix in ``OUTPUT`` (float32, shape (n, dims)), the ids in a JSONL sidecar."""

    format = "npy"

    def __init__(self, path: Path, np: Any) -> None:
        super().__init__(path, np)
        self.partial = self.work = path.with_name(path.name + ".partial")
        self.ids = ids_path(path)
        self.label = f"{self.ids} line"
        self.lines = Lines()
        self.data: IO[bytes] | None = None
        self.id_out: IO[bytes] | None = None
        self.source: Path | None = None  # the matrix file resumed from
        self._cut_rows = 0  # where the kept rows of the partial file end

    def files(self) -> list[Path]:
        return [self.path, self.partial, self.ids]

    def _header(self, path: Path) -> tuple[int, int, int]:
        """(rows, dims, header bytes) of a float32 matrix file, or a Stop if it is not one."""
        fmt = self.np.lib.format
        try:
            with path.open("rb") as f:
                version = fmt.read_magic(f)
                read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, fortran, dtype = read(f)
                offset = f.tell()
        except (ValueError, OSError, struct.error) as e:
            msg = f"{path} is not a .npy file ({e}). Pass another --output, or --overwrite."
            raise Stop(msg) from None
        if len(shape) != 2 or fortran or dtype != self.np.dtype("<f4"):
            msg = (
                f"{path} holds a {dtype} array of shape {shape}, not a float32 matrix: it was "
                "not written by this command. Pass another --output, or --overwrite."
            )
            raise Stop(msg)
        return int(shape[0]), int(shape[1]), offset

    def read(self) -> Held:
        self.lines = read_lines(self.ids, _id_line, "a JSON string or integer id")
        ids, held = self.lines.values, Held()
        held.notes = _dropped(self.ids, self.lines)
        if self.path.exists():
            rows, held.dims, _ = self._header(self.path)
            if len(ids) != rows or self.lines.size != self.lines.keep_bytes:
                msg = (
                    f"{self.path} holds {rows} rows but {self.ids} holds {len(ids)} ids: they "
                    "do not belong together. Pass another --output, or --overwrite."
                )
                raise Stop(msg)
            held.ids, held.complete, self.source = ids, True, self.path
        elif self.partial.exists():
            _, held.dims, offset = self._header(self.partial)
            row_bytes = 4 * held.dims
            rows = (self.partial.stat().st_size - offset) // row_bytes
            keep = min(rows, len(ids))
            # The rows are synced before their ids: more rows than ids is a cut-off batch.
            if rows > keep:
                held.notes.append(f"Dropped {rows - keep} row(s) without ids from {self.partial}.")
            elif (self.partial.stat().st_size - offset) % row_bytes:
                held.notes.append(f"Dropped a cut-off row from {self.partial}.")
            if len(ids) > keep:
                held.notes.append(f"Dropped {len(ids) - keep} id(s) without rows from {self.ids}.")
            held.ids, self.source = ids[:keep], self.partial
            self._cut_rows = offset + keep * row_bytes
        elif ids:
            held.notes.append(f"Dropped {self.ids}: its matrix file is gone.")
        return held

    def start(self, held: Held, overwrite: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for path in self.files():
                path.unlink(missing_ok=True)
            self.lines, self.source = Lines(), None
        keep = len(held.ids)
        self.dims, self.rows = held.dims, keep
        if self.source is self.path:  # a finished file that now gets more rows
            os.replace(self.path, self.partial)
            self._cut_rows = self.partial.stat().st_size
        elif self.source is None:
            self.partial.unlink(missing_ok=True)
        if self.source is not None:
            self.data = self.partial.open("r+b")
            self.data.truncate(self._cut_rows)
            self.data.seek(self._cut_rows)
        # The ids file is cut to the rows kept (never more ids than rows, see read()).
        id_lines = self.lines
        if len(id_lines.values) > keep:
            id_lines = Lines()
            with self.ids.open("rb") as f:
                for _ in range(keep):
                    id_lines.keep_bytes += len(f.readline())
        self.id_out = _cut(self.ids, id_lines)

    def write(self, ids: Sequence[str | int], matrix: Any) -> None:
        assert self.id_out is not None
        self.dims = _check_dims(matrix, self.dims, self.np)
        if self.data is None:
            self.data = self.partial.open("w+b")
            self.data.write(_npy_header(0, self.dims))
        self.data.write(self.np.ascontiguousarray(matrix, dtype="<f4").data)
        _sync(self.data)  # the rows first: an id on disk always has its row
        self.id_out.write("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in ids).encode())
        _sync(self.id_out)
        self.rows += len(ids)

    def finish(self) -> None:
        if self.data is None:
            return  # nothing written (no input), or already finished
        self.data.seek(0)
        self.data.write(_npy_header(self.rows, self.dims or 0))
        _sync(self.data)
        self.data.close()
        self.data = None
        os.replace(self.partial, self.path)
        _fsync_dir(self.path.parent)

    def close(self) -> None:
        for f in (self.data, self.id_out):
            if f is not None:
                f.close()
        self.data = self.id_out = None


class ParquetSink(Sink):
    """Columns ``id`` (string) and ``embedding`` (``fixed_size_list<float32>[dims]``)."""

    format = "parquet"

    def __init__(self, path: Path, np: Any) -> None:
        super().__init__(path, np)
        self.pa, self.pq = pyarrow_modules()
        self.parts = self.work = path.with_name(path.name + ".parts")
        self.partial = path.with_name(path.name + ".partial")
        self.label = f"{path} row"
        self.kept: list[Path] = []  # the parts resumed from, in order
        self.from_final = False

    def files(self) -> list[Path]:
        return [self.path, self.partial]

    def id_key(self, ident: str | int) -> Any:
        return str(ident)

    def _part(self, start: int) -> Path:
        return self.parts / f"{start:012d}.parquet"

    def _schema(self, dims: int) -> Any:
        pa = self.pa
        return pa.schema([("id", pa.string()), ("embedding", pa.list_(pa.float32(), dims))])

    def _read_file(self, path: Path) -> tuple[list[str], int]:
        """(ids, dims) of a Parquet file this command wrote, or a Stop if it is not one."""
        try:
            f = self.pq.ParquetFile(path)
            schema = f.schema_arrow
        except (OSError, self.pa.ArrowException) as e:
            msg = f"{path} is not a Parquet file ({e}). Pass another --output, or --overwrite."
            raise Stop(msg) from None
        kind = schema.field("embedding").type if "embedding" in schema.names else None
        dims = getattr(kind, "list_size", 0)
        if (
            schema.names != ["id", "embedding"]
            or not dims
            or kind != self.pa.list_(self.pa.float32(), dims)
        ):
            msg = (
                f"{path} has columns {schema}, not id and a fixed-size list of float32: it "
                "was not written by this command. Pass another --output, or --overwrite."
            )
            raise Stop(msg)
        ids = f.read(columns=["id"]).column("id").to_pylist()
        return ids, int(dims)

    def read(self) -> Held:
        held = Held()
        if self.path.exists():
            held.ids, held.dims = self._read_file(self.path)
            held.complete = self.from_final = True
            return held
        if not self.parts.is_dir():
            return held
        parts = sorted(self.parts.glob("*.parquet"))
        for number, part in enumerate(parts):
            # Parts are renamed into place whole, named by their first row, written in order.
            if part != self._part(len(held.ids)):
                held.notes.append(
                    f"Dropped {len(parts) - number} part(s) after a gap in {self.parts}."
                )
                break
            ids, dims = self._read_file(part)
            if held.dims is not None and dims != held.dims:
                msg = f"{part} holds {dims}-dimensional vectors, the parts before it {held.dims}."
                raise Stop(msg)
            held.ids.extend(ids)
            held.dims = dims
            self.kept.append(part)
        return held

    def start(self, held: Held, overwrite: bool) -> None:
        if overwrite:
            self.path.unlink(missing_ok=True)
            shutil.rmtree(self.parts, ignore_errors=True)
            self.kept, self.from_final = [], False
        self.partial.unlink(missing_ok=True)
        self.dims, self.rows = held.dims, len(held.ids)
        if self.from_final:
            # A finished file: finish() has nothing to do unless rows are added; then it is
            # the first part of the next assembly.
            shutil.rmtree(self.parts, ignore_errors=True)
            return
        self.parts.mkdir(parents=True, exist_ok=True)
        for stale in self.parts.iterdir():
            if stale not in self.kept:
                stale.unlink()

    def tidy(self) -> None:
        shutil.rmtree(self.parts, ignore_errors=True)
        self.partial.unlink(missing_ok=True)

    def _adopt_final(self) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, self._part(0))
        self.kept, self.from_final = [self._part(0)], False

    def write(self, ids: Sequence[str | int], matrix: Any) -> None:
        pa = self.pa
        self.dims = _check_dims(matrix, self.dims, self.np)
        if self.from_final:
            self._adopt_final()
        embedding = pa.FixedSizeListArray.from_arrays(
            pa.array(matrix.reshape(-1), type=pa.float32()), self.dims
        )
        table = pa.table(
            {"id": pa.array([str(i) for i in ids], pa.string()), "embedding": embedding},
            schema=self._schema(self.dims),
        )
        part = self._part(self.rows)
        tmp = part.with_name(part.name + ".tmp")
        self.pq.write_table(table, tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, part)
        _fsync_dir(self.parts)
        self.kept.append(part)
        self.rows += len(ids)

    def finish(self) -> None:
        if self.from_final or not self.kept:
            return
        assert self.dims is not None
        # One row group in memory at a time (a part is one write batch).
        with self.pq.ParquetWriter(self.partial, self._schema(self.dims)) as writer:
            for part in self.kept:
                f = self.pq.ParquetFile(part)
                for group in range(f.num_row_groups):
                    writer.write_table(f.read_row_group(group))
        with self.partial.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(self.partial, self.path)
        _fsync_dir(self.path.parent)
        shutil.rmtree(self.parts, ignore_errors=True)


def make_sink(fmt: OutputFormat, path: Path, np: Any) -> Sink:
    """The sink of ``fmt`` writing ``path`` (Parquet imports pyarrow here, or stops)."""
    sinks: dict[str, type[Sink]] = {"jsonl": JsonlSink, "npy": NpySink, "parquet": ParquetSink}
    return sinks[fmt](path, np)
