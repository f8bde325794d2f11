"""Shared fixtures; also lets the tests run from a source checkout without installing the plugin."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# When the distribution is installed (as nox installs plugins/hft-*), this changes nothing.
SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


@pytest.fixture
def anyio_backend() -> str:
    """The hft host runs on trio, so async tests do too."""
    return "trio"
