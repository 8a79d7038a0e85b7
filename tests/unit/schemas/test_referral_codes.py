"""Referral codes: alphabet, length, check character."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from schemas.referral_codes import ALPHABET, CODE_LENGTH, check_character, is_well_formed, new_code, normalize

codes = st.builds(lambda seed: new_code(random.Random(seed).randrange), st.integers())


def test_alphabet_has_no_look_alikes():
    assert not set("0O1IL") & set(ALPHABET)
    assert len(set(ALPHABET)) == len(ALPHABET) == 31


@given(codes)
def test_new_codes_are_10_characters_of_the_alphabet_and_well_formed(code):
    assert len(code) == CODE_LENGTH == 10
    assert set(code) <= set(ALPHABET)
    assert is_well_formed(code)


@given(codes, st.integers(0, 9), st.sampled_from(ALPHABET))
def test_every_single_mistyped_character_is_caught(code, position, replacement):
    if code[position] == replacement:
        return
    typo = code[:position] + replacement + code[position + 1:]
    assert not is_well_formed(typo)


@given(codes, st.integers(0, 8))
def test_every_swap_of_neighbours_is_caught(code, position):
    if code[position] == code[position + 1]:
        return
    swapped = code[:position] + code[position + 1] + code[position] + code[position + 2:]
    assert not is_well_formed(swapped)


def test_codes_are_not_sequential_and_not_repeated():
    sample = {new_code() for _ in range(10_000)}
    assert len(sample) == 10_000


def test_typed_codes_are_normalised():
    code = new_code()
    assert normalize(f" {code[:5].lower()}-{code[5:]} ") == code
    assert not is_well_formed("ABC")
    assert not is_well_formed(code + "2")
    assert not is_well_formed("0" * 10)
    assert check_character("222222222") == "2"
