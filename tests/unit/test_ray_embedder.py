"""studio_embeddings.ray.Embedder without Ray: batches as Ray hands them, and clear errors."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from studio_embeddings.emulator import embed_text
from studio_embeddings.langchain import YandexEmbeddings
from studio_embeddings.ray import Embedder

MODEL = "emb://b1g/text-search-doc/latest"


@pytest.fixture
def emb(emulator: Any) -> YandexEmbeddings:
    return YandexEmbeddings(api_key="k", folder_id="b1g", base_url=emulator.base_url("yandex"))


def test_dict_batch_gets_a_float32_matrix(emb: YandexEmbeddings) -> None:
    batch = {"id": np.arange(3), "text": np.array(["a", "b", "c"], dtype=object)}
    out = pickle.loads(pickle.dumps(Embedder(emb, output_column="v")))(batch)
    assert out["v"].shape == (3, 256)
    assert out["v"].dtype == np.float32
    assert out["id"] is batch["id"]
    assert [list(r) for r in out["v"]] == [embed_text("yandex", MODEL, t) for t in "abc"]


def test_pandas_batch_gets_a_column_of_vectors(emb: YandexEmbeddings) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"body": ["x", "y"]}, index=[10, 11])
    out = Embedder(emb, text_column="body")(frame)
    assert list(out.index) == [10, 11]
    assert "embedding" not in frame  # the input batch is left as it was
    assert list(out.loc[11, "embedding"]) == embed_text("yandex", MODEL, "y")


def test_a_missing_column_names_the_columns_present(emb: YandexEmbeddings) -> None:
    with pytest.raises(
        ValueError, match=r"no text column 'text': its columns are \['id', 'body'\]"
    ):
        Embedder(emb)({"id": np.arange(1), "body": np.array(["x"])})


def test_a_non_string_value_names_its_row(emb: YandexEmbeddings, emulator: Any) -> None:
    with pytest.raises(TypeError, match=r"holds NoneType None at row 1 of this batch"):
        Embedder(emb)({"text": np.array(["ok", None], dtype=object)})
    assert emulator.requests == []  # nothing was sent


def test_bad_arguments(emb: YandexEmbeddings) -> None:
    with pytest.raises(TypeError, match="has no embed_array"):
        Embedder(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind must be"):
        Embedder(emb, kind="passage")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="batch_format"):
        Embedder(emb)([["a"]])
