"""docs/configuration.md lists every setting as the code defines it."""

from __future__ import annotations

import pytest

from referrals import settings_reference
from referrals.settings import Settings


def test_the_page_lists_every_setting_as_the_code_defines_it():
    page = settings_reference.PAGE.read_text()
    assert settings_reference.with_reference(page) == page, (
        "docs/configuration.md differs from referrals/settings.py: run `make docs` "
        "and commit the page")


def test_every_setting_has_a_variable_and_a_meaning():
    found = list(settings_reference.settings_fields())
    variables = [variable for _, variable, _ in found]
    assert len(variables) == len(set(variables)) > 60
    assert "REFERRALS_STREAMS__DEDUP_HORIZON_DAYS" in variables and "REFERRALS_STATE_DIR" in variables
    assert [v for _, v, field in found if not field.description] == []
    reference = settings_reference.reference()
    assert all(f"`{variable}` = " in reference for variable in variables)


def test_every_variable_the_reference_names_is_one_settings_reads(monkeypatch):
    """Each scalar setting set through the variable the page gives it, to a value other than its default."""
    checked = 0
    for section, variable, field in settings_reference.settings_fields():
        name = variable.rsplit("__", 1)[-1].lower() if section else variable.removeprefix("REFERRALS_").lower()
        if field.annotation is bool:
            value, text = (not field.default), str(not field.default).lower()
        elif field.annotation in (int, float) and isinstance(field.default, int | float):
            value = field.default + 1
            text = str(value)
        else:
            continue
        monkeypatch.setenv(variable, text)
        loaded = Settings()
        assert getattr(getattr(loaded, section) if section else loaded, name) == value, variable
        monkeypatch.delenv(variable)
        checked += 1
    assert checked > 30


def test_defaults_are_shown_as_typed():
    reference = settings_reference.reference()
    assert "- `REFERRALS_KAFKA__PORT` = `9092`:" in reference
    assert "- `REFERRALS_KAFKA__SASL_PASSWORD` = none:" in reference
    assert "- `REFERRALS_PRIVACY__PSEUDONYM_KEY` = a development key:" in reference
    assert "- `REFERRALS_GATEWAY__COOKIE_SECURE` = `false`:" in reference
    assert "- `REFERRALS_STREAMS__CAMPAIGNS_FILE` = `deploy/campaigns/example.toml` (in the project):" in reference
    assert "local-development-pseudonym-key" not in reference  # a secret's default is not printed


def test_a_page_without_the_section_is_refused():
    with pytest.raises(ValueError, match="no reference section"):
        settings_reference.with_reference("# Configuration\n")
