"""The story's catalogue: complete in both languages, the same values named in each, values formatted per
language."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from consumers.story_texts import (
    LANGUAGES,
    REQUIRED_KEYS,
    TEXTS,
    Money,
    Month,
    language_of,
    placeholders,
    sentence,
)
from schemas.derived import ReasonCode


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_reason_code_status_and_step_has_a_text(language):
    assert REQUIRED_KEYS - set(TEXTS[language]) == set()
    assert {f"reason.{code.value}" for code in ReasonCode} <= set(TEXTS[language])


def test_both_languages_have_the_same_keys_and_name_the_same_values_in_each():
    assert set(TEXTS["en"]) == set(TEXTS["de"])
    for key in TEXTS["en"]:
        assert placeholders(TEXTS["en"][key]) == placeholders(TEXTS["de"][key]), key


def test_values_are_written_as_each_language_writes_them():
    money, day = Money(Decimal("1234.5"), "EUR"), date(2026, 3, 4)
    assert sentence("reason.refunded_in_hold", "en", amount=money, refund_day=day, hold_days=14,
                    minimum=Money(Decimal("20"), "EUR")) == (
        "The refund of 1,234.50 EUR on 2026-03-04 came within the 14-day hold and took the order below the minimum "
        "of 20.00 EUR.")
    assert sentence("reason.refunded_in_hold", "de", amount=money, refund_day=day, hold_days=14,
                    minimum=Money(Decimal("20"), "EUR")) == (
        "Die Erstattung von 1.234,50 EUR am 04.03.2026 kam innerhalb der 14-tägigen Wartezeit und brachte die "
        "Bestellung unter den Mindestwert von 20,00 EUR.")
    assert sentence("reason.monthly_cap", "de", cap=10, month=Month(2026, 3)) == (
        "Im März 2026 wurden schon 10 Empfehlungen belohnt, die monatliche Obergrenze der Aktion.")
    assert sentence("status.confirmed", "en", points=500, day=datetime(2026, 3, 18, 23, 0, tzinfo=UTC)) == (
        "500 points were confirmed on 2026-03-18; they are final.")


@pytest.mark.parametrize(("header", "language"), [
    (None, "en"), ("", "en"), ("de", "de"), ("de-DE,de;q=0.9,en;q=0.8", "de"), ("en-US,de;q=0.5", "en"),
    ("fr-FR,de;q=0.7,en;q=0.3", "de"), ("fr", "en"), ("de;q=0, en", "en"), ("de;q=bad,en;q=0.1", "en"),
    ("en;q=0.2, de;q=0.8", "de"),
])
def test_accept_language_picks_english_or_german(header, language):
    assert language_of(header) == language
