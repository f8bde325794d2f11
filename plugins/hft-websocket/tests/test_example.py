"""The README's example runs as written (on asyncio: the SDK is not tied to trio)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import Server

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ticks_and_order.py"


def test_the_example_trades_and_prints_ticks(server: Server) -> None:
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    assert EXAMPLE.read_text().strip() in readme, "the README shows the example as it is"
    env = {**os.environ, "WS_URL": server.ws_url, "WS_TOKEN": server.tokens["trader"]}
    run = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("placed ")
    assert any(line.startswith("tick NSE:INFY") for line in lines)
    assert any(line.startswith("order ") and line.endswith("FILLED") for line in lines)
    assert lines[-1].startswith("position NSE:INFY")
