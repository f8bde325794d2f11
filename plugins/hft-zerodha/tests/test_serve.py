"""A real ``hft serve`` with the zerodha broker against the fake Kite server: ready with a stored
token; not ready, with one clear error and no retry loop, when the token has expired."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from .conftest import store_token
from .fake_kite import FakeKite
from .test_cli import environment, write_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


class Serve:
    """``hft serve`` in a subprocess, its JSON log lines collected as they come."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self._buffer = b""

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for chunk in self.process.stdout:
            self._buffer += chunk
            *done, self._buffer = self._buffer.split(b"\n")
            for raw in done:
                try:
                    self.lines.append(json.loads(raw))
                except ValueError:
                    continue

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]

    async def wait_for(self, name: str, timeout_s: float = 30) -> dict[str, Any]:
        with trio.fail_after(timeout_s):
            while not self.events(name):
                if self.process.returncode is not None:
                    raise AssertionError(f"hft serve exited: {self.lines}")
                await trio.sleep(0.05)
        return self.events(name)[0]

    async def ready(self) -> dict[str, Any]:
        address = (await self.wait_for("http.listening"))["address"]
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{address}/health/ready")
        components: dict[str, Any] = response.json()["components"]
        return components["broker:kite"]  # type: ignore[no-any-return]


async def serve(tmp_path: Path, server: FakeKite, check: Any) -> None:
    config = write_config(tmp_path, server)
    with config.open("a") as file:
        file.write('[logging]\nformat = "json"\n[transports.http]\nport = 0\n')
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "hft", "--config", str(config), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=environment(HFT_PLUGINS="zerodha,http"),
    )
    host = Serve(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(host.read)
            await check(host)
            process.send_signal(signal.SIGINT)
            with trio.fail_after(30):
                assert await process.wait() == 0, host.lines
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_uses_the_stored_token_and_is_ready(tmp_path: Path) -> None:
    async with FakeKite.running() as server:
        store_token(tmp_path, server.issue_access_token(), name="kite")

        async def check(host: Serve) -> None:
            connected = await host.wait_for("kite.connected")
            assert connected["account"] == "AB1234"
            await host.wait_for("broker.connected")
            with trio.fail_after(10):
                while not (await host.ready())["ready"]:  # noqa: ASYNC110 - polled over HTTP
                    await trio.sleep(0.1)
            assert server.connections_opened == 1  # the ticker is up

        await serve(tmp_path, server, check)


async def test_serve_with_an_expired_token_is_not_ready_and_says_so_once(tmp_path: Path) -> None:
    async with FakeKite.running() as server:
        store_token(tmp_path, server.issue_access_token(), name="kite", expires_in_s=-60)

        async def check(host: Serve) -> None:
            failure = await host.wait_for("broker.login_required")
            assert "hft zerodha login --broker kite" in failure["error"]
            status = await host.ready()
            assert status["ready"] is False
            assert "expired" in status["reason"]
            await trio.sleep(1.0)
            assert len(host.events("broker.login_required")) == 1  # no retry loop
            assert host.process.returncode is None  # the host keeps serving

        await serve(tmp_path, server, check)
