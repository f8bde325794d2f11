"""The README documents every configuration key and every error code the plugin raises."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
from hft_xts.config import XtsConfig

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_config_key_is_in_the_table() -> None:
    section = README.split("### `[brokers.<name>]`")[1].split("\n## ")[0]
    for field in attrs.fields(XtsConfig):
        assert f"| `{field.name}` |" in section, f"{field.name} is not documented"


def test_every_error_code_is_documented() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src").rglob("*.py"))
    codes = set(re.findall(r'code="(xts_[a-z_]+)"', source))
    assert len(codes) >= 10
    for code in codes:
        assert f"`{code}`" in README, f"{code} is not documented"
