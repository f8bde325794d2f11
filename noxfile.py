"""Every developer task: ``nox -l`` lists them. ``nox -s tests`` is what CI runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("hft-*") if (p / "pyproject.toml").is_file())
TEST_PLUGINS = sorted(
    p for p in (ROOT / "tests" / "plugins").glob("*") if (p / "pyproject.toml").is_file()
)
EXT = ROOT / "hft_ext"
HAS_EXT = (EXT / "pyproject.toml").is_file()


def install_project(session: nox.Session, *, compiled_ext: bool = True) -> None:
    """The core (editable, with test extras), hft-ext, and every plugin in ``plugins/``."""
    session.install("-e", ".[test]")
    if HAS_EXT:
        # Not editable: the mypyc build only happens when the wheel is built. Refreshed every
        # time, so a cached pure wheel never stands in for the compiled one (or the reverse).
        env = {} if compiled_ext else {"HFT_EXT_PURE": "1"}
        if session.venv_backend == "uv":
            fresh = ["--reinstall-package", "hft-ext", "--refresh-package", "hft-ext"]
        else:
            fresh = ["--force-reinstall", "--no-deps", "--no-cache-dir"]
        session.install(*fresh, str(EXT), env=env)
        if compiled_ext and shutil.which("cc"):
            # With a C compiler present the tests must run against the compiled build.
            session.run("python", "-c", "import hft_ext, sys; sys.exit(not hft_ext.COMPILED)")
    for plugin in PLUGINS:
        session.install("-e", f"{plugin}[test]" if _has_test_extra(plugin) else str(plugin))


def _has_test_extra(plugin: Path) -> bool:
    return "test = [" in (plugin / "pyproject.toml").read_text(encoding="utf-8")


def _test_paths() -> list[str]:
    return ["tests", *(str(p / "tests") for p in PLUGINS if (p / "tests").is_dir())]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the whole test suite (core, hft-ext compiled and interpreted, every plugin)."""
    install_project(session)
    for plugin in TEST_PLUGINS:
        session.install(str(plugin))  # real distributions, so that discovery is tested for real
    env = {"HFT_TEST_PLUGINS_INSTALLED": "1"}
    session.run("pytest", *_test_paths(), *session.posargs, env=env)
    if (EXT / "tests").is_dir():
        # From inside hft_ext/: at the root, the folder of that name would shadow the package.
        with session.chdir(EXT):
            session.run("pytest", *session.posargs, env=env)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """Check types with mypy --strict (the core and hft-ext)."""
    install_project(session, compiled_ext=False)
    session.install("mypy>=1.11")
    session.run("mypy", "core/hft")
    if HAS_EXT:
        session.run("mypy", "--strict", "hft_ext/src/hft_ext")
    for plugin in PLUGINS:
        session.run("mypy", "--strict", str(plugin / "src"))


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """Run ``hft serve`` on the embedded default (or the config in $HFT_CONFIG / ./hft.toml)."""
    install_project(session)
    session.run("hft", "plugins", "list")
    session.run(
        "hft",
        "serve",
        *session.posargs,
        env={k: v for k, v in os.environ.items() if k.startswith("HFT_")},
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run every benchmark and write its figures into docs/benchmarks.md."""
    install_project(session)
    # The peers some benchmarks measure against, in the same run: only in this session.
    session.install("kiteconnect")
    for script in sorted((ROOT / "bench").glob("[!_]*.py")):
        session.run("python", str(script))
    ext_bench = EXT / "bench" / "run_bench.py"
    if ext_bench.is_file():
        # NautilusTrader is the peer the matching engine is measured against, in the same run.
        session.install("nautilus-trader")
        session.run("python", str(ext_bench), *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Check the docs: every hook documented, every relative link and referenced file present."""
    install_project(session)
    session.run("pytest", "tests/test_docs.py", *session.posargs)
