"""The README documents every configuration key and every rejection code."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

import attrs
from hft_sim.config import SimConfig

README = Path(__file__).resolve().parents[1] / "README.md"
BROKER = Path(__file__).resolve().parents[1] / "src" / "hft_sim" / "broker.py"


def keys(cls: type, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(section, key) for every leaf field of ``cls``, nested classes as sections."""
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        kind = hints[field.name]
        if attrs.has(kind):
            yield from keys(kind, f"{prefix}.{field.name}")
        else:
            yield prefix, field.name


def sections() -> dict[str, str]:
    """README text under each ``### `[brokers.<name>...]` `` heading."""
    text = README.read_text(encoding="utf-8")
    found = re.split(r"^### `\[brokers\.<name>(.*?)\]`\s*$", text, flags=re.MULTILINE)
    return {found[i]: found[i + 1].split("\n## ")[0] for i in range(1, len(found), 2)}


def test_every_config_key_is_in_its_section_table() -> None:
    documented = sections()
    for section, key in keys(SimConfig):
        assert section in documented, f"README has no section for [brokers.<name>{section}]"
        assert f"| `{key}` |" in documented[section], f"{section}.{key} is not documented"
    assert "| `cash_paise` |" in documented[".accounts.<code>"]


def test_every_rejection_code_is_documented() -> None:
    source = BROKER.read_text(encoding="utf-8")
    docstring = source.split('"""')[1]
    codes = set(re.findall(r"``([a-z_]+)``", docstring.split("The codes:")[1].split(".\n")[0]))
    text = README.read_text(encoding="utf-8")
    for code in codes:
        assert f"`{code}`" in text, code
    assert len(codes) >= 13
