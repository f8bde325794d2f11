"""``[transports.grpc]``: validation, and a port already taken stops the host clearly."""

from __future__ import annotations

from typing import Any

import pytest
from hft_grpc.config import GrpcConfig

from hft import HftError


@pytest.mark.parametrize(
    "settings",
    [
        {"port": -1},
        {"port": 65536},
        {"graceful_timeout_s": 0},
        {"rate_limit_per_s": -1.0},
        {"rate_limit_burst": 0.5},
        {"order_backlog": 0},
        {"max_message_bytes": 10},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|at least|>"):
        GrpcConfig(**settings)


@pytest.mark.anyio
async def test_a_port_in_use_is_a_clear_error(harness_factory: Any) -> None:
    async with harness_factory() as running:
        port = int(running.address.rsplit(":", 1)[1])
        with pytest.raises(BaseException) as caught:  # noqa: PT011 - the host may group it
            async with harness_factory(port=port):
                pass
    errors = [caught.value]
    while isinstance(errors[0], BaseExceptionGroup):
        errors = list(errors[0].exceptions)
    assert isinstance(errors[0], HftError)
    assert errors[0].code == "bind_failed"
    assert f"127.0.0.1:{port}" in errors[0].message
