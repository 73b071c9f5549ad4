"""Ray Data ingestion: :class:`Embedder`, a callable class for ``Dataset.map_batches``.

Each actor of the pool gets its own copy of the embeddings object (it pickles; the client and
its connections are rebuilt in the actor) and embeds every batch through the array path
(``embed_array``: one float32 matrix, no Python floats). Inside a batch, the client fans out
as usual (``max_concurrency`` requests in flight per actor); across actors, one quota is
respected only when it is shared: set ``quota_store`` (``redis://...``) on the embeddings, so
that N actors on one Yandex folder send 10 requests/s together, not 10 each::

    import ray
    from studio_embeddings.langchain import YandexEmbeddings
    from studio_embeddings.ray import Embedder

    emb = YandexEmbeddings(folder_id="b1g...", quota_store="redis://redis-host:6379/0")
    ds = ray.data.read_json("docs.jsonl").map_batches(
        Embedder,
        fn_constructor_kwargs={"embeddings": emb, "text_column": "text"},
        compute=ray.data.ActorPoolStrategy(size=4),
        batch_size=64,
    )
    ds.write_parquet("out/")

Importing this module needs neither Ray nor pandas: :class:`Embedder` only uses numpy (the
``numpy`` extra) when it is called, and pandas only when Ray hands it a DataFrame. The ``ray``
extra (``pip install 'studio-embeddings[ray]'``) installs ``ray[data]`` and numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from studio_embeddings._client import Kind

if TYPE_CHECKING:
    import numpy

__all__ = ["Embedder"]


class _ArrayEmbeddings(Protocol):
    def embed_array(self, texts: list[str], *, kind: Kind = "document") -> numpy.ndarray: ...


class Embedder:
    """Embeds a text column of each Ray Data batch into a float32 matrix column.

    Args:
        embeddings: any of ``studio_embeddings.langchain.NebiusEmbeddings`` /
            ``YandexEmbeddings``, ``studio_embeddings.llama_index.NebiusEmbedding`` /
            ``YandexEmbedding`` (or the core ``EmbeddingsClient``): anything with
            ``embed_array(texts, kind=...)``. It is pickled into each actor.
        text_column: the column holding the texts (each a non-empty ``str``).
        output_column: the column the vectors are written to (replaced if it exists).
        kind: ``"document"`` (the document model) or ``"query"`` (the query model or
            instruction).

    ``Embedder(...)(batch)`` takes a batch as Ray passes it, a dict of numpy arrays
    (``batch_format="numpy"``, the default) or a pandas DataFrame (``batch_format="pandas"``),
    and returns it with ``output_column`` added: for a dict, a 2-D float32 array of shape
    ``(rows, dims)``; for a DataFrame, a column of 1-D float32 arrays (rows of one matrix).
    The other columns are passed through untouched.

    Raises (when called):
        ValueError: the batch has no ``text_column`` (the message names the columns it has),
            or a text is empty.
        TypeError: a value of the text column is not a string (the message names its row in
            the batch), or the batch is neither a dict nor a DataFrame.

    Example:
        >>> from studio_embeddings.emulator import Emulator, embed_text
        >>> from studio_embeddings.langchain import YandexEmbeddings
        >>> import numpy as np
        >>> with Emulator() as emu:
        ...     emb = YandexEmbeddings(api_key="k", folder_id="b1g", base_url=emu.base_url("yandex"))
        ...     out = Embedder(emb)({"id": np.array([1, 2]), "text": np.array(["a cat", "a dog"])})
        >>> out["embedding"].shape, out["embedding"].dtype
        ((2, 256), dtype('float32'))
        >>> list(out["embedding"][1]) == embed_text("yandex", "emb://b1g/text-search-doc/latest", "a dog")
        True
    """

    def __init__(
        self,
        embeddings: _ArrayEmbeddings,
        *,
        text_column: str = "text",
        output_column: str = "embedding",
        kind: Kind = "document",
    ) -> None:
        if not callable(getattr(embeddings, "embed_array", None)):
            msg = (
                "embeddings must be one of this package's classes (NebiusEmbeddings, "
                "YandexEmbeddings, NebiusEmbedding, YandexEmbedding) or an EmbeddingsClient; "
                f"got {type(embeddings).__name__}, which has no embed_array()."
            )
            raise TypeError(msg)
        if kind not in ("document", "query"):
            msg = f"kind must be 'document' or 'query', got {kind!r}."
            raise ValueError(msg)
        if not text_column or not output_column:
            msg = "text_column and output_column must be non-empty column names."
            raise ValueError(msg)
        self.embeddings = embeddings
        self.text_column = text_column
        self.output_column = output_column
        self.kind: Kind = kind

    def __repr__(self) -> str:
        return (
            f"Embedder({self.embeddings!r}, text_column={self.text_column!r}, "
            f"output_column={self.output_column!r}, kind={self.kind!r})"
        )

    def __call__(self, batch: Any) -> Any:
        """Embed ``batch[text_column]`` into ``batch[output_column]`` (see the class)."""
        if isinstance(batch, Mapping):
            texts = self._texts(batch, list(batch), None)
            return {**batch, self.output_column: self._embed(texts)}
        if _is_dataframe(batch):
            texts = self._texts(batch, [str(c) for c in batch.columns], batch.index)
            matrix = self._embed(texts)
            out = batch.copy(deep=False)
            out[self.output_column] = list(matrix)  # rows of the one matrix: no copy
            return out
        msg = (
            f"Embedder takes a batch as a dict of numpy arrays or a pandas DataFrame "
            f"(batch_format='numpy' or 'pandas'), not {type(batch).__name__}."
        )
        raise TypeError(msg)

    def _texts(self, batch: Any, columns: list[str], index: Any) -> list[str]:
        if self.text_column not in columns:
            msg = (
                f"The batch has no text column {self.text_column!r}: its columns are "
                f"{columns}. Pass text_column= in fn_constructor_kwargs."
            )
            raise ValueError(msg)
        values = batch[self.text_column]
        texts = values.tolist() if hasattr(values, "tolist") else list(values)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                row = i if index is None else f"{i} (index {index[i]!r})"
                msg = (
                    f"Column {self.text_column!r} holds {type(text).__name__} {text!r:.60} at "
                    f"row {row} of this batch; every value must be a string."
                )
                raise TypeError(msg)
        return texts

    def _embed(self, texts: list[str]) -> numpy.ndarray:
        return self.embeddings.embed_array(texts, kind=self.kind)


def _is_dataframe(batch: Any) -> bool:
    # By the class's module, so that pandas is imported only where Ray already did.
    return any(
        c.__module__.partition(".")[0] == "pandas" and c.__name__ == "DataFrame"
        for c in type(batch).__mro__
    )
