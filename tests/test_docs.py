"""The docs stay true to the code: every hook documented, the state table exact, links alive."""

from __future__ import annotations

import inspect
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hft import hookspecs
from hft.model import TRANSITIONS, OrderStatus

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKS_DOC = DOCS / "plugin_hooks.md"
MARKDOWN = sorted([ROOT / "README.md", *DOCS.glob("*.md")])


class _AsWritten(str):
    """An annotation string that ``inspect`` prints without quotes, exactly as written."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _hookspecs() -> dict[str, Callable[..., Any]]:
    # pluggy marks each spec with an "<project>_spec" attribute: only those are hooks.
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if name.startswith("hft_") and callable(fn) and hasattr(fn, "hft_spec")
    }


def signature_as_written(fn: Callable[..., Any]) -> str:
    """``name(param: Annotation) -> Return``, with the annotations as the source spells them.

    hookspecs uses ``from __future__ import annotations``, so every annotation is a string.
    """
    signature = inspect.signature(fn)
    parameters = [
        p.replace(annotation=_AsWritten(p.annotation)) if isinstance(p.annotation, str) else p
        for p in signature.parameters.values()
    ]
    returns = signature.return_annotation
    signature = signature.replace(
        parameters=parameters,
        return_annotation=_AsWritten(returns) if isinstance(returns, str) else returns,
    )
    return f"{fn.__name__}{signature}"


def _strip_fences(text: str) -> str:
    """Markdown without its fenced code blocks (where a ``#`` line is a comment, not a heading)."""
    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.MULTILINE | re.DOTALL)


def _documented_hooks() -> list[str]:
    """The signatures in the ``## `hft_...` `` headings of the hooks page, in order."""
    text = _strip_fences(HOOKS_DOC.read_text(encoding="utf-8"))
    return re.findall(r"^## `(hft_[^`]*)`\s*$", text, flags=re.MULTILINE)


def test_the_hookspecs_are_found() -> None:
    assert "hft_register_brokers" in _hookspecs()
    assert signature_as_written(hookspecs.hft_register_brokers) == (
        "hft_register_brokers(register: RegisterBroker) -> None"
    )


def test_every_hook_has_a_section_headed_by_its_exact_signature() -> None:
    expected = {signature_as_written(fn) for fn in _hookspecs().values()}
    documented = _documented_hooks()
    missing = sorted(expected - set(documented))
    assert not missing, f"{HOOKS_DOC.name} has no section headed ## `<signature>` for: {missing}"


def test_every_hook_section_is_for_a_hook_that_exists_and_appears_once() -> None:
    expected = {signature_as_written(fn) for fn in _hookspecs().values()}
    documented = _documented_hooks()
    stale = sorted(set(documented) - expected)
    assert not stale, f"{HOOKS_DOC.name} documents hooks or signatures that do not exist: {stale}"
    repeated = sorted(sig for sig, n in Counter(documented).items() if n > 1)
    assert not repeated, f"{HOOKS_DOC.name} documents these hooks more than once: {repeated}"


def transition_table() -> str:
    """The markdown table of :data:`hft.model.TRANSITIONS` that docs/architecture.md carries."""
    lines = ["| from | may move to |", "|---|---|"]
    for status in OrderStatus:
        targets = [f"`{s}`" for s in OrderStatus if s in TRANSITIONS[status]]
        lines.append(f"| `{status}` | {', '.join(targets) or '— (terminal)'} |")
    return "\n".join(lines)


def test_the_architecture_doc_shows_the_transition_table_as_the_code_has_it() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    assert transition_table() in text, (
        "docs/architecture.md must carry the order state table exactly as:\n" + transition_table()
    )


# Inline links [text](target "title") or [text](<target>), and definitions [label]: target.
_INLINE = re.compile(r"\]\(\s*(?:<([^>\n]*)>|([^)\s]+))(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(?:<([^>\n]*)>|(\S+))", re.MULTILINE)


def _relative_links(path: Path) -> Iterator[str]:
    # Inline code is dropped too: brackets there (``x[0](y)``) are not links.
    text = re.sub(r"`[^`\n]*`", "", _strip_fences(path.read_text(encoding="utf-8")))
    matches = [*_INLINE.findall(text), *_REFERENCE.findall(text)]
    for target in (angled or bare for angled, bare in matches):
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            yield target  # not a URL (https:, mailto:): a file, or an anchor in this page


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a markdown page (``## A `b` c`` → ``a-b-c``)."""
    seen: Counter[str] = Counter()
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", _strip_fences(path.read_text("utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files_and_anchors(path: Path) -> None:
    broken = []
    for target in _relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part) if file_part else path
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in anchors(linked)
        ):
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)} links to missing files or anchors: {broken}"


def test_the_link_finder_sees_links_and_skips_code(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        'See [a](a.md), [b](<b c.md>) and [c](c.md#part "title"), [web](https://x.org),\n'
        "[top](#top), `[not](code.md)`.\n\n```python\nx = [y](z)\n```\n[ref]: ref.md\n",
        encoding="utf-8",
    )
    assert sorted(_relative_links(page)) == ["#top", "a.md", "b c.md", "c.md#part", "ref.md"]


def test_anchors_follow_github_slugs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n## `hft_x(a: B) -> None`\n## 4. Step four\n## Title\n```\n# not a heading\n```\n",
        encoding="utf-8",
    )
    assert anchors(page) == {"title", "hft_xa-b---none", "4-step-four", "title-1"}
