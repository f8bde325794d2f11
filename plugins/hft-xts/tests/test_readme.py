"""The README's Python example, run as a new user would, against the fake install."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from xts_fake import FakeXts

README = Path(__file__).resolve().parents[1] / "README.md"


def example() -> str:
    text = README.read_text(encoding="utf-8")
    return (
        text.split("## Streaming ticks and placing an order from Python")[1]
        .split("```python\n")[1]
        .split("```")[0]
    )


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_python_example_streams_a_tick_and_places_an_order(
    server: FakeXts, tmp_path: Path
) -> None:
    script = tmp_path / "example.py"
    script.write_text(example(), encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HFT_", "XTS_"))},
        "XTS_URL": server.url,
        "XTS_I_KEY": "pro-key",
        "XTS_I_SECRET": "pro-secret",
        "XTS_MD_KEY": "md-key",
        "XTS_MD_SECRET": "md-secret",
    }
    with anyio.fail_after(30):
        result = await anyio.run_process(
            [sys.executable, str(script)], cwd=tmp_path, env=env, check=False
        )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    assert "Tick(instrument='NSE:RELIANCE'" in output
    assert "status=<OrderStatus.OPEN" in output
    assert "status=<OrderStatus.CANCELLED" in output
    assert sorted(server.logouts) == ["MDUSER", "PRO1"]
