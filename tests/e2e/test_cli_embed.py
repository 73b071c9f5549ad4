"""``studio-embeddings embed`` end to end: files in, JSONL out, against the emulator on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from studio_embeddings.cli import main
from studio_embeddings.emulator import embed_text
from studio_embeddings.providers import NEBIUS, YANDEX, get_provider

SRC = Path(__file__).resolve().parents[2] / "src"
TOPICS = ["cats", "the Moon", "pasta", "football", "Paris", "stock markets", "Python", "rain"]
FOLDER = "b1gtestfolder"


def _texts(n: int) -> list[str]:
    return [
        f"Document {i}: a short note about {TOPICS[i % len(TOPICS)]}, number {i}." for i in range(n)
    ]


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _sent_texts(emulator: Any) -> list[str]:
    """Every input text the emulator received, in arrival order."""
    texts: list[str] = []
    for r in emulator.requests:
        if r.path.endswith("/embeddings") and r.body is not None:
            given = r.body["input"]
            texts.extend([given] if isinstance(given, str) else given)
    return texts


def _on_emulator(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, provider: str = "nebius"
) -> list[str]:
    """CLI options pointing at the shared test emulator, with credentials in the environment."""
    p = get_provider(provider)
    monkeypatch.setenv(p.api_key_envs[0], "test-key")
    if p.project_required:
        assert p.project_env is not None
        monkeypatch.setenv(p.project_env, FOLDER)
    return ["--provider", provider, "--base-url", emulator.base_url(provider), "--no-progress"]


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(_texts(50))]
    return _write_jsonl(tmp_path / "docs.jsonl", rows)


# ------------------------------------------------------------------------ round trips


@pytest.mark.parametrize(
    ("provider", "wire_model"),
    [
        ("nebius", NEBIUS.default_doc_model),
        # --emulator gives Yandex a stand-in folder; the folder does not change the vector.
        ("yandex", "emb://b1gemulatorfolder/text-search-doc/latest"),
    ],
)
def test_jsonl_round_trip_in_order_on_the_emulator(
    provider: str, wire_model: str, docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "vectors.jsonl"
    # Yandex: 50 one-text requests at the default 10 requests/s, about 5 s.
    assert (
        main(["embed", str(docs), "--output", str(out), "--provider", provider, "--emulator"]) == 0
    )

    rows = _read_jsonl(out)
    assert [r["id"] for r in rows] == [f"doc-{i}" for i in range(50)]
    for row, text in zip(rows, _texts(50), strict=True):
        assert row["embedding"] == embed_text(provider, wire_model, text)
    err = capsys.readouterr().err
    assert "emulator" in err
    assert "Done: 50 embedded" in err


def test_plain_text_input_ids_are_line_numbers(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    texts = _texts(12)
    src = tmp_path / "notes.txt"
    src.write_text("\r\n".join(texts) + "\r\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"

    assert main(["embed", str(src), "-o", str(out), *_on_emulator(emulator, monkeypatch)]) == 0

    rows = _read_jsonl(out)
    assert [r["id"] for r in rows] == list(range(1, 13))
    assert _sent_texts(emulator) == texts  # line endings stripped, nothing else touched
    for row, text in zip(rows, texts, strict=True):
        assert row["embedding"] == embed_text("nebius", NEBIUS.default_doc_model, text)


def test_format_option_overrides_the_file_name(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    src = _write_jsonl(
        tmp_path / "docs.data", [{"body": "alpha beta", "key": 7}, {"body": "gamma"}]
    )
    out = tmp_path / "out.jsonl"
    argv = [
        "embed",
        str(src),
        "-o",
        str(out),
        "--input-format",
        "jsonl",
        "--text-field",
        "body",
        "--id-field",
        "key",
        *_on_emulator(emulator, monkeypatch),
    ]

    assert main(argv) == 0

    # The second object has no "key": its id is its line number.
    assert [r["id"] for r in _read_jsonl(out)] == [7, 2]
    assert _sent_texts(emulator) == ["alpha beta", "gamma"]


def test_blank_jsonl_lines_are_ignored_and_ids_default_to_line_numbers(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text('{"text": "one"}\n\n   \n{"text": "two"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"

    assert main(["embed", str(src), "-o", str(out), *_on_emulator(emulator, monkeypatch)]) == 0

    assert [r["id"] for r in _read_jsonl(out)] == [1, 4]


def test_yandex_query_kind_uses_the_query_model(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    src = tmp_path / "questions.txt"
    src.write_text("Which tower stands in Paris?\nWhen did Apollo 11 land?\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    argv = [
        "embed",
        str(src),
        "-o",
        str(out),
        "--kind",
        "query",
        *_on_emulator(emulator, monkeypatch, "yandex"),
    ]

    assert main(argv) == 0

    wire = YANDEX.wire_model("text-search-query", project=FOLDER)
    assert {r.body["model"] for r in emulator.requests} == {wire}
    assert _read_jsonl(out)[0]["embedding"] == embed_text(
        "yandex", wire, "Which tower stands in Paris?"
    )


@pytest.mark.parametrize("write_flag", ["--write-batch", "--chunk-size"])
def test_batching_options_reach_the_wire(
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    docs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    write_flag: str,
) -> None:
    # --write-batch (texts per write); --chunk-size is its old, hidden name and still works.
    out = tmp_path / "out.jsonl"
    argv = [
        "embed",
        str(docs),
        "-o",
        str(out),
        "--batch-size",
        "8",
        "--max-concurrency",
        "2",
        write_flag,
        "20",
        "--dimensions",
        "64",
        "--model",
        "Qwen/Qwen3-Embedding-8B",
        *_on_emulator(emulator, monkeypatch),
    ]

    assert main(argv) == 0

    sizes = [len(r.body["input"]) for r in emulator.requests]
    # Chunks of 20, 20, 10, each split into requests of at most 8.
    assert sorted(sizes) == sorted([8, 8, 4] * 2 + [8, 2])
    assert all(r.body["dimensions"] == 64 for r in emulator.requests)
    rows = _read_jsonl(out)
    assert [len(r["embedding"]) for r in rows] == [64] * 50
    assert rows[3]["embedding"] == embed_text("nebius", NEBIUS.default_doc_model, _texts(50)[3], 64)
    deprecated = "--chunk-size is deprecated" in capsys.readouterr().err
    assert deprecated == (write_flag == "--chunk-size")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--write-batch", "0"], "--write-batch must be at least 1"),
        (["--chunk-size", "0"], "--write-batch must be at least 1"),
        (["--chunk-size", "5", "--write-batch", "5"], "pass only --write-batch"),
    ],
)
def test_write_batch_is_checked(
    docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["embed", str(docs), "-o", str(tmp_path / "o.jsonl"), "--emulator", *argv]) == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------- resume


def test_resume_after_an_interrupted_run(
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    docs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = _on_emulator(emulator, monkeypatch)
    reference = tmp_path / "reference.jsonl"
    assert main(["embed", str(docs), "-o", str(reference), *options]) == 0
    lines = reference.read_text(encoding="utf-8").splitlines(keepends=True)

    # A crash after 20 records, in the middle of writing the 21st.
    out = tmp_path / "out.jsonl"
    out.write_text("".join(lines[:20]) + lines[20][: len(lines[20]) // 2], encoding="utf-8")
    emulator.clear()
    capsys.readouterr()

    assert main(["embed", str(docs), "-o", str(out), *options]) == 0

    assert out.read_text(encoding="utf-8") == reference.read_text(encoding="utf-8")
    assert len(_read_jsonl(out)) == 50
    assert _sent_texts(emulator) == _texts(50)[20:]  # only what was missing
    err = capsys.readouterr().err
    assert "Resuming: 20 of 50" in err
    assert "incomplete tail" in err
    assert "Done: 30 embedded" in err


def test_resume_of_a_complete_output_sends_nothing(
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    docs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = _on_emulator(emulator, monkeypatch)
    out = tmp_path / "out.jsonl"
    assert main(["embed", str(docs), "-o", str(out), *options]) == 0
    before = out.read_bytes()
    emulator.clear()

    assert main(["embed", str(docs), "-o", str(out), *options]) == 0

    assert out.read_bytes() == before
    assert emulator.requests == []
    assert "nothing to do" in capsys.readouterr().err


def test_a_whole_last_line_without_newline_is_kept_and_repaired(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, docs: Path, tmp_path: Path
) -> None:
    options = _on_emulator(emulator, monkeypatch)
    reference = tmp_path / "reference.jsonl"
    assert main(["embed", str(docs), "-o", str(reference), *options]) == 0
    lines = reference.read_text(encoding="utf-8").splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    out.write_text("".join(lines[:10]).rstrip("\n"), encoding="utf-8")
    emulator.clear()

    assert main(["embed", str(docs), "-o", str(out), *options]) == 0

    assert out.read_text(encoding="utf-8") == reference.read_text(encoding="utf-8")
    assert len(_sent_texts(emulator)) == 40


def test_a_provider_error_keeps_finished_chunks_and_a_rerun_finishes(
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    docs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = [
        *_on_emulator(emulator, monkeypatch),
        "--batch-size",
        "10",
        "--chunk-size",
        "10",
        "--max-concurrency",
        "1",
    ]
    out = tmp_path / "out.jsonl"
    emulator.script("nebius", [200, 200, 401])  # the third request is refused, never retried

    assert main(["embed", str(docs), "-o", str(out), *options]) == 1

    assert [r["id"] for r in _read_jsonl(out)] == [f"doc-{i}" for i in range(20)]
    err = capsys.readouterr().err
    assert "20 of 50 records are in" in err
    assert "rerun the same command to resume" in err
    assert "Traceback" not in err
    emulator.clear()

    assert main(["embed", str(docs), "-o", str(out), *options]) == 0

    assert [r["id"] for r in _read_jsonl(out)] == [f"doc-{i}" for i in range(50)]
    assert _sent_texts(emulator) == _texts(50)[20:]


@pytest.mark.parametrize("held", [1, 50, 60], ids=["partial", "complete", "longer"])
def test_resume_refuses_an_output_of_another_input(
    held: int,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    docs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [{"id": f"other-{i}", "embedding": [0.5, 0.5]} for i in range(held)]
    out = _write_jsonl(tmp_path / "out.jsonl", rows)
    before = out.read_bytes()

    assert main(["embed", str(docs), "-o", str(out), *_on_emulator(emulator, monkeypatch)]) == 1

    err = capsys.readouterr().err
    assert "belongs to another input" in err
    assert "line 1 has id 'other-0'" in err
    assert emulator.requests == []
    assert out.read_bytes() == before


def test_resume_refuses_an_output_with_a_bad_line_in_the_middle(
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    docs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(
        '{"id": "doc-0", "embedding": [1.0]}\nnot json\n{"id": "doc-2", "embedding": [1.0]}\n',
        encoding="utf-8",
    )

    assert main(["embed", str(docs), "-o", str(out), *_on_emulator(emulator, monkeypatch)]) == 1

    assert "line 2 is not an embedding record" in capsys.readouterr().err
    assert emulator.requests == []


def test_overwrite_starts_over(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, docs: Path, tmp_path: Path
) -> None:
    out = _write_jsonl(tmp_path / "out.jsonl", [{"id": "other", "embedding": [0.5, 0.5]}])

    argv = ["embed", str(docs), "-o", str(out), "--overwrite", *_on_emulator(emulator, monkeypatch)]
    assert main(argv) == 0

    assert [r["id"] for r in _read_jsonl(out)] == [f"doc-{i}" for i in range(50)]
    assert len(_sent_texts(emulator)) == 50


# ------------------------------------------------------------------------- validation

BAD_ROWS = [
    '{"id": "a", "text": "fine"}',
    '{"id": "b", "text": "cut off',  # 2: malformed JSON
    '{"id": "c", "body": "no text field"}',  # 3
    '{"id": "d", "text": 42}',  # 4: not a string
    '{"id": "e", "text": "   "}',  # 5: whitespace only
    '["an", "array"]',  # 6: not an object
    '{"id": null, "text": "null id"}',  # 7: id neither string nor integer
    '{"id": "h", "text": "also fine"}',
]


def _bad_input(tmp_path: Path) -> Path:
    src = tmp_path / "bad.jsonl"
    src.write_bytes(
        ("\n".join(BAD_ROWS) + "\n").encode() + b'{"text": "caf\xe9"}\n'
    )  # 9: not UTF-8
    return src


def test_invalid_lines_are_reported_and_nothing_is_sent(
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.jsonl"

    assert (
        main(
            [
                "embed",
                str(_bad_input(tmp_path)),
                "-o",
                str(out),
                *_on_emulator(emulator, monkeypatch),
            ]
        )
        == 1
    )

    err = capsys.readouterr().err
    assert "7 invalid line(s)" in err
    for number, fragment in [
        (2, "malformed JSON"),
        (3, "no 'text' field"),
        (4, "not a string"),
        (5, "empty or whitespace"),
        (6, "not an object"),
        (7, "not a string or integer"),
        (9, "UTF-8"),
    ]:
        assert f"line {number}: " in err
        assert fragment in err
    assert "line 1:" not in err
    assert "line 8:" not in err
    assert "Nothing was sent" in err
    assert emulator.requests == []
    assert not out.exists()


def test_the_report_is_capped(
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "blank.txt"
    src.write_text("text\n" + "\n" * 30, encoding="utf-8")

    assert (
        main(
            [
                "embed",
                str(src),
                "-o",
                str(tmp_path / "o.jsonl"),
                *_on_emulator(emulator, monkeypatch),
            ]
        )
        == 1
    )

    err = capsys.readouterr().err
    assert "30 invalid line(s)" in err
    assert "line 21: " in err
    assert "line 22: " not in err
    assert "... and 10 more" in err


def test_skip_invalid_embeds_the_rest_and_counts_what_it_skipped(
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.jsonl"

    assert (
        main(
            [
                "embed",
                str(_bad_input(tmp_path)),
                "-o",
                str(out),
                "--skip-invalid",
                *_on_emulator(emulator, monkeypatch),
            ]
        )
        == 0
    )

    assert [r["id"] for r in _read_jsonl(out)] == ["a", "h"]
    assert _sent_texts(emulator) == ["fine", "also fine"]
    err = capsys.readouterr().err
    assert "Skipping 7 invalid line(s)" in err
    assert "line 2: " in err


def test_skip_invalid_resumes_consistently(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    options = ["--skip-invalid", "--chunk-size", "1", *_on_emulator(emulator, monkeypatch)]
    src = _bad_input(tmp_path)
    out = tmp_path / "out.jsonl"
    assert main(["embed", str(src), "-o", str(out), *options]) == 0
    out.write_text(out.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    emulator.clear()

    assert main(["embed", str(src), "-o", str(out), *options]) == 0

    assert [r["id"] for r in _read_jsonl(out)] == ["a", "h"]
    assert _sent_texts(emulator) == ["also fine"]


# ---------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("provider", "names"),
    [("nebius", ["NEBIUS_API_KEY"]), ("yandex", ["YC_API_KEY", "YC_IAM_TOKEN"])],
)
def test_a_missing_key_is_a_clear_error(
    provider: str,
    names: list[str],
    docs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.jsonl"

    assert main(["embed", str(docs), "-o", str(out), "--provider", provider]) == 2

    err = capsys.readouterr().err
    for name in names:
        assert name in err
    assert "--emulator" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_a_missing_input_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["embed", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.jsonl"), "--emulator"])
        == 2
    )
    assert "no such file" in capsys.readouterr().err


def test_output_must_not_be_the_input(docs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", str(docs), "-o", str(docs), "--emulator"]) == 2
    assert "must not be the input" in capsys.readouterr().err


def test_help_documents_every_command_and_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as top:
        main(["--help"])
    assert top.value.code == 0
    overview = capsys.readouterr().out
    for command in ("demo", "serve", "embed"):
        assert command in overview

    with pytest.raises(SystemExit) as sub:
        main(["embed", "--help"])
    assert sub.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--output",
        "--provider",
        "--text-field",
        "--id-field",
        "--emulator",
        "--skip-invalid",
        "--model",
        "--batch-size",
        "--max-concurrency",
        "--overwrite",
        "--format",
        "--input-format",
        "npy",
        "parquet",
        ".ids.jsonl",
        "--write-batch",
        "NEBIUS_API_KEY",
        "YC_FOLDER_ID",
        "resume",
    ):
        assert option in text
    # The old name of --write-batch works but is no longer offered: in LangChain a "chunk size"
    # is texts per request.
    assert "--chunk-size" not in text


# ------------------------------------------------------------------ the real console


def test_the_console_entry_point_runs_in_a_subprocess(docs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEBIUS_", "YC_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "studio_embeddings.cli",
            "embed",
            str(docs),
            "--output",
            str(out),
            "--emulator",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert len(_read_jsonl(out)) == 50
    assert "Embedding" in done.stderr  # the progress bar and the summary go to stderr
    assert done.stdout == ""

    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "studio_embeddings.cli",
            "embed",
            str(docs),
            "--output",
            str(tmp_path / "other.jsonl"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2
    assert "NEBIUS_API_KEY" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_killed_run_resumes_where_it_stopped(
    docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real crash: SIGKILL the console command mid-run, then rerun the same command."""
    out = tmp_path / "out.jsonl"
    argv = ["embed", str(docs), "--output", str(out), "--provider", "yandex", "--emulator",
            "--chunk-size", "4"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEBIUS_", "YC_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio_embeddings.cli", *argv],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        # Yandex runs at 10 texts/s: kill it once some chunks are on disk, long before the end.
        while not (out.exists() and out.read_bytes().count(b"\n") >= 8):
            assert proc.poll() is None, "the command ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.wait(timeout=30)
    kept = out.read_bytes().count(b"\n")
    assert 8 <= kept < 50

    assert main(argv) == 0

    rows = _read_jsonl(out)
    assert [r["id"] for r in rows] == [f"doc-{i}" for i in range(50)]
    wire = "emb://b1gemulatorfolder/text-search-doc/latest"
    for row, text in zip(rows, _texts(50), strict=True):
        assert row["embedding"] == embed_text("yandex", wire, text)
    assert f"Resuming: {kept} of 50" in capsys.readouterr().err


# ----------------------------------------------------------- hostile input and Ctrl-C


def test_a_line_utf8_cannot_carry_is_invalid_with_its_line_number(
    tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "surrogate.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "bad \\ud800 text"}\n{"text": "also fine"}\n')
    out = tmp_path / "out.jsonl"
    opts = _on_emulator(emulator, monkeypatch)
    assert main(["embed", str(path), "--output", str(out), *opts]) == 1
    assert "line 2" in capsys.readouterr().err
    assert emulator.requests == []
    assert main(["embed", str(path), "--output", str(out), *opts, "--skip-invalid"]) == 0
    assert [r["id"] for r in _read_jsonl(out)] == [1, 3]


def test_an_output_that_is_a_directory_or_unwritable_is_a_one_line_error(
    tmp_path: Path, docs: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    opts = _on_emulator(emulator, monkeypatch)
    assert main(["embed", str(docs), "--output", str(tmp_path), *opts]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err
    assert "Traceback" not in err
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    assert main(["embed", str(docs), "--output", str(blocked / "out.jsonl"), *opts]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err
    assert len(err.strip().splitlines()) == 1
    assert emulator.requests == []


@pytest.mark.parametrize("after", [0.3, 0.8, 1.6])
def test_ctrl_c_at_any_moment_exits_130_without_a_traceback(
    tmp_path: Path, docs: Path, after: float
) -> None:
    import signal

    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEBIUS_", "YC_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = tmp_path / "out.npy"
    cmd = [sys.executable, "-m", "studio_embeddings.cli", "embed", str(docs), "--output",
           str(out), "--emulator", "--write-batch", "5", "--batch-size", "5", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    text = err.decode()
    assert "Traceback" not in text, text
    assert proc.returncode in (130, 0)  # 0: it finished before the signal came
    rerun = subprocess.run(cmd, env=env, capture_output=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr.decode()


def test_the_old_meaning_of_format_jsonl_is_asked_about_not_guessed(
    tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = _write_jsonl(tmp_path / "data.txt", [{"text": "an object per line"}])
    out = tmp_path / "out.jsonl"
    opts = _on_emulator(emulator, monkeypatch)
    assert main(["embed", str(data), "--output", str(out), "--format", "jsonl", *opts]) == 2
    assert "--input-format jsonl" in capsys.readouterr().err
    assert emulator.requests == []
    args = ["embed", str(data), "--output", str(out), "--format", "jsonl", "--input-format", "jsonl"]
    assert main([*args, *opts]) == 0
    assert [r["id"] for r in _read_jsonl(out)] == [1]
