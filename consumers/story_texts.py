"""What the story says, in English and German: one sentence per decision, with the concrete values. Pure.

The catalogue (``TEXTS``) has, per language, a template for every reason code (``reason.<code>``: why a
referral was not counted or a reward withheld), for every way an attributed referral's first order did not
qualify (``missed.<kind>``), for each reward status, for the referral's own steps (attributed by each method,
qualified, revoked, withdrawn), for shares and clicks, and for the shop's fulfilment. ``tests/unit/consumers``
fails when a reason code, a status or a method has no text in a language, or when the languages' templates of
one key do not name the same values.

``sentence(key, language, **values)`` fills a template; the values are formatted for the language first:
amounts (``Money``) as ``18.00 EUR`` / ``18,00 EUR``, days (``date``) as ``2026-03-04`` / ``04.03.2026``,
months (``Month``) as ``March 2026`` / ``März 2026``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from schemas.derived import AttributionMethod, ReasonCode, RewardStatus

LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = "en"

MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"),
}

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        # shares and clicks, counted per day and channel
        "shares": "{day}: shared {count} times via {channel}.",
        "clicks": "{day}: referral links opened {count} times ({channel}).",
        # a referral, as the referrer sees it ("{friend}": the referee's pseudonym) and as the referee does
        "attributed.signup_code.referrer": "{friend} signed up on {day} with your referral code.",
        "attributed.signup_code.referee": "You signed up on {day} with the referral code of {friend}.",
        "attributed.last_click.referrer": "{friend} signed up on {day} after opening your link ({channel}).",
        "attributed.last_click.referee": "You signed up on {day} after opening the link of {friend} ({channel}).",
        "attributed.first_click.referrer": "{friend} signed up on {day}; the first link they opened was yours "
                                           "({channel}).",
        "attributed.first_click.referee": "You signed up on {day}; the first link you opened was the one of "
                                          "{friend} ({channel}).",
        "attributed.order_code.referrer": "{friend} used your referral code at checkout on {day}.",
        "attributed.order_code.referee": "You used the referral code of {friend} at checkout on {day}.",
        "not_counted.referrer": "The referral of {friend} on {day} does not count.",
        "not_counted.referee": "Your referral by {friend} on {day} does not count.",
        "missed.below_minimum": "The first order, {amount} on {order_day}, was below the campaign's minimum of "
                                "{minimum}; a later order of at least {minimum} within {window_days} days of the "
                                "signup still qualifies.",
        "missed.outside_window": "The first order came on {order_day}, {days} days after the signup, outside the "
                                 "{window_days}-day window.",
        "missed.no_minimum": "The first order, {amount} on {order_day}, was in a currency the campaign pays no "
                             "reward for.",
        "qualified": "The first order, {amount} on {day}, qualified the referral.",
        "withdrawn": "A later event changed who made this referral; it is no longer counted here.",
        "refunded_after_hold": "The order was refunded after the hold ended; the confirmed points stay.",
        # rewards: one sentence per status, then why where it is withheld
        "status.pending": "{points} points are pending until {until}: the {hold_days}-day period for returns.",
        "status.confirmed": "{points} points were confirmed on {day}; they are final.",
        "status.capped": "The reward was capped on {day}: no points.",
        "status.held_for_review": "The reward was held for review on {day}: no points until the shop decides.",
        "status.revoked": "The reward of {points} points was revoked on {day}.",
        "milestone": "Bonus of {points} points for reaching {count} confirmed referrals, on {day}.",
        # why
        "reason.self_referral": "The referral code used was the customer's own.",
        "reason.shared_email": "The friend signed up with the referrer's own e-mail address.",
        "reason.shared_device": "The friend signed up on the referrer's own device.",
        "reason.device_reused": "{count} friends signed up on the same device (limit {limit}).",
        "reason.device_reused.uncounted": "More friends signed up on one device than the campaign allows "
                                          "({limit}).",
        "reason.duplicate_attribution": "The friend had already been referred by someone else.",
        "reason.velocity_limit": "{count} signups used this code within {window_minutes} minutes (limit "
                                 "{limit}). The shop reviews such bursts; points follow only if it releases them.",
        "reason.velocity_limit.uncounted": "More than {limit} signups used this code within {window_minutes} "
                                           "minutes. The shop reviews such bursts; points follow only if it "
                                           "releases them.",
        "reason.monthly_cap": "{cap} referrals were already rewarded in {month}, the campaign's monthly cap.",
        "reason.refunded_in_hold": "The refund of {amount} on {refund_day} came within the {hold_days}-day hold "
                                   "and took the order below the minimum of {minimum}.",
        "reason.existing_customer": "The friend had already ordered on {order_day} ({amount}), before being "
                                    "referred.",
        "reason.unknown_code": "The code belongs to no referrer.",
        "reason.campaign_inactive": "The referral came on {day}, outside the campaign's dates.",
        "reason.late_event": "An event that arrived later showed that this reward would never have existed.",
        "reason.claim_unconfirmed": "Only the app said that the friend signed up with this code; the shop has "
                                    "not confirmed the signup, so it does not count (yet).",
        # the shop's word
        "fulfilment.fulfilled": "The shop paid out this reward on {day}.",
        "fulfilment.failed": "The shop could not pay out this reward (noted on {day}).",
        "fulfilment.take_back": "The reward was revoked after the shop had paid it out: the shop takes it back.",
    },
    "de": {
        "shares": "{day}: {count}-mal über {channel} geteilt.",
        "clicks": "{day}: Empfehlungslinks {count}-mal geöffnet ({channel}).",
        "attributed.signup_code.referrer": "{friend} hat sich am {day} mit Ihrem Empfehlungscode registriert.",
        "attributed.signup_code.referee": "Sie haben sich am {day} mit dem Empfehlungscode von {friend} "
                                          "registriert.",
        "attributed.last_click.referrer": "{friend} hat sich am {day} registriert, nachdem Ihr Link geöffnet "
                                          "wurde ({channel}).",
        "attributed.last_click.referee": "Sie haben sich am {day} registriert, nachdem Sie den Link von {friend} "
                                         "geöffnet hatten ({channel}).",
        "attributed.first_click.referrer": "{friend} hat sich am {day} registriert; der erste geöffnete Link war "
                                           "Ihrer ({channel}).",
        "attributed.first_click.referee": "Sie haben sich am {day} registriert; der erste Link, den Sie geöffnet "
                                          "haben, war der von {friend} ({channel}).",
        "attributed.order_code.referrer": "{friend} hat am {day} Ihren Empfehlungscode an der Kasse verwendet.",
        "attributed.order_code.referee": "Sie haben am {day} den Empfehlungscode von {friend} an der Kasse "
                                         "verwendet.",
        "not_counted.referrer": "Die Empfehlung von {friend} am {day} zählt nicht.",
        "not_counted.referee": "Ihre Empfehlung durch {friend} am {day} zählt nicht.",
        "missed.below_minimum": "Die erste Bestellung, {amount} am {order_day}, lag unter dem Mindestwert der "
                                "Aktion von {minimum}; eine spätere Bestellung ab {minimum} innerhalb von "
                                "{window_days} Tagen nach der Registrierung zählt noch.",
        "missed.outside_window": "Die erste Bestellung kam am {order_day}, {days} Tage nach der Registrierung, "
                                 "außerhalb der Frist von {window_days} Tagen.",
        "missed.no_minimum": "Die erste Bestellung, {amount} am {order_day}, war in einer Währung, für die die "
                             "Aktion keine Prämie zahlt.",
        "qualified": "Die erste Bestellung, {amount} am {day}, hat die Empfehlung gültig gemacht.",
        "withdrawn": "Ein späteres Ereignis hat geändert, wer diese Empfehlung ausgesprochen hat; sie zählt hier "
                     "nicht mehr.",
        "refunded_after_hold": "Die Bestellung wurde nach Ende der Wartezeit erstattet; die bestätigten Punkte "
                               "bleiben.",
        "status.pending": "{points} Punkte sind vorgemerkt bis {until}: die {hold_days}-tägige Frist für "
                          "Rücksendungen.",
        "status.confirmed": "{points} Punkte wurden am {day} bestätigt; sie sind endgültig.",
        "status.capped": "Die Prämie wurde am {day} gedeckelt: keine Punkte.",
        "status.held_for_review": "Die Prämie wurde am {day} zur Prüfung angehalten: keine Punkte, bis der Shop "
                                  "entscheidet.",
        "status.revoked": "Die Prämie von {points} Punkten wurde am {day} zurückgenommen.",
        "milestone": "Bonus von {points} Punkten für {count} bestätigte Empfehlungen, am {day}.",
        "reason.self_referral": "Der verwendete Empfehlungscode war der eigene.",
        "reason.shared_email": "Die geworbene Person hat sich mit der E-Mail-Adresse der werbenden Person "
                               "registriert.",
        "reason.shared_device": "Die geworbene Person hat sich auf dem Gerät der werbenden Person registriert.",
        "reason.device_reused": "{count} geworbene Personen haben sich auf demselben Gerät registriert (Grenze "
                                "{limit}).",
        "reason.device_reused.uncounted": "Mehr geworbene Personen haben sich auf einem Gerät registriert, als "
                                          "die Aktion erlaubt ({limit}).",
        "reason.duplicate_attribution": "Die geworbene Person war schon von jemand anderem empfohlen worden.",
        "reason.velocity_limit": "{count} Registrierungen haben diesen Code innerhalb von {window_minutes} Minuten "
                                 "verwendet (Grenze {limit}). Der Shop prüft solche Häufungen; Punkte gibt es "
                                 "nur, wenn er sie freigibt.",
        "reason.velocity_limit.uncounted": "Mehr als {limit} Registrierungen haben diesen Code innerhalb von "
                                           "{window_minutes} Minuten verwendet. Der Shop prüft solche Häufungen; "
                                           "Punkte gibt es nur, wenn er sie freigibt.",
        "reason.monthly_cap": "Im {month} wurden schon {cap} Empfehlungen belohnt, die monatliche Obergrenze "
                              "der Aktion.",
        "reason.refunded_in_hold": "Die Erstattung von {amount} am {refund_day} kam innerhalb der {hold_days}-"
                                   "tägigen Wartezeit und brachte die Bestellung unter den Mindestwert von "
                                   "{minimum}.",
        "reason.existing_customer": "Die geworbene Person hatte schon am {order_day} bestellt ({amount}), bevor "
                                    "sie geworben wurde.",
        "reason.unknown_code": "Der Code gehört zu keiner werbenden Person.",
        "reason.campaign_inactive": "Die Empfehlung kam am {day}, außerhalb der Laufzeit der Aktion.",
        "reason.late_event": "Ein später eingetroffenes Ereignis hat gezeigt, dass es diese Prämie nie hätte "
                             "geben dürfen.",
        "reason.claim_unconfirmed": "Nur die App hat gemeldet, dass sich die geworbene Person mit diesem Code "
                                    "registriert hat; der Shop hat die Registrierung nicht bestätigt, daher zählt "
                                    "sie (noch) nicht.",
        "fulfilment.fulfilled": "Der Shop hat diese Prämie am {day} ausgezahlt.",
        "fulfilment.failed": "Der Shop konnte diese Prämie nicht auszahlen (vermerkt am {day}).",
        "fulfilment.take_back": "Die Prämie wurde zurückgenommen, nachdem der Shop sie ausgezahlt hatte: der Shop "
                                "fordert sie zurück.",
    },
}

#: every key a complete catalogue must have (tests check both languages against it)
REQUIRED_KEYS = (
    {f"reason.{code.value}" for code in ReasonCode}
    | {f"status.{status.value}" for status in RewardStatus}
    | {f"attributed.{method.value}.{role}" for method in AttributionMethod for role in ("referrer", "referee")}
    | {f"missed.{kind}" for kind in ("below_minimum", "outside_window", "no_minimum")}
    | {"shares", "clicks", "not_counted.referrer", "not_counted.referee", "qualified", "withdrawn",
       "refunded_after_hold", "milestone", "fulfilment.fulfilled", "fulfilment.failed", "fulfilment.take_back"}
)


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class Month:
    year: int
    month: int


def language_of(accept_language: str | None) -> str:
    """The first of ``LANGUAGES`` an ``Accept-Language`` header asks for (by quality, then order), else English."""
    wanted: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            wanted.append((-quality, i, primary))
    return min(wanted)[2] if wanted else DEFAULT_LANGUAGE


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def formatted(value: object, language: str) -> str:
    if isinstance(value, Money):
        text = f"{value.amount:,.2f}"
        if language == "de":
            text = text.replace(",", " ").replace(".", ",").replace(" ", ".")
        return f"{text} {value.currency}"
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.strftime("%d.%m.%Y") if language == "de" else value.isoformat()
    if isinstance(value, Month):
        return f"{MONTHS[language][value.month - 1]} {value.year}"
    return str(value)


def sentence(key: str, language: str, **values: object) -> str:
    """The catalogue's sentence ``key`` in ``language``, its values formatted for the language."""
    template = TEXTS[language][key]
    return template.format(**{name: formatted(values[name], language) for name in placeholders(template)})
