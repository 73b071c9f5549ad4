"""Ray Data in local mode: studio_embeddings.ray.Embedder in an actor pool, and the example.

One Ray runtime for the module (2 CPUs, no dashboard); the emulator runs in a process of its
own with Yandex's 10 requests/s per folder, so the actors' requests and the 429s are counted
where a provider would count them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ray", reason="Ray is missing: pip install 'studio-embeddings[ray]'")
pytest.importorskip("pandas", reason="pandas is missing: pip install 'studio-embeddings[ray]'")

import ray
from _emu_process import EmulatorProcess, max_in_window

from studio_embeddings.emulator import embed_text
from studio_embeddings.langchain import YandexEmbeddings
from studio_embeddings.llama_index import NebiusEmbedding
from studio_embeddings.ray import Embedder

ROOT = Path(__file__).resolve().parents[2]
KEY = "yc-ray-key"
FOLDER = "b1grayfolder"
DOC_MODEL = f"emb://{FOLDER}/text-search-doc/latest"


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(latency_ms=50.0, yandex_rps=10.0) as process:
        yield process


def _texts(n: int) -> list[str]:
    return [f"row {i}: a guide to local birds near the harbour" for i in range(n)]


def test_two_actors_sharing_the_store(
    ray_local: None, emu: EmulatorProcess, redis_store: Any
) -> None:
    emu.clear()
    n = 60
    emb = YandexEmbeddings(
        api_key=KEY, folder_id=FOLDER, base_url=emu.base_url("yandex"), quota_store=redis_store.url
    )
    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(_texts(n))])
    out = ds.map_batches(
        Embedder,
        fn_constructor_kwargs={"embeddings": emb},
        compute=ray.data.ActorPoolStrategy(size=2),
        batch_size=10,
        num_cpus=0.5,
    )
    rows = out.take_all()

    assert sorted(r["id"] for r in rows) == list(range(n))  # none lost, none twice
    direct = emb.embed_array(_texts(3))  # a direct call, for a sample
    for row in rows:
        vector = np.asarray(row["embedding"])
        assert vector.dtype == np.float32
        assert vector.shape == (256,)
        assert row["text"] == _texts(n)[row["id"]]
        expected = np.array(embed_text("yandex", DOC_MODEL, row["text"]), dtype=np.float32)
        assert np.array_equal(vector, expected)
        if row["id"] < 3:
            assert np.array_equal(vector, direct[row["id"]])

    records = [r for r in emu.records() if r.text in set(_texts(n))]
    refused = sum(1 for r in records if r.status == 429)
    assert refused <= 0.05 * len(records), f"{refused}/{len(records)} refused"
    assert Counter(r.text for r in records if r.status == 200) == Counter(_texts(n) + _texts(3))
    assert max_in_window([r.time for r in records if r.status == 200], 1.0) <= 10


def test_pandas_batches_and_a_llama_index_class(ray_local: None, emu: EmulatorProcess) -> None:
    emu.clear()
    emb = NebiusEmbedding(api_key="neb-key", base_url=emu.base_url("nebius"), embed_batch_size=4)
    texts = _texts(12)
    ds = ray.data.from_items([{"body": t, "n": i} for i, t in enumerate(texts)])
    rows = ds.map_batches(
        Embedder,
        fn_constructor_kwargs={"embeddings": emb, "text_column": "body", "output_column": "vec"},
        compute=ray.data.ActorPoolStrategy(size=2),
        batch_size=5,
        batch_format="pandas",
        num_cpus=0.5,
    ).take_all()
    assert sorted(r["n"] for r in rows) == list(range(12))
    for row in rows:
        expected = embed_text("nebius", "Qwen/Qwen3-Embedding-8B", row["body"])
        assert np.array_equal(np.asarray(row["vec"]), np.array(expected, dtype=np.float32))


def test_the_example_runs_end_to_end(ray_local: None, redis_store: Any, tmp_path: Path) -> None:
    source = tmp_path / "docs.jsonl"
    texts = _texts(16)
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "NEBIUS_", "OPENAI_"))}
    env["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "ray_ingest.py"),
            str(source),
            str(out),
            "--actors",
            "2",
            "--batch-size",
            "4",
            "--num-cpus",
            "2",
            "--quota-store",
            redis_store.url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "embedded 16 rows" in done.stdout

    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pylist()
    assert sorted(r["id"] for r in table) == list(range(16))
    model = "emb://b1gexamplefolder/text-search-doc/latest"
    for row in table:
        expected = np.array(embed_text("yandex", model, row["text"]), dtype=np.float32)
        assert np.array_equal(np.asarray(row["embedding"], dtype=np.float32), expected)
    with redis_store.client() as client:  # the actors paced through the store
        assert any(
            k.startswith("studio-embeddings:{yandex:b1gexamplefolder}:")
            for k in client.scan_iter("*")
        )
