"""Live tests talk to the real providers and are skipped unless their credentials are set.

They keep the developer's environment (the suite's autouse fixture would clear it).
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_env() -> None:
    """Overrides the suite-wide fixture: live tests need NEBIUS_* / YC_* from the shell."""
