from __future__ import annotations

import pytest

import hft_ext
from hft_ext import Engine


@pytest.fixture(
    scope="session",
    params=[
        pytest.param(True, id="compiled"),
        pytest.param(False, id="interpreted"),
    ],
)
def engine_class(request: pytest.FixtureRequest) -> type[Engine]:
    """The engine of each build: every engine test runs against both."""
    compiled: bool = request.param
    if compiled and not hft_ext.COMPILED:
        pytest.skip(
            "the installed hft-ext is the pure-Python build (HFT_EXT_PURE=1, or no C compiler "
            "or mypyc when it was built): no compiled engine to test"
        )
    return hft_ext.load_engine(interpreted=not compiled)
