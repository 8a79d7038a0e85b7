"""Campaign files: the shipped example, defaults, and errors that name the key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streams.campaigns import CampaignError, load_campaigns
from tests.unit.streams.story import EXAMPLE

MINIMAL = '''
[[campaign]]
id = "spring"
starts_at = 2026-03-01T00:00:00Z
landing_url = "https://shop.example.com/spring"
'''


def write(tmp_path, text):
    path = tmp_path / "campaigns.toml"
    path.write_text(text)
    return path


def test_the_shipped_example_loads():
    book = load_campaigns(EXAMPLE)
    assert book.get("default").hold_period_days == 14


def test_defaults_are_the_documented_ones(tmp_path):
    c = load_campaigns(write(tmp_path, MINIMAL)).get("spring")
    assert c.minimum_order == {"EUR": Decimal("20.00")}
    assert (c.attribution_window_days, c.qualification_window_days, c.hold_period_days) == (30, 90, 14)
    assert (c.monthly_cap, c.velocity_limit, c.velocity_window_minutes) == (10, 5, 60)
    assert c.milestones == {3: 250, 5: 500, 10: 1000}
    assert c.attribution_policy == "last_click" and c.lateness_minutes == 60


@pytest.mark.parametrize(("line", "key"), [
    ('hold_period_days = "two weeks"', "campaign[0].hold_period_days"),
    ('attribution_policy = "any_click"', "campaign[0].attribution_policy"),
    ('minimum_order = { EUR = "20.001" }', "campaign[0].minimum_order"),
    ('minimum_order = { EURO = "20.00" }', "campaign[0].minimum_order"),
    ("monthly_cap = -1", "campaign[0].monthly_cap"),
    ("holdperiod_days = 14", "campaign[0].holdperiod_days"),
    ("ends_at = 2026-02-01T00:00:00Z", "campaign[0]"),
])
def test_a_bad_file_is_refused_with_the_key(tmp_path, line, key):
    with pytest.raises(CampaignError) as info:
        load_campaigns(write(tmp_path, MINIMAL + line + "\n"))
    assert f": {key}" in str(info.value)


def test_times_need_an_offset_and_files_must_be_toml(tmp_path):
    with pytest.raises(CampaignError, match="starts_at"):
        load_campaigns(write(tmp_path, MINIMAL.replace("2026-03-01T00:00:00Z", "2026-03-01T00:00:00")))
    with pytest.raises(CampaignError, match="not valid TOML"):
        load_campaigns(write(tmp_path, "[[campaign]\n"))
    with pytest.raises(CampaignError, match="no such campaign file"):
        load_campaigns(tmp_path / "missing.toml")
    with pytest.raises(CampaignError, match="unique"):
        load_campaigns(write(tmp_path, MINIMAL + MINIMAL))
