"""The validators' fast paths (one search over the string) rule exactly as the character-by-character
walks they skip for a valid id: the same value back, or the same error naming the same first character."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from schemas import fields


def ruling(check, value: str):
    try:
        return ("ok", check(value))
    except PydanticCustomError as error:
        return ("rejected", error.type, error.context)


def test_category_cc_is_exactly_the_searched_range():
    cc = {chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cc"}
    assert cc == {chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]}


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.characters(codec=None), max_size=40))
@example("cust-1\x85x\x00")
@example("a\u2028b")
@example("")
def test_the_fast_paths_rule_as_the_walks(value):
    assert ruling(fields._no_control_characters, value) == ruling(fields._no_control_characters_walk, value)
    assert ruling(fields._printable, value) == ruling(fields._printable_walk, value)


@pytest.mark.parametrize("value, char", [("ab\x07c\x00", "U+0007"), ("x\x9f", "U+009F")])
def test_the_first_control_character_is_named(value, char):
    assert ruling(fields._no_control_characters, value) == ("rejected", "control_characters", {"char": char})
