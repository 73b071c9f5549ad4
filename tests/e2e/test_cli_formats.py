"""``studio-embeddings embed --format jsonl|npy|parquet`` against the emulator on loopback.

Each format, read back, equals the list path (``EmbeddingsClient.embed``) cast to float32, bit
for bit, on both providers; each resumes after an interruption (a provider error, a killed
process, a crash between the steps of a write or of the finish) with nothing duplicated, lost
or out of order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from studio_embeddings._client import EmbeddingsClient
from studio_embeddings.cli import main
from studio_embeddings.providers import get_provider

SRC = Path(__file__).resolve().parents[2] / "src"
FOLDER = "b1gtestfolder"
TOPICS = ["cats", "the Moon", "pasta", "football", "Paris", "stock markets", "Python", "rain"]
FORMATS = ["jsonl", "npy", "parquet"]
SUFFIX = {"jsonl": ".jsonl", "npy": ".npy", "parquet": ".parquet"}


def _texts(n: int) -> list[str]:
    return [f"Note {i}: something about {TOPICS[i % len(TOPICS)]}, number {i}." for i in range(n)]


def _docs(tmp_path: Path, n: int, name: str = "docs.jsonl") -> Path:
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(_texts(n))]
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _needs(fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")


def _options(emulator: Any, monkeypatch: pytest.MonkeyPatch, provider: str = "nebius") -> list[str]:
    p = get_provider(provider)
    monkeypatch.setenv(p.api_key_envs[0], "test-key")
    if p.project_required:
        assert p.project_env is not None
        monkeypatch.setenv(p.project_env, FOLDER)
    # No pacing on either side: the tests are about files, not quotas.
    emulator.configure(yandex_rps=None)
    return [
        "--provider", provider, "--base-url", emulator.base_url(provider), "--no-progress",
        "--requests-per-second", "0",
    ]  # fmt: skip


def _list_path(emulator: Any, provider: str, texts: list[str]) -> np.ndarray:
    """What the list path gives for ``texts``, cast to float32."""
    with EmbeddingsClient(
        provider,
        api_key="test-key",
        base_url=emulator.base_url(provider),
        project=FOLDER,
        requests_per_second=0,
    ) as client:
        return np.array(client.embed(texts), dtype=np.float32)


def _read_back(path: Path, fmt: str) -> tuple[list[Any], np.ndarray]:
    """(ids, float32 matrix) of a finished output of ``fmt``."""
    if fmt == "jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return [r["id"] for r in rows], np.array([r["embedding"] for r in rows], dtype=np.float32)
    if fmt == "npy":
        ids_file = path.with_name(path.stem + ".ids.jsonl")
        ids = [json.loads(line) for line in ids_file.read_text(encoding="utf-8").splitlines()]
        return ids, np.load(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    kind = table.schema.field("embedding").type
    assert table.schema.field("id").type == pa.string()
    assert kind == pa.list_(pa.float32(), kind.list_size)  # a fixed-size list of float32
    flat = table.column("embedding").combine_chunks().flatten().to_numpy()
    return table.column("id").to_pylist(), flat.reshape(table.num_rows, kind.list_size)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype == np.float32
        and a.shape == b.shape
        and (
            np.ascontiguousarray(a).view(np.uint32) == np.ascontiguousarray(b).view(np.uint32)
        ).all()
    )


def _sent(emulator: Any) -> list[str]:
    texts: list[str] = []
    for r in emulator.requests:
        if r.path.endswith("/embeddings") and r.body is not None:
            given = r.body["input"]
            texts.extend([given] if isinstance(given, str) else given)
    return texts


def _ids(n: int) -> list[str]:
    return [f"doc-{i}" for i in range(n)]


# ------------------------------------------------------------------ each format, exact


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("provider", ["nebius", "yandex"])
def test_each_format_equals_the_list_path_bit_for_bit(
    fmt: str, provider: str, emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _needs(fmt)
    n = 23
    out = tmp_path / f"vectors{SUFFIX[fmt]}"
    argv = ["embed", str(_docs(tmp_path, n)), "-o", str(out), "--write-batch", "5"]

    assert main([*argv, *_options(emulator, monkeypatch, provider)]) == 0

    ids, matrix = _read_back(out, fmt)
    assert ids == _ids(n)
    assert _same_bits(matrix, _list_path(emulator, provider, _texts(n)))
    # Nothing of the work in progress is left beside the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["docs.jsonl", out.name] + (["vectors.ids.jsonl"] if fmt == "npy" else [])
    )


def test_jsonl_floats_are_the_float32_values_themselves(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "vectors.jsonl"
    argv = ["embed", str(_docs(tmp_path, 6)), "-o", str(out)]
    assert main([*argv, *_options(emulator, monkeypatch)]) == 0

    reference = _list_path(emulator, "nebius", _texts(6))
    for line, want in zip(out.read_text(encoding="utf-8").splitlines(), reference, strict=True):
        values = json.loads(line)["embedding"]
        # Each number reads back as a float64 that is exactly a float32 (no rounding on the way).
        assert [float(np.float32(v)) for v in values] == values
        assert _same_bits(np.array(values, dtype=np.float32), want)


def test_npy_output_loads_with_numpy_mmap(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "vectors.npy"
    argv = ["embed", str(_docs(tmp_path, 9)), "-o", str(out), "--dimensions", "64"]
    assert main([*argv, *_options(emulator, monkeypatch)]) == 0

    mapped = np.load(out, mmap_mode="r")
    assert mapped.shape == (9, 64)
    assert mapped.dtype == np.dtype("<f4")
    assert mapped.flags.c_contiguous


# ------------------------------------------------------------------ choosing a format


@pytest.mark.parametrize(
    ("name", "flag", "fmt"),
    [
        ("out.npy", None, "npy"),
        ("out.parquet", None, "parquet"),
        ("out.jsonl", None, "jsonl"),
        ("out.vectors", None, "jsonl"),
        ("out.data", "npy", "npy"),
        ("out.bin", "parquet", "parquet"),
        ("out.parquet", "jsonl", "jsonl"),
    ],
)
def test_the_format_comes_from_the_suffix_or_the_flag(
    name: str,
    flag: str | None,
    fmt: str,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _needs(fmt)
    out = tmp_path / name
    argv = ["embed", str(_docs(tmp_path, 4)), "-o", str(out), *(["--format", flag] if flag else [])]

    assert main([*argv, *_options(emulator, monkeypatch)]) == 0

    head = out.read_bytes()
    sniffed = (
        "npy"
        if head.startswith(b"\x93NUMPY")
        else "parquet"
        if head.startswith(b"PAR1")
        else "jsonl"
    )
    assert sniffed == fmt
    ids, _ = _read_back(out, fmt)
    assert ids == _ids(4)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("csv", "unknown output format 'csv': choose jsonl, npy or parquet"),
        ("text", "for plain-text input pass --input-format text"),
    ],
)
def test_an_unknown_format_is_a_usage_error(
    value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    argv = ["embed", str(_docs(tmp_path, 3)), "-o", str(out), "--format", value, "--emulator"]

    assert main(argv) == 2

    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_missing_pyarrow_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = tmp_path / "out.parquet"

    assert main(["embed", str(_docs(tmp_path, 3)), "-o", str(out), "--emulator"]) == 2

    err = capsys.readouterr().err
    assert "pip install 'studio-embeddings[parquet]'" in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not out.with_name("out.parquet.parts").exists()


def test_a_missing_numpy_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)
    out = tmp_path / "out.jsonl"

    assert main(["embed", str(_docs(tmp_path, 3)), "-o", str(out), "--emulator"]) == 2

    assert "pip install 'studio-embeddings[numpy]'" in capsys.readouterr().err
    assert not out.exists()


# ----------------------------------------------------------------------------- resume


def _work_files(out: Path) -> dict[str, bool]:
    return {
        "output": out.exists(),
        "partial": out.with_name(out.name + ".partial").exists(),
        "parts": out.with_name(out.name + ".parts").exists(),
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_provider_error_stops_the_run_and_a_rerun_completes_it(
    fmt: str,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _needs(fmt)
    n = 50
    docs = _docs(tmp_path, n)
    options = [
        *_options(emulator, monkeypatch),
        "--batch-size", "10", "--write-batch", "10", "--max-concurrency", "1",
    ]  # fmt: skip
    out = tmp_path / f"vectors{SUFFIX[fmt]}"
    emulator.script("nebius", [200, 200, 401])  # the third request is refused, never retried

    assert main(["embed", str(docs), "-o", str(out), *options]) == 1

    err = capsys.readouterr().err
    assert "20 of 50 records are in" in err
    assert "rerun the same command to resume" in err
    if fmt != "jsonl":
        # Nothing at the output's own name until every record is in it.
        assert _work_files(out) == {
            "output": False,
            "partial": fmt == "npy",
            "parts": fmt == "parquet",
        }
    emulator.clear()

    assert main(["embed", str(docs), "-o", str(out), *options]) == 0

    assert _sent(emulator) == _texts(n)[20:]  # only what was missing
    assert "Resuming: 20 of 50" in capsys.readouterr().err
    ids, matrix = _read_back(out, fmt)
    assert ids == _ids(n)
    assert _same_bits(matrix, _list_path(emulator, "nebius", _texts(n)))
    assert _work_files(out) == {"output": True, "partial": False, "parts": False}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_finished_output_is_left_alone_and_a_longer_input_is_appended(
    fmt: str,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _needs(fmt)
    options = [*_options(emulator, monkeypatch), "--write-batch", "4"]
    out = tmp_path / f"vectors{SUFFIX[fmt]}"
    assert main(["embed", str(_docs(tmp_path, 10)), "-o", str(out), *options]) == 0
    before = out.read_bytes()
    emulator.clear()

    assert main(["embed", str(_docs(tmp_path, 10)), "-o", str(out), *options]) == 0

    assert out.read_bytes() == before
    assert emulator.requests == []
    assert "nothing to do" in capsys.readouterr().err

    # The input grows: the finished output is resumed, not rewritten.
    assert main(["embed", str(_docs(tmp_path, 17)), "-o", str(out), *options]) == 0

    assert _sent(emulator) == _texts(17)[10:]
    ids, matrix = _read_back(out, fmt)
    assert ids == _ids(17)
    assert _same_bits(matrix, _list_path(emulator, "nebius", _texts(17)))
    assert _work_files(out) == {"output": True, "partial": False, "parts": False}


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_overwrite_starts_over(
    fmt: str, emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _needs(fmt)
    options = _options(emulator, monkeypatch)
    out = tmp_path / f"vectors{SUFFIX[fmt]}"
    assert main(["embed", str(_docs(tmp_path, 5, "a.jsonl")), "-o", str(out), *options]) == 0
    other = tmp_path / "b.jsonl"
    other.write_text('{"id": "x", "text": "another text"}\n', encoding="utf-8")
    assert main(["embed", str(other), "-o", str(out), *options]) == 1  # not its output
    emulator.clear()

    assert main(["embed", str(other), "-o", str(out), "--overwrite", *options]) == 0

    ids, matrix = _read_back(out, fmt)
    assert ids == ["x"]
    assert _same_bits(matrix, _list_path(emulator, "nebius", ["another text"]))


def test_npy_resume_cuts_rows_without_ids_and_a_cut_off_id(
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A crash between a batch's rows and its ids, and one in the middle of the ids."""
    options = [*_options(emulator, monkeypatch), "--write-batch", "5", "--batch-size", "5"]
    docs = _docs(tmp_path, 30)
    out = tmp_path / "vectors.npy"
    emulator.script("nebius", [200, 200, 401])
    assert main(["embed", str(docs), "-o", str(out), "--max-concurrency", "1", *options]) == 1
    partial, ids = tmp_path / "vectors.npy.partial", tmp_path / "vectors.ids.jsonl"
    assert ids.read_text(encoding="utf-8").count("\n") == 10
    # The next batch's rows (two and a half of them) reached the disk, of its ids half of one.
    with partial.open("ab") as f:
        f.write(os.urandom(4 * 4096 * 2 + 100))
    with ids.open("a", encoding="utf-8") as f:
        f.write('"doc-1')
    emulator.clear()
    capsys.readouterr()

    assert main(["embed", str(docs), "-o", str(out), *options]) == 0

    err = capsys.readouterr().err
    assert "Resuming: 10 of 30" in err
    assert "Dropped" in err
    assert _sent(emulator) == _texts(30)[10:]
    read_ids, matrix = _read_back(out, "npy")
    assert read_ids == _ids(30)
    assert _same_bits(matrix, _list_path(emulator, "nebius", _texts(30)))


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_a_crash_before_the_finish_is_finished_without_sending(
    fmt: str, emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every record written, then a crash before the output got its name."""
    _needs(fmt)
    from studio_embeddings.cli import _outputs

    options = [*_options(emulator, monkeypatch), "--write-batch", "3"]
    docs = _docs(tmp_path, 8)
    out = tmp_path / f"vectors{SUFFIX[fmt]}"
    sink = {"npy": _outputs.NpySink, "parquet": _outputs.ParquetSink}[fmt]

    def crash(self: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(sink, "finish", crash)
        assert main(["embed", str(docs), "-o", str(out), *options]) == 130
    assert not out.exists()
    emulator.clear()

    assert main(["embed", str(docs), "-o", str(out), *options]) == 0

    assert emulator.requests == []
    ids, matrix = _read_back(out, fmt)
    assert ids == _ids(8)
    assert _same_bits(matrix, _list_path(emulator, "nebius", _texts(8)))


def test_parquet_resume_drops_a_part_left_half_written(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("pyarrow")
    options = [*_options(emulator, monkeypatch), "--write-batch", "4", "--batch-size", "4"]
    docs = _docs(tmp_path, 12)
    out = tmp_path / "vectors.parquet"
    emulator.script("nebius", [200, 401])
    assert main(["embed", str(docs), "-o", str(out), "--max-concurrency", "1", *options]) == 1
    parts = tmp_path / "vectors.parquet.parts"
    assert [p.name for p in parts.iterdir()] == ["000000000000.parquet"]
    # A crash while the next part was being written leaves only its temporary file.
    (parts / "000000000004.parquet.tmp").write_bytes(b"PAR1 half")
    emulator.clear()

    assert main(["embed", str(docs), "-o", str(out), *options]) == 0

    assert _sent(emulator) == _texts(12)[4:]
    ids, matrix = _read_back(out, "parquet")
    assert ids == _ids(12)
    assert _same_bits(matrix, _list_path(emulator, "nebius", _texts(12)))
    assert not parts.exists()


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_an_output_of_another_input_is_refused_and_kept(
    fmt: str,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _needs(fmt)
    options = _options(emulator, monkeypatch)
    out = tmp_path / f"vectors{SUFFIX[fmt]}"
    assert main(["embed", str(_docs(tmp_path, 3, "a.jsonl")), "-o", str(out), *options]) == 0
    before = out.read_bytes()
    other = tmp_path / "b.jsonl"
    other.write_text("".join(f'{{"id": "o{i}", "text": "t {i}"}}\n' for i in range(5)), "utf-8")
    emulator.clear()

    assert main(["embed", str(other), "-o", str(out), *options]) == 1

    assert "belongs to another input" in capsys.readouterr().err
    assert emulator.requests == []
    assert out.read_bytes() == before


def test_parquet_ids_of_line_numbers_are_strings_and_resume(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("pyarrow")
    src = tmp_path / "notes.txt"
    src.write_text("".join(t + "\n" for t in _texts(6)), encoding="utf-8")
    out = tmp_path / "vectors.parquet"
    options = [*_options(emulator, monkeypatch), "--write-batch", "2", "--batch-size", "2"]
    emulator.script("nebius", [200, 401])
    assert main(["embed", str(src), "-o", str(out), "--max-concurrency", "1", *options]) == 1
    emulator.clear()

    assert main(["embed", str(src), "-o", str(out), *options]) == 0

    assert _read_back(out, "parquet")[0] == ["1", "2", "3", "4", "5", "6"]
    assert _sent(emulator) == _texts(6)[2:]


# ------------------------------------------------------------------- a real crash


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEBIUS_", "YC_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_a_killed_run_resumes_where_it_stopped(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL the console command mid-run, then rerun the same command."""
    _needs(fmt)
    n = 40
    docs = _docs(tmp_path, n)
    out = tmp_path / f"vectors{SUFFIX[fmt]}"
    argv = ["embed", str(docs), "--output", str(out), "--provider", "yandex", "--emulator",
            "--write-batch", "4"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio_embeddings.cli", *argv],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def written() -> int:
        if fmt == "npy":
            ids = tmp_path / "vectors.ids.jsonl"
            return ids.read_bytes().count(b"\n") if ids.exists() else 0
        parts = tmp_path / "vectors.parquet.parts"
        return 4 * len(list(parts.glob("*.parquet"))) if parts.exists() else 0

    try:
        deadline = time.monotonic() + 60
        # Yandex runs at 10 texts/s: kill it once some batches are on disk, long before the end.
        while written() < 8:
            assert proc.poll() is None, "the command ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.wait(timeout=30)
    kept = written()
    assert 8 <= kept < n
    assert not out.exists()

    assert main(argv) == 0

    assert f"Resuming: {kept} of {n}" in capsys.readouterr().err
    ids, matrix = _read_back(out, fmt)
    assert ids == _ids(n)
    from studio_embeddings.emulator import embed_text

    wire = "emb://b1gemulatorfolder/text-search-doc/latest"
    want = np.array([embed_text("yandex", wire, t) for t in _texts(n)], dtype=np.float32)
    assert _same_bits(matrix, want)
