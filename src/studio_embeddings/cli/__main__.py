"""``python -m studio_embeddings.cli``: the same as the ``studio-embeddings`` command."""

from __future__ import annotations

from studio_embeddings.cli import console

console()
