"""Every notebook in ``notebooks/`` runs top to bottom on the emulator, and is stored clean.

``make test-notebooks`` runs this file in ``.venv-notebooks``, built from the ``notebooks`` extra
alone and marked by ``STUDIO_EMBEDDINGS_NOTEBOOK_ENV=1``: there a missing module fails the run
(in the kernel, or here) instead of skipping it. Elsewhere the file skips without the harness.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("STUDIO_EMBEDDINGS_NOTEBOOK_ENV"):
    import nbclient
    import nbformat
else:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))

#: A stored notebook may keep a few small outputs, never an image or a long log.
MAX_STORED_OUTPUT_CHARS = 2000
#: Strings that look like credentials: Yandex API keys / IAM tokens, OpenAI-style and JWT keys,
#: or an assignment of a literal to a key variable.
KEY_PATTERNS = [
    re.compile(r"AQVN[A-Za-z0-9_\-]{20,}"),
    re.compile(r"t1\.[A-Za-z0-9_\-.]{20,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"),
    re.compile(r"(NEBIUS_API_KEY|YC_API_KEY|YC_IAM_TOKEN)\s*=\s*['\"][^'\"]+['\"]"),
    re.compile(r"os\.environ\[['\"](NEBIUS_API_KEY|YC_API_KEY|YC_IAM_TOKEN)['\"]\]\s*="),
]


def test_there_are_notebooks_for_both_frameworks() -> None:
    assert {p.name for p in NOTEBOOKS} >= {
        "langchain_quickstart.ipynb",
        "llama_index_quickstart.ipynb",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_first_cell_says_how_to_install(path: Path) -> None:
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown"
    assert "pip install 'studio-embeddings[notebooks]'" in first.source


def test_the_python3_kernel_is_this_interpreter() -> None:
    """The kernel must import the package under test from this very environment."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    command = km.format_kernel_cmd()
    # jupyter_client swaps a bare "python" for sys.executable; an absolute path must match.
    assert command[0] == sys.executable or os.path.realpath(command[0]) == os.path.realpath(
        sys.executable
    ), command


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_notebook_is_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        stored = json.dumps(cell.get("outputs", []))
        assert len(stored) <= MAX_STORED_OUTPUT_CHARS, f"large stored output in {path.name}"
        assert not any(o.get("output_type") == "error" for o in cell.get("outputs", []))
    text = path.read_text(encoding="utf-8")
    for pattern in KEY_PATTERNS:
        assert not pattern.search(text), f"{path.name} holds a key-like string ({pattern.pattern})"


def _output_text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_the_emulator(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The autouse fixture has cleared NEBIUS_*/YC_*/OPENAI_*; the kernel inherits os.environ.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    src = str(ROOT / "src")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    )
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=120,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )

    started = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    elapsed = time.perf_counter() - started

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    first = _output_text(code_cells[0])
    assert "offline emulator" in first, first
    for cell in code_cells:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, errors
    outputs = [_output_text(c) for c in code_cells]
    joined = "\n".join(outputs)
    # The retrieval cell found the Eiffel Tower for the Paris question on both providers.
    assert joined.count("-> The Eiffel Tower") == 2, joined
    # The plot cell drew a figure.
    assert any("image/png" in o.get("data", {}) for c in code_cells for o in c.get("outputs", []))
    assert "Emulator stopped." in outputs[-1]
    assert elapsed < 60, f"{path.name} took {elapsed:.1f} s"
