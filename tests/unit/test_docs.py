"""The README and docs/ hold together: every relative link leads to a file that exists and, with an anchor,
to a heading in it (the forge's anchors: lowercase, punctuation dropped, spaces as hyphens); prose lines are
wrapped (tables and code excepted); every page says first what a reader comes to it for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from referrals.settings import PROJECT_ROOT

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
PROSE_WIDTH = 120


def prose(page: Path) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for _, line in prose(page):
        if match := re.match(r"#{1,6} (.+)", line):
            slug, n = anchor(match.group(1)), 0
            while (slug if n == 0 else f"{slug}-{n}") in found:  # repeated headings: -1, -2, ...
                n += 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def test_anchor_follows_the_forge():
    assert anchor("Running it: `referrals worker`") == "running-it-referrals-worker"
    assert anchor("`REFERRALS_STREAMS__*`") == "referrals_streams__"
    assert anchor("Where the records live (`streams/record_store.py`)") == "where-the-records-live-streamsrecord_storepy"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_somewhere(page):
    broken = []
    for number, line in prose(page):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, fragment = target.partition("#")
            goal = (page.parent / path).resolve() if path else page
            if not goal.exists():
                broken.append(f"{page.name}:{number}: {target} (no such file)")
            elif fragment and goal.suffix == ".md" and fragment not in anchors(goal):
                broken.append(f"{page.name}:{number}: {target} (no such heading in {goal.name})")
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_prose_is_wrapped(page):
    long = [f"{page.name}:{n}: {len(line)} characters" for n, line in prose(page)
            if len(line) > PROSE_WIDTH and not line.lstrip().startswith("|")]
    assert long == []


@pytest.mark.parametrize("page", [p for p in PAGES if p.parent.name == "docs"], ids=lambda p: p.name)
def test_a_page_starts_with_what_a_reader_comes_for(page):
    lines = [line for _, line in prose(page) if line.strip()]
    assert lines[0].startswith("# ") and lines[1].startswith("You come here"), lines[:2]
    assert sum(line.startswith("# ") for _, line in prose(page)) == 1, "one title per page"
