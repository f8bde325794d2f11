"""Build hft-ext: the hot modules compiled with mypyc when possible, a pure build otherwise.

The hot modules are compiled when mypyc can be imported and a C compiler is on the PATH, unless
``HFT_EXT_PURE=1``. Either way the wheel carries the ``.py`` sources too, so the interpreted
engine stays loadable beside the compiled one (``hft_ext.load_engine(interpreted=True)``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from typing import Any

from setuptools import setup

# Only these are compiled; plugin.py and the CLI glue stay interpreted.
HOT_MODULES = ["src/hft_ext/_engine.py"]


def _say(message: str) -> None:
    print(f"hft-ext: {message}", file=sys.stderr)


def _have_c_compiler() -> bool:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    words = shlex.split(cc)
    return bool(words) and shutil.which(words[0]) is not None


def _ext_modules() -> list[Any]:
    if os.environ.get("HFT_EXT_PURE") == "1":
        _say("HFT_EXT_PURE=1: building the pure-Python (interpreted) engine")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _say("mypyc is not importable: building the pure-Python (interpreted) engine")
        return []
    if not _have_c_compiler():
        _say("no C compiler found: building the pure-Python (interpreted) engine")
        return []
    _say("compiling the hot modules with mypyc")
    return list(mypycify(HOT_MODULES, opt_level="3", debug_level="0"))


setup(ext_modules=_ext_modules())
