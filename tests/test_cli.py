"""The ``hft`` command as a user runs it: a real process, real signals, real exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    environ.update(extra)
    return environ


def hft(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hft", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(**env),
        timeout=60,
        check=False,
    )


def test_help_lists_the_core_commands(tmp_path: Path) -> None:
    result = hft("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("version", "plugins", "config", "serve"):
        assert command in result.stdout
    assert hft(cwd=tmp_path).returncode == 2  # no command: usage


def test_config_check_summarises_the_embedded_default(tmp_path: Path) -> None:
    result = hft("config", "check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "config: (none: embedded default)" in result.stdout
    assert result.stdout.rstrip().endswith("ok")


def test_config_errors_exit_2_with_every_path(tmp_path: Path) -> None:
    (tmp_path / "hft.toml").write_text(
        '[logging]\nlevel = "loud"\n[brokers.z]\nplugin = "nonesuch"\n'
    )
    result = hft("config", "check", cwd=tmp_path)
    assert result.returncode == 2
    assert "hft: error: logging.level: " in result.stderr
    result = hft("config", "check", cwd=tmp_path, HFT_LOGGING__LEVEL="info")
    assert result.returncode == 2
    assert "brokers.z.plugin: no broker plugin named 'nonesuch'" in result.stderr


def _start_serve(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hft", *args, "serve"],
        cwd=tmp_path,
        # Only the built-ins: this is about the host's own start and stop, and installed
        # transports would otherwise bind their default ports.
        env=_env(
            HFT_LOGGING__FORMAT="json",
            HFT_HOST__DATA_DIR=str(tmp_path / "data"),
            HFT_PLUGINS="",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_event(
    process: subprocess.Popen[str], event: str, timeout_s: float = 30
) -> list[dict[str, object]]:
    """Read JSON log lines until one has ``event``; return every line read."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    lines: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        raw = process.stdout.readline()
        if not raw:
            break
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            continue
        lines.append(line)
        if line.get("event") == event:
            return lines
    raise AssertionError(f"no {event!r} log line; saw {lines}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_starts_and_stops_cleanly_on_a_signal(tmp_path: Path, signum: int) -> None:
    process = _start_serve(tmp_path)
    try:
        started = _wait_for_event(process, "host.started")[-1]
        assert started["level"] == "info"
        process.send_signal(signum)
        rest, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    events = [json.loads(line).get("event") for line in rest.splitlines() if line.startswith("{")]
    assert "host.stopping" in events
    assert events[-1] == "host.stopped"
    assert process.returncode == 0
    assert (tmp_path / "data").is_dir()


def test_serve_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "hft.toml").write_text('[storage]\nurl = "mongodb://db/x"\n')
    result = hft("serve", cwd=tmp_path)
    assert result.returncode == 1
    assert "hft: error: storage.url: no storage backend for scheme 'mongodb'" in result.stderr
