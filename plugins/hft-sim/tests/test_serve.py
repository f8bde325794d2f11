"""``hft serve`` with no configuration, run as a new user would: the sim market ticks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.mark.slow
def test_hft_serve_with_no_config_shows_instruments_ticking(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    # No configuration at all; only the plugins this is about, so that whatever transports
    # are installed beside it do not need their default ports free.
    env["HFT_PLUGINS"] = "sim,ext"
    process = subprocess.Popen(
        [sys.executable, "-m", "hft", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[dict[str, object]] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            raw = process.stdout.readline()
            if not raw:
                break
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue  # not a log line
            if sum(line.get("event") == "sim.market" for line in lines) == 2:
                break
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    for raw in rest.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    events = [line.get("event") for line in lines]
    assert process.returncode == 0, events
    markets = [line for line in lines if line.get("event") == "sim.market"]
    assert len(markets) == 2, events
    assert markets[0]["instruments"] == 20
    assert "RELIANCE" in markets[0]
    assert "NIFTY-I" in markets[1]
    assert markets[1]["ticks"] > 0
    assert markets[0]["RELIANCE"] != markets[1]["RELIANCE"] or markets[0] != markets[1]
    assert "host.started" in events
    assert "host.stopped" in events
    assert (tmp_path / "hft.db").exists()
