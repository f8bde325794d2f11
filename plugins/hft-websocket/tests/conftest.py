"""A real ``hft serve`` (sim broker, this transport and the REST API on free ports) and the
users the tests act as.

The sim steps every 20 ms, so market data flows fast enough to show batching and conflation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

TIMEOUT_S = 30.0
PASSWORD = "correct horse battery staple"
ACCOUNT = "sim"  # the sim account, granted to ``trader`` on the first start
CONFIG = """\
[brokers.sim]
plugin = "sim"
environment = "sim"
step_ms = 20.0
market_log_interval_s = 0.0

[accounts.sim]
broker = "sim"
broker_account = "default"
environment = "sim"

# Cheap hashes: the tests sign in several times, and hashing cost is not what they test.
[auth]
argon2_time_cost = 1
argon2_memory_kib = 8
argon2_parallelism = 1
"""


@pytest.fixture
def anyio_backend() -> str:
    """The hft host runs on trio, and so do the async tests."""
    return "trio"


@attrs.define
class Server:
    """A running ``hft serve`` and how to reach it."""

    process: subprocess.Popen[bytes]
    ws_url: str
    http_url: str
    log_path: Path
    tokens: dict[str, str] = attrs.field(factory=dict)

    def login(self, username: str, password: str) -> str:
        response = httpx.post(
            f"{self.http_url}/api/v1/auth/login",
            json={"username": username, "password": password},
            timeout=TIMEOUT_S,
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def http(self, method: str, path: str, user: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.http_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.tokens[user]}"},
            timeout=TIMEOUT_S,
        )

    def log_events(self, event: str) -> list[dict[str, Any]]:
        found = []
        for raw in self.log_path.read_text().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("event") == event:
                found.append(line)
        return found


def _wait_started(process: subprocess.Popen[bytes], log_path: Path) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for raw in log_path.read_text().splitlines():
            if '"host.started"' in raw:
                started: dict[str, Any] = json.loads(raw)
                return started
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"hft serve did not start; its log:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server per test module: it stops when the module is done, not at the end of a whole
    ``nox -s tests`` run that goes on to other plugins."""
    workdir = tmp_path_factory.mktemp("serve")
    log_path = workdir / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    env.update(
        HFT_PLUGINS="sim,ext,websocket,http",
        HFT_LOGGING__FORMAT="json",
        HFT_TRANSPORTS__WEBSOCKET__PORT="0",
        HFT_TRANSPORTS__WEBSOCKET__AUTH_TIMEOUT_S="1",
        HFT_TRANSPORTS__WEBSOCKET__MAX_MESSAGE_BYTES="4096",
        HFT_TRANSPORTS__WEBSOCKET__MAX_SUBSCRIPTIONS="10",
        HFT_TRANSPORTS__HTTP__PORT="0",
        HFT_TRANSPORTS__HTTP__ACCESS_LOG="false",
    )
    (workdir / "hft.toml").write_text(CONFIG)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "hft", "serve"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        started = _wait_started(process, log_path)
        transports = started["transports"]
        running = Server(process, transports["websocket"], transports["http"], log_path)
        passwords = dict(
            line.split(": ", 1)
            for line in (workdir / "hft-admin-password.txt").read_text().splitlines()
            if not line.startswith("#")
        )
        running.tokens["admin"] = running.login("admin", passwords["admin"])
        running.tokens["trader"] = running.login("trader", passwords["trader"])
        # A trader granted no account: it can see none of the sim account's orders.
        created = running.http(
            "POST",
            "/api/v1/users",
            "admin",
            {"username": "other", "password": PASSWORD, "role": "trader", "kind": "sim"},
        )
        assert created.status_code == 201, created.text
        running.tokens["other"] = running.login("other", PASSWORD)
        _wait_ready(running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if httpx.get(f"{server.http_url}/health/ready", timeout=TIMEOUT_S).status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("the sim broker never became ready")
