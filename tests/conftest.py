from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """The host runs on trio, so the tests do too."""
    return "trio"
