"""A customer's referral story: every decision about them, as steps in event-time order, each told in a
sentence with its values. Pure: what the story keeper stores (``referral_steps``, ``reward_step``) and what the
read API and ``referrals explain`` show (``told``).

A step is a small JSON-able dict, the same for every language, so that it can be kept as it is and told in any:

    {"at": <event time, RFC 3339>, "kind": "referral" | "reward", "role": "referrer" | "referee",
     "campaign_id": ..., "friend": <the other customer's pseudonym, or null>,
     "says": [[<catalogue key>, {<value name>: <value>}], ...],       the sentences, in order
     "status": ..., "points": ..., "reward": <pseudonym of the reward id>}   (reward steps)

Values are taken when the step is made: the campaign's minimum, windows and limits as they were for that
decision. Amounts are kept as ``"18.00 EUR"``, days as ``"2026-03-04"``, months as ``"2026-03"``; ``told``
writes them as the language writes them (``consumers.story_texts``).

Other customers appear only as pseudonyms (``referrals.privacy``); a step holds no id of anyone, no e-mail hash
and no device: the story keeps nothing the pipeline does not already keep.

A referral's steps are its current decisions, keyed by step (``STEP_NAMES``): a newer version of the referral
replaces them (a late event that moved the referral away leaves ``withdrawn``). A reward's steps are its
history: one per change.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from consumers.story_texts import Money, Month, sentence
from referrals.privacy import pseudonym
from schemas.derived import ReasonCode, RewardChange, RewardRole, RewardStatus
from schemas.fields import rfc3339
from streams.campaigns import Campaign, CampaignBook
from streams.referee_ledger import Referral

Step = dict[str, Any]
#: the steps a referral can have; a newer version of it replaces every one of them
STEP_NAMES = ("attributed", "missed", "qualified", "revoked", "not_counted", "withdrawn")
_MONEY = {"amount", "minimum"}
_DAYS = {"day", "order_day", "refund_day", "until"}


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:.2f} {currency}"


def _day(at: datetime) -> str:
    return at.date().isoformat()


def _why(reason: ReasonCode, r: Referral | None, campaign: Campaign | None, at: datetime,
         count: int | None = None) -> list[Any]:
    """The sentence that says why (``reason.<code>``), with what the decision rests on."""
    values: dict[str, Any] = {}
    key = f"reason.{reason.value}"
    evidence = r.evidence if r is not None else None
    if reason in (ReasonCode.VELOCITY_LIMIT, ReasonCode.DEVICE_REUSED) and campaign is not None:
        values = ({"limit": campaign.velocity_limit, "window_minutes": campaign.velocity_window_minutes}
                  if reason is ReasonCode.VELOCITY_LIMIT else {"limit": campaign.referees_per_device})
        if count:
            values["count"] = count
        else:
            key += ".uncounted"
    elif reason is ReasonCode.MONTHLY_CAP and campaign is not None:
        values = {"cap": campaign.monthly_cap, "month": f"{at.year:04d}-{at.month:02d}"}
    elif reason is ReasonCode.REFUNDED_IN_HOLD and evidence is not None and campaign is not None:
        minimum = campaign.minimum_for(evidence.currency) or Decimal(0)
        values = {"amount": _money(evidence.amount, evidence.currency), "refund_day": _day(evidence.at),
                  "hold_days": campaign.hold_period_days, "minimum": _money(minimum, evidence.currency)}
    elif reason is ReasonCode.EXISTING_CUSTOMER and evidence is not None:
        values = {"order_day": _day(evidence.at), "amount": _money(evidence.amount, evidence.currency)}
    elif reason is ReasonCode.CAMPAIGN_INACTIVE:
        values = {"day": _day(at)}
    elif reason in (ReasonCode.VELOCITY_LIMIT, ReasonCode.DEVICE_REUSED, ReasonCode.MONTHLY_CAP,
                    ReasonCode.REFUNDED_IN_HOLD, ReasonCode.EXISTING_CUSTOMER):
        return []  # its values are not known here (the referral's own step says them)
    return [key, values]


def referral_steps(r: Referral, customer_id: str, campaigns: CampaignBook, secret: str) -> dict[str, Step]:
    """The steps of a referral in the story of ``customer_id`` (its referrer or its referee), by step name."""
    role = RewardRole.REFERRER if customer_id == r.referrer_id else RewardRole.REFEREE
    friend = pseudonym(secret, r.referee_id if role is RewardRole.REFERRER else r.referrer_id)
    campaign = campaigns.get(r.campaign_id)

    def step(at: datetime, *says: list[Any]) -> Step:
        return {"at": rfc3339(at), "kind": "referral", "role": role.value, "campaign_id": r.campaign_id,
                "friend": friend, "says": [s for s in says if s]}

    day = _day(r.attributed_at)
    if r.status == "withdrawn":
        return {"withdrawn": step(r.attributed_at, ["withdrawn", {}])}
    if r.status == "rejected":
        why = _why(r.reason, r, campaign, r.attributed_at) if r.reason is not None else []
        return {"not_counted": step(r.attributed_at, [f"not_counted.{role.value}", {"day": day}], why)}
    steps = {"attributed": step(r.attributed_at, [f"attributed.{r.method}.{role.value}",
                                                  {"day": day, "channel": r.channel or "code"}])}
    evidence = r.evidence
    if r.status == "attributed" and evidence is not None and campaign is not None:
        minimum = campaign.minimum_for(evidence.currency)
        values: dict[str, Any] = {"amount": _money(evidence.amount, evidence.currency), "order_day": _day(evidence.at),
                                  "window_days": campaign.qualification_window_days}
        if minimum is not None:
            values["minimum"] = _money(minimum, evidence.currency)
        if evidence.since is not None:
            values["days"] = (evidence.at - evidence.since).days
        steps["missed"] = step(evidence.at, [f"missed.{evidence.kind}", values])
    if r.status in ("qualified", "revoked") and r.qualified_at is not None and r.amount is not None:
        steps["qualified"] = step(r.qualified_at, ["qualified", {"day": _day(r.qualified_at),
                                                                 "amount": _money(r.amount, r.currency or "")}])
    if r.status == "revoked" and evidence is not None:
        steps["revoked"] = step(evidence.at, _why(ReasonCode.REFUNDED_IN_HOLD, r, campaign, evidence.at))
    return steps


def reward_step(change: RewardChange, campaigns: CampaignBook, secret: str) -> Step:
    """One change of a reward, in the story of the customer it pays (``change.customer_id``). A reason whose
    values only the referral holds (a refund, an earlier order) is told by the referral's own step."""
    campaign = campaigns.get(change.campaign_id or "")
    at, status = change.occurred_at, change.status
    milestone = ":milestone:" in change.reward_id
    values: dict[str, Any] = {"day": _day(at), "points": change.points}
    says: list[list[Any]] = []
    if milestone:
        says.append(["milestone", {**values, "count": int(change.reward_id.rsplit(":", 1)[1])}])
    elif status is RewardStatus.PENDING and campaign is not None:
        until = at + campaign.hold_period + campaign.lateness
        says.append(["status.pending", {"points": change.points, "until": _day(until),
                                        "hold_days": campaign.hold_period_days}])
    else:
        says.append([f"status.{status.value}", values])
    if change.reason is not None:
        why = _why(change.reason, None, campaign, at, change.count)
        if why:
            says.append(why)
    friend = None
    if not milestone:
        ids = change.referral_id.split(":")
        other = [i for i in ids[1:] if i != change.customer_id]  # <campaign>:<referrer>:<referee>
        friend = pseudonym(secret, other[0]) if len(other) == 1 else None
    return {"at": rfc3339(at), "kind": "reward", "role": change.role.value, "campaign_id": change.campaign_id,
            "friend": friend, "says": says, "status": status.value, "points": change.points,
            "reward": pseudonym(secret, change.reward_id)}


def _typed(name: str, value: Any) -> Any:
    if name in _MONEY:
        amount, currency = str(value).split(" ", 1)
        return Money(Decimal(amount), currency)
    if name in _DAYS:
        return date.fromisoformat(str(value))
    if name == "month":
        year, month = str(value).split("-")
        return Month(int(year), int(month))
    return value


def told(step: Step, language: str) -> str:
    """The step in words: its sentences in ``language``, the other customer as their pseudonym."""
    out = []
    for key, values in step["says"]:
        typed = {name: _typed(name, v) for name, v in values.items()}
        out.append(sentence(key, language, friend=step.get("friend") or "", **typed))
    return " ".join(out)

