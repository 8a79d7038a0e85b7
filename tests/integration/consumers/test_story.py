"""The story on the real stack: a worker decides, the dispatcher's story keeper writes each customer's story, the
read API and `referrals explain` tell it, with the exact values, in English and German; paged; erased."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import httpx

from consumers.story_store import StoryKeys, delete_all
from referrals.code_registry import CodeRegistry
from referrals.privacy import pseudonym
from tests.integration.fixtures.gateway import FULFIL_KEY, READ_KEY
from tests.integration.support.worker import client, send, wait_for

DAY0 = (datetime.now(UTC) - timedelta(days=60)).replace(hour=9, minute=0, second=0, microsecond=0)
# the 10th of the month that began 50 to 80 days ago: eleven referrals on one day of it, in one calendar month
CAP_DAY = (datetime.now(UTC) - timedelta(days=50)).replace(day=10, hour=9, minute=0, second=0, microsecond=0)


def at(days: float = 0, minutes: float = 0) -> str:
    return (DAY0 + timedelta(days=days, minutes=minutes)).isoformat()


def day(days: float = 0) -> str:
    return (DAY0 + timedelta(days=days)).date().isoformat()


def de(days: float = 0) -> str:
    return (DAY0 + timedelta(days=days)).strftime("%d.%m.%Y")


def events(codes: dict[str, str]) -> list[dict]:
    n = iter(range(10_000))

    def e(kind: str, **fields) -> dict:
        return {"type": kind, "event_id": f"story-{next(n)}", **fields}

    a, b, c, d, f = codes["anna"], codes["bert"], codes["carl"], codes["dora"], codes["erik"]
    out = [
        e("signup", customer_id="anna", occurred_at=at(-1)),
        e("share", referrer_id="anna", channel="whatsapp", occurred_at=at(0, 5)),
        e("share", referrer_id="anna", channel="whatsapp", occurred_at=at(0, 6)),
        e("signup", customer_id="eva", referral_code=a, occurred_at=at(0, 30)),  # below the minimum
        e("order", customer_id="eva", order_id="eva-1", amount="18.00", currency="EUR", occurred_at=at(1)),
        e("signup", customer_id="finn", referral_code=a, occurred_at=at(2)),  # revoked by a refund in the hold
        e("order", customer_id="finn", order_id="finn-1", amount="30.00", currency="EUR", occurred_at=at(2, 60)),
        e("refund", customer_id="finn", order_id="finn-1", amount="30.00", currency="EUR", occurred_at=at(5)),
        e("signup", customer_id="gus", occurred_at=at(3)),  # ordered before being referred
        e("order", customer_id="gus", order_id="gus-1", amount="12.50", currency="EUR", occurred_at=at(3, 10)),
        e("order", customer_id="gus", order_id="gus-2", amount="30.00", currency="EUR", referral_code=a,
          occurred_at=at(3, 60)),
        e("signup", customer_id="hugo", referral_code=a, occurred_at=at(4)),  # qualifies, confirmed after the hold
        e("order", customer_id="hugo", order_id="hugo-1", amount="49.90", currency="EUR", occurred_at=at(4, 60)),
        e("signup", customer_id="ida", referral_code=a, occurred_at=at(5)),  # no order yet
        e("signup", customer_id="bert", occurred_at=at(-1)),
    ]
    out += [
        e("signup", customer_id="nina", referral_code=a, occurred_at=at(7)),  # then claimed by bert: a duplicate
        e("signup", customer_id="nina", referral_code=b, occurred_at=at(7, 60)),
        e("signup", customer_id="olga", referral_code=a, occurred_at="2025-12-15T10:00:00+00:00"),  # before it began
        e("signup", customer_id="pia", referral_code=a, occurred_at=at(-40)),  # first order after 97 days
        e("order", customer_id="pia", order_id="pia-1", amount="30.00", currency="EUR", occurred_at=at(57)),
        e("signup", customer_id="quinn", referral_code=a, occurred_at=at(8)),  # a currency without a minimum
        e("order", customer_id="quinn", order_id="quinn-1", amount="5000", currency="JPY", occurred_at=at(9)),
        e("signup", customer_id="carl", email_hash="h-carl", occurred_at=at(-1)),  # a referee with carl's e-mail
        e("signup", customer_id="kim", referral_code=c, email_hash="h-carl", occurred_at=at(10)),
        e("order", customer_id="kim", order_id="kim-1", amount="30.00", currency="EUR", occurred_at=at(10, 60)),
        e("signup", customer_id="dora", occurred_at=at(-1)),
        e("signup", customer_id="ralf", referral_code=codes["ralf"], occurred_at=at(12)),  # his own code
        e("signup", customer_id="sara", device_id="d-sara", occurred_at=at(-1)),  # a referee on sara's device
        e("signup", customer_id="tom", referral_code=codes["sara"], device_id="d-sara", occurred_at=at(13)),
        e("order", customer_id="tom", order_id="tom-1", amount="30.00", currency="EUR", occurred_at=at(13, 60)),
        e("signup", customer_id="uma", referral_code=a, occurred_at=at(55)),  # later: an earlier claim by bert
        e("order", customer_id="uma", order_id="uma-1", amount="30.00", currency="EUR", occurred_at=at(55, 60)),
    ]
    for i in range(2):  # two of dora's referees on one device (one allowed)
        out.append(e("signup", customer_id=f"m{i}", referral_code=d, device_id="farm", occurred_at=at(11 + i)))
        out.append(e("order", customer_id=f"m{i}", order_id=f"m{i}-1", amount="30.00", currency="EUR",
                     occurred_at=at(11 + i, 60)))
    for i in range(11):  # eleven of erik's referrals qualify in one month: the 11th is over the cap of 10
        when = CAP_DAY + timedelta(hours=2 * i)
        out.append(e("signup", customer_id=f"w{i}", referral_code=f, occurred_at=when.isoformat()))
        out.append(e("order", customer_id=f"w{i}", order_id=f"w{i}-1", amount="30.00", currency="EUR",
                     occurred_at=(when + timedelta(minutes=30)).isoformat()))
    for i in range(6):  # six signups on bert's code within 25 minutes: held for review (limit 5 an hour)
        out.append(e("signup", customer_id=f"v{i}", referral_code=b, occurred_at=at(6, i * 5)))
        out.append(e("order", customer_id=f"v{i}", order_id=f"v{i}-1", amount="25.00", currency="EUR",
                     occurred_at=at(6, 120 + i)))
    return out


def texts(page: dict) -> list[str]:
    return [s["text"] for s in page["steps"]]


def test_the_story_tells_every_decision_with_its_values_in_both_languages(pipeline_factory, app_factory,
                                                                            dispatcher_factory):
    own, worker = pipeline_factory("story")
    registry = CodeRegistry.from_settings(own)
    codes = {name: registry.issue(name, "default").code
             for name in ("anna", "bert", "carl", "dora", "erik", "ralf", "sara")}
    worker.start()
    dispatcher = dispatcher_factory(own)
    send(own, events(codes))
    gateway = app_factory(data_of=own)
    http = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {READ_KEY}"}, timeout=30)
    secret = own.privacy.pseudonym_key.get_secret_value()
    friend = {name: pseudonym(secret, name) for name in ("anna", "eva", "finn", "gus", "hugo", "ida", "bert", "nina",
                                                         "olga", "pia", "quinn")}

    def story(customer: str, language: str = "en", **params) -> dict:
        answer = http.get(f"/v1/customers/{customer}/story", params={"limit": 200, **params},
                          headers={"Accept-Language": language})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-language"] == language
        return answer.json()

    want = [
        f"{day(0)}: shared 2 times via whatsapp.",
        f"{friend['eva']} signed up on {day(0)} with your referral code.",
        f"The first order, 18.00 EUR on {day(1)}, was below the campaign's minimum of 20.00 EUR; a later order of at "
        "least 20.00 EUR within 90 days of the signup still qualifies.",
        f"{friend['finn']} signed up on {day(2)} with your referral code.",
        f"The first order, 30.00 EUR on {day(2)}, qualified the referral.",
        f"The refund of 30.00 EUR on {day(5)} came within the 14-day hold and took the order below the minimum of "
        "20.00 EUR.",
        f"The referral of {friend['gus']} on {day(3)} does not count. The friend had already ordered on {day(3)} "
        "(12.50 EUR), before being referred.",
        f"{friend['hugo']} signed up on {day(4)} with your referral code.",
        f"The first order, 49.90 EUR on {day(4)}, qualified the referral.",
        f"500 points are pending until {day(18)}: the 14-day period for returns.",
        f"{friend['ida']} signed up on {day(5)} with your referral code.",
        f"500 points were confirmed on {day(18)}; they are final.",
        f"The referral of {friend['olga']} on 2025-12-15 does not count. The referral came on 2025-12-15, outside the "
        "campaign's dates.",
        f"The first order came on {day(57)}, 97 days after the signup, outside the 90-day window.",
        f"The first order, 5,000.00 JPY on {day(9)}, was in a currency the campaign pays no reward for.",
    ]

    def anna_complete() -> tuple[bool, list[str]]:
        said = texts(story("anna"))
        return all(w in said for w in want), [w for w in want if w not in said] + ["--- told:"] + said

    said = wait_for(anna_complete, timeout_s=120)
    # finn's refund came in the worker's batch with the order: the reward was revoked without being pending first
    assert f"The reward of 500 points was revoked on {day(5)}." in said  # the refund's day
    # event-time order: the steps' times never go back
    page = story("anna")
    times = [datetime.fromisoformat(s["at"]) for s in page["steps"]]
    assert times == sorted(times)
    assert "anna" not in str(page["steps"]) and "eva" not in str(page["steps"])  # others only as pseudonyms

    german = texts(story("anna", "de"))
    for sentence in [
        f"{de(0)}: 2-mal über whatsapp geteilt.",
        f"Die erste Bestellung, 18,00 EUR am {de(1)}, lag unter dem Mindestwert der Aktion von 20,00 EUR; eine "
        "spätere Bestellung ab 20,00 EUR innerhalb von 90 Tagen nach der Registrierung zählt noch.",
        f"Die Erstattung von 30,00 EUR am {de(5)} kam innerhalb der 14-tägigen Wartezeit und brachte die Bestellung "
        "unter den Mindestwert von 20,00 EUR.",
        f"Die Empfehlung von {friend['gus']} am {de(3)} zählt nicht. Die geworbene Person hatte schon am {de(3)} "
        "bestellt (12,50 EUR), bevor sie geworben wurde.",
    ]:
        assert sentence in german, (sentence, german)

    # the referee's side, and the velocity hold with its count
    eva = texts(story("eva"))
    assert f"You signed up on {day(0)} with the referral code of {friend['anna']}." in eva
    bert = wait_for(lambda: ((t := texts(story("bert"))) and sum("held for review" in x for x in t) == 6, t), 60)
    assert ("The reward was held for review on " + day(6) + ": no points until the shop decides. 6 signups used this "
            "code within 60 minutes (limit 5). The shop reviews such bursts; points follow only if it releases them."
            ) in bert

    # every other rule, with its values
    assert f"The referral of {friend['nina']} on {day(7)} does not count. The friend had already been referred by " \
        "someone else." in texts(story("bert"))

    def held(customer: str, n: int) -> list[str]:
        return wait_for(lambda: ((t := texts(story(customer))) and sum("held for review" in x for x in t) >= n, t), 60)

    assert any(t.endswith("The friend signed up with the referrer's own e-mail address.") for t in held("carl", 1))
    dora = held("dora", 2)
    assert any(t.endswith("2 friends signed up on the same device (limit 1).") for t in dora), dora
    month = CAP_DAY.strftime("%B %Y")
    erik = wait_for(lambda: ((t := texts(story("erik"))) and any("capped" in x for x in t), t), 60)
    capped_on = (CAP_DAY + timedelta(hours=20, minutes=30)).date()  # the 11th referral's order
    assert (f"The reward was capped on {capped_on}: no points. 10 referrals were already rewarded in {month}, the "
            "campaign's monthly cap.") in erik, erik

    assert any(t.endswith("The referral code used was the customer's own.") for t in texts(story("ralf")))
    assert any(t.endswith("The friend signed up on the referrer's own device.") for t in held("sara", 1))
    assert any(t.startswith("Bonus of 250 points for reaching 3 confirmed referrals, on ") for t in erik), erik
    assert any(t.startswith("Bonus of 1000 points for reaching 10 confirmed referrals, on ") for t in erik), erik

    # a late event: uma signed up with bert's code a day before, and that signup arrives only now, while her
    # reward is pending (confirmed rewards are final)
    wait_for(lambda: ((t := texts(story("uma"))) and any("are pending" in x for x in t), t), 60)
    late = {"type": "signup", "event_id": "story-late", "customer_id": "uma", "referral_code": codes["bert"],
            "occurred_at": at(54)}
    send(own, [late])
    wait_for(lambda: ((t := texts(story("anna"))) and any(
        x.endswith("An event that arrived later showed that this reward would never have existed.") for x in t), t),
        60)
    assert any(t.startswith("A later event changed who made this referral") for t in texts(story("anna")))

    # every customer's story in German as well as in English: every step told in both, never the same words
    for name in ("anna", "bert", "carl", "dora", "erik", "eva", "gus", "ralf", "sara", "uma"):
        in_english, in_german = texts(story(name)), texts(story(name, "de"))
        assert len(in_english) == len(in_german) and in_english and not set(in_english) & set(in_german), name

    # the shop's fulfilment of hugo's reward, told where the reward is
    paid = http.post("/v1/rewards/default:anna:hugo:referrer/fulfilment", json={"status": "fulfilled"},
                     headers={"Authorization": f"Bearer {FULFIL_KEY}"})
    assert paid.status_code == 202, paid.text
    today = datetime.now(UTC).date().isoformat()
    wait_for(lambda: ((t := texts(story("anna"))) and any(
        x == f"500 points were confirmed on {day(18)}; they are final. The shop paid out this reward on {today}."
        for x in t), t), 60)

    # paging: pages of 3 give the same steps as one page, each once
    whole, paged, cursor = story("anna")["steps"], [], None
    while True:
        page = story("anna", limit=3, **({"cursor": cursor} if cursor else {}))
        paged += page["steps"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(map(str, paged)) == sorted(map(str, whole)) and len(paged) == len(whole)
    assert http.get("/v1/customers/anna/story", params={"cursor": "x"}).status_code == 422
    assert httpx.get(f"{gateway.url}/v1/customers/anna/story").status_code == 401

    # the command tells the same story
    told = dispatcher.cli("explain", "anna", "--language", "de")
    assert told.returncode == 0, told.stderr
    assert [line.split("] ", 1)[1] for line in told.stdout.splitlines() if "] " in line] == [
        s["text"] for s in story("anna", "de")["steps"] if "role" in s]

    # Redis lost the stories: referrals rebuild writes every one again, the same
    before = {name: story(name, "de")["steps"] for name in ("anna", "bert", "carl", "dora", "erik", "eva", "hugo")}
    with client(own) as c:
        assert delete_all(c, StoryKeys(own.redis.key_prefix, own.kafka.partitions)) > 0
    assert not [s for s in story("anna")["steps"] if s["kind"] in ("referral", "reward")]
    rebuilt = worker.run_beside([sys.executable, "-m", "referrals.cli", "rebuild"], timeout_s=300)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "stories:" in rebuilt.stdout and "written again" in rebuilt.stdout, rebuilt.stdout
    assert {name: story(name, "de")["steps"] for name in before} == before

        # erasure: the customer's story is gone, and the API says so
    done = worker.run_beside([sys.executable, "-m", "referrals.cli", "erase", "eva", "--yes"], timeout_s=300)
    assert done.returncode == 0, done.stdout + done.stderr
    gone = http.get("/v1/customers/eva/story")
    assert gone.status_code == 410 and gone.json()["errors"][0]["rule"] == "erased"
    assert dispatcher.cli("explain", "eva").returncode == 3
    with client(own) as c:
        assert not list(c.scan_iter(match=f"{own.redis.key_prefix}*:story:eva*"))
