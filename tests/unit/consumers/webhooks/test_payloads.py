"""What an endpoint receives for each change, and whom it goes to."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from consumers.webhooks.dispatcher import change_of, subscribed
from referrals.settings import Settings, WebhookEndpoint, worker_environment
from schemas.derived import Attribution, AttributionMethod, ReasonCode, RewardStatus
from schemas.topics import ATTRIBUTIONS, REWARDS, SIGNUPS
from schemas.webhooks import REWARD_TYPES, DeadDelivery, attribution_change, reward_change
from tests.unit.consumers.webhooks.factories import endpoint, new_secret, reward


def test_every_reward_status_has_a_webhook_type_an_endpoint_can_subscribe_to():
    assert set(REWARD_TYPES) == {s.value for s in RewardStatus}
    for kind in REWARD_TYPES.values():
        endpoint(types=(kind,))  # valid configuration


def test_a_reward_change_is_sent_with_its_event_id_as_webhook_id_and_event_time_as_timestamp():
    change = reward_change(reward("rw-9", RewardStatus.REVOKED, 2, reason=ReasonCode.REFUNDED_IN_HOLD))
    body = json.loads(change.body)
    assert change.webhook_id == body["id"] == "rw-9:revoked:2"
    assert (change.type, body["type"], change.ordering_key) == ("reward.revoked", "reward.revoked", "reward:rw-9")
    assert body["timestamp"] == "2026-03-01T12:00:00Z"
    assert body["data"] == {"reward_id": "rw-9", "referral_id": "ref-1", "role": "referrer", "customer_id": "cust-1",
                            "points": 500, "status": "revoked", "reason": "refunded_in_hold",
                            "campaign_id": "spring", "occurred_at": "2026-03-01T12:00:00Z"}
    assert reward_change(reward("rw-9", RewardStatus.REVOKED, 2, reason=ReasonCode.REFUNDED_IN_HOLD)) == change


def test_an_attribution_is_a_referral_attributed_change_ordered_by_its_referee():
    attribution = Attribution(event_id="attribution:c-2:s-1", occurred_at=datetime(2026, 3, 1, tzinfo=UTC),
                              referee_id="c-2", referrer_id="c-1", referral_code="ANNA-1",
                              method=AttributionMethod.SIGNUP_CODE, source_event_id="s-1", campaign_id="spring")
    change = attribution_change(attribution)
    assert (change.type, change.webhook_id, change.ordering_key) == ("referral.attributed", "attribution:c-2:s-1",
                                                                     "referee:c-2")
    assert json.loads(change.body)["data"]["referrer_id"] == "c-1"
    assert change_of(ATTRIBUTIONS.name, attribution.model_dump_json().encode()) == change


def test_a_record_that_is_no_change_of_its_topic_is_none():
    assert change_of(REWARDS.name, reward().model_dump_json().encode()) == reward_change(reward())
    assert change_of(REWARDS.name, b"{") is None
    assert change_of(REWARDS.name, None) is None
    assert change_of(ATTRIBUTIONS.name, reward().model_dump_json().encode()) is None
    assert change_of(SIGNUPS.name, reward().model_dump_json().encode()) is None


def test_an_endpoint_gets_the_types_and_campaigns_it_subscribed_to():
    pending, confirmed = reward_change(reward()), reward_change(reward(status=RewardStatus.CONFIRMED))
    assert subscribed(endpoint(types=("reward.pending",)), pending)
    assert not subscribed(endpoint(types=("reward.pending",)), confirmed)
    assert subscribed(endpoint(campaigns=["spring"]), pending)
    assert not subscribed(endpoint(campaigns=["autumn"]), pending)
    assert not subscribed(endpoint(campaigns=["spring"]), reward_change(reward(campaign=None)))


def test_a_dead_delivery_gives_back_the_change_as_it_was_sent():
    change = reward_change(reward())
    dead = DeadDelivery(endpoint="shop", webhook_id=change.webhook_id, event_type=change.type,
                        ordering_key=change.ordering_key, body=change.body.decode(), source_topic="referrals.rewards",
                        source_partition=1, source_offset=7, attempts=3, first_attempt_at=datetime.now(UTC),
                        dead_at=datetime.now(UTC), cause="status_400", last_status=400)
    assert DeadDelivery.model_validate_json(dead.model_dump_json()).change() == change


@pytest.mark.parametrize("secret, message", [
    ("c2VjcmV0", "whsec_"),
    ("whsec_not base64!", "not base64"),
    ("whsec_c2hvcnQ=", "24 to 64 bytes"),
])
def test_a_secret_not_in_the_standard_webhooks_form_is_refused(secret, message):
    with pytest.raises(ValidationError, match=message):
        endpoint(secret=secret)


def test_endpoint_configuration_from_the_environment(monkeypatch):
    secrets = [new_secret(), new_secret()]
    monkeypatch.setenv("REFERRALS_WEBHOOKS__ENDPOINTS", json.dumps([
        {"name": "shop", "url": "https://shop.example/hooks", "secret": secrets[0], "types": ["reward.confirmed"]},
        {"name": "crm", "url": "https://crm.example/in", "secret": secrets, "types": ["referral.attributed"],
         "campaigns": ["spring"]}]))
    own = Settings()
    assert [e.name for e in own.webhooks.endpoints] == ["shop", "crm"]
    assert len(own.webhooks.endpoint("crm").keys()) == 2
    assert secrets[0] not in repr(own)
    with pytest.raises(KeyError, match="known: shop, crm"):
        own.webhooks.endpoint("erp")
    env = worker_environment(own, ("kafka", "webhooks"))  # a child process gets the secrets themselves
    again = [WebhookEndpoint.model_validate(e) for e in json.loads(env["REFERRALS_WEBHOOKS__ENDPOINTS"])]
    assert again == own.webhooks.endpoints


@pytest.mark.parametrize("bad", [
    [{"name": "a", "url": "https://x", "secret": "S", "types": ["reward.paid"]}],
    [{"name": "a", "url": "ftp://x", "secret": "S", "types": ["reward.pending"]}],
    [{"name": "a", "url": "https://x", "secret": "S", "types": []}],
    [{"name": "a", "url": "https://x", "secret": "S", "types": ["reward.pending"]},
     {"name": "a", "url": "https://y", "secret": "S", "types": ["reward.pending"]}],
])
def test_a_wrong_endpoint_is_refused(bad):
    for e in bad:
        e["secret"] = new_secret()
    with pytest.raises(ValidationError):
        Settings(webhooks={"endpoints": bad})
