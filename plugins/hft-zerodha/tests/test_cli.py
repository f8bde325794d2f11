"""``hft zerodha login / status / logout`` run as a user runs them, against the fake server;
and the stored session file."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from hft_zerodha import session as sessions
from hft_zerodha.cli import exchange

from hft._errors import AuthError
from hft._secret import Secret

from .conftest import FAST, kite_config
from .fake_kite import API_KEY, API_SECRET, USER_ID, FakeKite

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def write_config(tmp_path: Path, server: FakeKite, **extra: object) -> Path:
    lines = [
        "[host]",
        f'data_dir = "{tmp_path}"',
        "[storage]",
        'url = "memory://"',
        "[brokers.kite]",
        'plugin = "zerodha"',
        f'api_key = "{API_KEY}"',
        f'api_url = "{server.url}"',
        f'ws_url = "{server.ws_url}"',
        'login_url = "https://kite.zerodha.com/connect/login"',
        "redirect_port = 0",
        *(f"{k} = {v}" for k, v in FAST.items()),
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    path = tmp_path / "hft.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    env.update({"HFT_PLUGINS": "zerodha", "HFT_BROKERS__KITE__API_SECRET": API_SECRET, **extra})
    return env


async def hft(config: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "hft", "--config", str(config), "zerodha", *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        env=environment(),
        check=False,
    )


@pytest.mark.anyio
async def test_login_with_a_request_token_then_status_and_logout(tmp_path: Path) -> None:
    async with FakeKite.running() as server:
        server.request_tokens.add("req0001")
        config = write_config(tmp_path, server)
        done = await hft(config, "login", "--request-token", "req0001")
        assert done.returncode == 0, done.stderr.decode()
        out = done.stdout.decode()
        assert f"Logged in as {USER_ID}" in out
        assert "06:00 IST" in out
        token_file = tmp_path / "zerodha-kite.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        stored = sessions.load(token_file, API_KEY, "kite", dt.datetime.now(dt.UTC))
        access = stored.access_token.reveal()
        assert access in server.access_tokens
        assert access not in out + done.stderr.decode()  # the token is never printed
        (form,) = [f for m, p, _, f, _ in server.requests if (m, p) == ("POST", "/session/token")]
        expected = hashlib.sha256(f"{API_KEY}req0001{API_SECRET}".encode()).hexdigest()
        assert form == {"api_key": API_KEY, "request_token": "req0001", "checksum": expected}

        status = await hft(config, "status")
        assert status.returncode == 0
        assert USER_ID in status.stdout.decode()

        out = await hft(config, "logout")
        assert out.returncode == 0, out.stderr.decode()
        assert access not in server.access_tokens
        assert not token_file.exists()


@pytest.mark.anyio
async def test_a_request_token_works_once(tmp_path: Path) -> None:
    async with FakeKite.running() as server:
        server.request_tokens.add("req0009")
        config = kite_config(server)
        assert config.api_secret is not None
        stored = await exchange(config, config.api_secret, "req0009")
        assert stored.access_token.reveal() in server.access_tokens
        with pytest.raises(AuthError, match="hft zerodha login"):
            await exchange(config, config.api_secret, "req0009")


@pytest.mark.anyio
async def test_login_catches_the_redirect_on_loopback(tmp_path: Path) -> None:
    async with FakeKite.running() as server:
        server.request_tokens.add("req0002")
        config = write_config(tmp_path, server)
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "hft", "--config", str(config), "zerodha", "login"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment(),
        )
        assert process.stdout is not None
        output = b""
        with trio.fail_after(20):
            while b"redirect on http://127.0.0.1:" not in output:
                output += await process.stdout.receive_some()
            line = output.split(b"redirect on ", 1)[1].split(b"/", 3)
            url = f"http://{line[2].decode()}/?action=login&type=login&status=success"
            assert b"https://kite.zerodha.com/connect/login?v=3&api_key=testkey" in output
            async with httpx.AsyncClient() as client:
                page = await client.get(url + "&request_token=req0002")
            assert "Logged in" in page.text
            while chunk := await process.stdout.receive_some():
                output += chunk
            assert await process.wait() == 0, output.decode()
        assert b"Logged in as AB1234" in output
        assert (tmp_path / "zerodha-kite.token").exists()


@pytest.mark.anyio
async def test_login_accepts_a_pasted_redirect_url(tmp_path: Path) -> None:
    async with FakeKite.running() as server:
        server.request_tokens.add("req0003")
        config = write_config(tmp_path, server)
        pasted = b"not a token\nhttps://127.0.0.1:5000/?action=login&status=success&request_token=req0003\n"
        done = await hft(config, "login", "--no-listen", stdin=pasted)
        assert done.returncode == 0, done.stderr.decode()
        assert "not a request_token" in done.stderr.decode()  # the first line was refused


@pytest.mark.anyio
async def test_login_needs_the_api_secret(tmp_path: Path) -> None:
    async with FakeKite.running() as server:
        config = write_config(tmp_path, server)
        done = await trio.run_process(
            [sys.executable, "-m", "hft", "--config", str(config), "zerodha", "login"],
            capture_stdout=True,
            capture_stderr=True,
            env={k: v for k, v in environment().items() if "API_SECRET" not in k},
            check=False,
        )
        assert done.returncode == 1
        assert "HFT_BROKERS__KITE__API_SECRET" in done.stderr.decode()


def test_expiry_is_the_next_six_in_the_morning_ist() -> None:
    morning = dt.datetime(2026, 1, 21, 10, 0, tzinfo=IST)
    assert sessions.expiry_after(morning) == dt.datetime(2026, 1, 22, 6, 0, tzinfo=IST)
    night = dt.datetime(2026, 1, 21, 2, 0, tzinfo=IST)
    assert sessions.expiry_after(night) == dt.datetime(2026, 1, 21, 6, 0, tzinfo=IST)
    six = dt.datetime(2026, 1, 21, 6, 0, tzinfo=IST)
    assert sessions.expiry_after(six) == dt.datetime(2026, 1, 22, 6, 0, tzinfo=IST)


def test_checksum_is_sha256_of_key_token_secret() -> None:
    assert sessions.checksum("k", "t", "s") == hashlib.sha256(b"kts").hexdigest()


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.token"
    now = dt.datetime.now(dt.UTC)
    stored = sessions.StoredSession(
        API_KEY, USER_ID, Secret("tok"), now, now + dt.timedelta(hours=1)
    )
    sessions.save(path, stored)
    assert sessions.load(path, API_KEY, "kite", now).access_token == Secret("tok")
    path.chmod(0o644)
    with pytest.raises(AuthError, match="readable by other users"):
        sessions.load(path, API_KEY, "kite", now)
    path.chmod(0o600)
    path.write_text("{not json")
    with pytest.raises(AuthError, match="not a Kite session file"):
        sessions.load(path, API_KEY, "kite", now)


@pytest.mark.anyio
async def test_a_busy_redirect_port_is_reported_clearly(tmp_path: Path) -> None:
    async with FakeKite.running() as server:
        (busy,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = busy.socket.getsockname()[1]
        config = write_config(tmp_path, server)
        config.write_text(
            config.read_text().replace("redirect_port = 0", f"redirect_port = {port}")
        )
        done = await hft(config, "login")
        await busy.aclose()
        assert done.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in done.stderr.decode()
        assert "--no-listen" in done.stderr.decode()
