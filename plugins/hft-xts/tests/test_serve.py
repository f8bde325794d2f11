"""``hft serve`` and ``hft xts check`` with an XTS broker configured as the README says, against
the fake install."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from xts_fake import FakeXts

CONFIG = """
[brokers.compositedge]
plugin = "xts"
url = "{url}"
query_rate_per_s = 50

[accounts.main]
broker = "compositedge"
broker_account = "PRO1"
"""


def _env(**keys: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    env["HFT_PLUGINS"] = "xts"  # only the broker: no transport needs a port
    prefix = "HFT_BROKERS__COMPOSITEDGE__"
    secrets = {
        "INTERACTIVE_APP_KEY": "pro-key",
        "INTERACTIVE_SECRET_KEY": "pro-secret",
        "MARKETDATA_APP_KEY": "md-key",
        "MARKETDATA_SECRET_KEY": "md-secret",
    }
    env.update({prefix + k: v for k, v in {**secrets, **keys}.items()})
    return env


@pytest.mark.slow
@pytest.mark.anyio
async def test_hft_xts_check_says_what_the_login_serves(server: FakeXts, tmp_path: Path) -> None:
    (tmp_path / "hft.toml").write_text(CONFIG.format(url=server.url), encoding="utf-8")
    command = [sys.executable, "-m", "hft", "xts", "check"]
    with anyio.fail_after(30):
        good = await anyio.run_process(command, cwd=tmp_path, env=_env(), check=False)
        bad = await anyio.run_process(
            command, cwd=tmp_path, env=_env(INTERACTIVE_SECRET_KEY="wrong-secret"), check=False
        )
    out = good.stdout.decode()
    assert good.returncode == 0, good.stderr.decode()
    assert "compositedge: pro login, accounts PRO1" in out
    assert "7 instruments in NSECM, NSEFO" in out
    assert "1512" in out
    assert bad.returncode == 1
    assert "check the interactive app key and secret key" in bad.stderr.decode()
    assert "wrong-secret" not in bad.stderr.decode() + bad.stdout.decode()


@pytest.mark.slow
@pytest.mark.anyio
async def test_hft_serve_connects_the_xts_broker_and_shows_it_ready(
    server: FakeXts, tmp_path: Path
) -> None:
    (tmp_path / "hft.toml").write_text(CONFIG.format(url=server.url), encoding="utf-8")
    env = _env()  # secrets from the environment, never the file
    lines: list[dict[str, Any]] = []
    raw_output: list[str] = []
    process = await anyio.open_process(
        [sys.executable, "-m", "hft", "serve"], cwd=tmp_path, env=env, stderr=subprocess.STDOUT
    )
    try:
        assert process.stdout is not None
        buffer = b""
        with anyio.fail_after(30):
            while not _ready(lines):
                chunk = await process.stdout.receive()
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    raw_output.append(raw.decode())
                    try:
                        lines.append(json.loads(raw))
                    except ValueError:
                        continue
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            async for chunk in process.stdout:
                raw_output.extend(chunk.decode().splitlines())
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()
    connected = next(line for line in lines if line.get("event") == "broker.connected")
    assert connected["broker"] == "compositedge"
    assert connected["accounts"] == ["PRO1"]
    assert connected["instruments"] >= 7
    assert process.returncode == 0, raw_output[-20:]
    assert "MDUSER" in server.logouts  # the broker logged out on shutdown
    output = "\n".join(raw_output)
    for secret in ("pro-secret", "md-secret", *server.tokens):
        assert secret not in output


def _ready(lines: list[dict[str, Any]]) -> bool:
    events = [(line.get("event"), line.get("state")) for line in lines]
    return ("broker.connected", None) in events and ("broker.connection", "connected") in events
