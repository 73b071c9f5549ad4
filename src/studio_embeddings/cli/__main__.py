"""``python -m studio_embeddings.cli``: the same as the ``studio-embeddings`` command."""

from __future__ import annotations

import sys

from studio_embeddings.cli import main

sys.exit(main())
