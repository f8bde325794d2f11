"""`hft users ...` and the first start of `hft serve` as an operator runs them: real processes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from hft._auth import PASSWORD_FILE, AuthService
from hft._config import AuthSection
from hft._host import open_storage
from hft._plugins import PluginHost
from hft.model import Account, Environment

pytestmark = pytest.mark.slow

# Only the core's built-ins, whatever else is installed; argon2 at its cheapest.
ENV = {
    "HFT_PLUGINS": "",
    "HFT_AUTH__ARGON2_TIME_COST": "1",
    "HFT_AUTH__ARGON2_MEMORY_KIB": "8",
    "HFT_AUTH__ARGON2_PARALLELISM": "1",
}
FAST = AuthSection(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)


def _env(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    environ.update(ENV, **extra)
    return environ


def hft(*args: str, cwd: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hft", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(**env),
        timeout=60,
        check=False,
    )


def ok(*args: str, cwd: Path, stdin: str = "") -> str:
    result = hft(*args, cwd=cwd, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def store_accounts(tmp_path: Path) -> None:
    """Accounts as an earlier ``hft serve`` would have stored them from its config."""

    async def save() -> None:
        storage = open_storage(f"sqlite:///{tmp_path / 'hft.db'}", PluginHost.from_modules({}))
        await storage.open()
        try:
            await storage.save_account(Account("paper", "sim", "default", Environment.SIM))
            await storage.save_account(Account("main", "zerodha", "AB1234", Environment.LIVE))
        finally:
            await storage.close()

    anyio.run(save, backend="trio")


def can_log_in(tmp_path: Path, username: str, password: str) -> bool:
    async def login() -> bool:
        storage = open_storage(f"sqlite:///{tmp_path / 'hft.db'}", PluginHost.from_modules({}))
        await storage.open()
        try:
            auth = AuthService(storage, FAST)
            await auth.load()
            tokens = await auth.login(username, password)
            return auth.authenticate(tokens.access_token).username == username
        except Exception:
            return False
        finally:
            await storage.close()

    return anyio.run(login, backend="trio")


def test_users_add_list_grant_passwd_disable_role(tmp_path: Path) -> None:
    store_accounts(tmp_path)
    out = ok("users", "add", "alice", "--password-stdin", cwd=tmp_path, stdin="first pass\n")
    assert out == "created trader alice (sim); accounts: none\n"
    vic = ["--role", "viewer", "--kind", "live", "--account", "main", "--account", "paper"]
    ok("users", "add", "vic", *vic, "--password-stdin", cwd=tmp_path, stdin="vics pass\n")
    assert "alice" in ok("users", "grant", "alice", "paper", cwd=tmp_path)
    ok("users", "passwd", "alice", "--password-stdin", cwd=tmp_path, stdin="second pass\n")
    ok("users", "disable", "vic", cwd=tmp_path)
    ok("users", "role", "alice", "admin", cwd=tmp_path)

    rows = json.loads(ok("users", "list", "--json", cwd=tmp_path))
    assert set(rows[0]) == {"username", "role", "kind", "accounts", "disabled"}
    assert [tuple(row.values()) for row in rows] == [
        ("alice", "admin", "sim", ["paper"], False),
        ("vic", "viewer", "live", ["main", "paper"], True),
    ]
    table = ok("users", "list", cwd=tmp_path).splitlines()
    assert table[0].split() == ["USERNAME", "ROLE", "KIND", "STATUS", "ACCOUNTS"]
    assert table[2].split() == ["vic", "viewer", "live", "disabled", "main,", "paper"]

    assert can_log_in(tmp_path, "alice", "second pass")
    assert not can_log_in(tmp_path, "alice", "first pass")
    ok("users", "disable", "vic", "--enable", cwd=tmp_path)
    assert can_log_in(tmp_path, "vic", "vics pass")


def test_users_errors_exit_1_with_a_clear_message_and_usage_exits_2(tmp_path: Path) -> None:
    store_accounts(tmp_path)
    ok("users", "add", "alice", "--password-stdin", cwd=tmp_path, stdin="first pass\n")
    for args, stdin, message in [
        (("users", "add", "alice", "--password-stdin"), "other pass\n", "already exists"),
        (("users", "add", "bob", "--password-stdin"), "short\n", "at least 8 characters"),
        (("users", "grant", "alice", "main"), "", "can never be granted live account 'main'"),
        (("users", "passwd", "nobody", "--password-stdin"), "long enough\n", "no user named"),
        (("users", "apikey", "revoke", "alice", "0123456789abcdef"), "", "no API key"),
    ]:
        result = hft(*args, cwd=tmp_path, stdin=stdin)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("hft: error: ")
        assert message in result.stderr
        assert "other pass" not in result.stderr
    assert hft("users", "add", cwd=tmp_path).returncode == 2
    assert hft("users", cwd=tmp_path).returncode == 2
    (tmp_path / "hft.toml").write_text("[auth]\naccess_ttl_s = 0\n")
    result = hft("users", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert "auth: 'access_ttl_s' must be >= 1" in result.stderr


def test_api_keys_are_created_once_listed_without_secret_and_revoked(tmp_path: Path) -> None:
    ok("users", "add", "bot", "--password-stdin", cwd=tmp_path, stdin="bot password\n")
    created = hft("users", "apikey", "create", "bot", "market maker", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("hft_")
    assert "keep it now" in created.stderr

    [row] = json.loads(ok("users", "apikey", "list", "bot", "--json", cwd=tmp_path))
    assert (row["name"], row["last_used_at"]) == ("market maker", None)
    assert key.startswith(f"hft_{row['key_id']}_")
    text = ok("users", "apikey", "list", "bot", cwd=tmp_path)
    assert row["key_id"] in text
    assert key.removeprefix("hft_").partition("_")[2] not in text  # the whole secret

    ok("users", "apikey", "revoke", "bot", row["key_id"], cwd=tmp_path)
    assert json.loads(ok("users", "apikey", "list", "bot", "--json", cwd=tmp_path)) == []


def test_the_first_serve_prints_the_admin_password_once_and_keeps_it_private(
    tmp_path: Path,
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "hft", "serve"],
        cwd=tmp_path,
        env=_env(HFT_LOGGING__FORMAT="json", HFT_HOST__DATA_DIR=str(tmp_path / "data")),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and '"host.started"' not in "".join(seen[-1:]):
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "".join(seen) + rest
    assert process.returncode == 0, output
    path = tmp_path / "data" / PASSWORD_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().split("admin: ")[1].split()[0]
    announcement = [line for line in output.splitlines() if password in line]
    assert announcement == [
        f"hft: first start: created the user 'admin' with the password {password}"
    ]
    assert str(path) in output
    users = hft("users", "list", "--json", cwd=tmp_path, HFT_HOST__DATA_DIR=str(path.parent))
    assert users.returncode == 0, users.stderr
    assert [u["username"] for u in json.loads(users.stdout)] == ["admin"]
    assert can_log_in(tmp_path / "data", "admin", password)
