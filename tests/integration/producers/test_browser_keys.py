"""A real browser (Debian's headless Chromium, driven by Playwright) uses a publishable key: a page on an allowed
origin tracks a share with the snippet of docs/security.md and a customer token, and its visitor follows a
referral link; a page on another origin is stopped by the browser's CORS check, and nothing of it is produced."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import sync_playwright

from referrals.code_registry import CodeRegistry
from referrals.customer_tokens import issue
from referrals.settings import PROJECT_ROOT
from tests.integration.fixtures.gateway import SHOP_KEY
from tests.integration.producers.test_publishable_keys import TOKEN_SECRET, WEB_KEY, web_key
from tests.integration.producers.test_referral_link_browser import CHROMIUM_FLAGS
from tests.integration.support.kafka_reading import end_offsets, read_topic


def page_snippet() -> str:
    (html,) = re.findall(r"```html\n(.*?)```", (PROJECT_ROOT / "docs" / "security.md").read_text(), re.S)
    return html


class Site:
    """A web site on a port of its own (its own origin): a page with the docs' snippet and a link, a landing page."""

    def __init__(self) -> None:
        self.page = b""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = site.page if self.path == "/" else b"<html><title>Welcome</title><body>landing</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, gateway_url: str, code: str) -> None:
        html = page_snippet().replace("https://referrals.shop.example.com", gateway_url).replace(
            "pk_live_a1b2c3d4e5f6g7h8", WEB_KEY)
        self.page = (f"<html><head><title>Shop</title>{html}</head><body>"
                     f'<a id="ref" href="{gateway_url}/r/{code}?c=copy_link">a friend\'s link</a></body></html>'
                     ).encode()


@pytest.fixture
def sites() -> Iterator[tuple[Site, Site]]:
    made = Site(), Site()
    yield made
    for site in made:
        site.server.shutdown()


def test_a_page_on_an_allowed_origin_tracks_a_share_and_one_elsewhere_is_refused_by_the_browser(app_factory, sites):
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is missing: run `referrals stack prepare --test-tools`")
    shop, elsewhere = sites
    gw = app_factory(api_keys=[web_key(origins=[shop.origin]),
                               {"name": "shop", "key": SHOP_KEY, "types": ["signup", "order"]}],
                     landing_urls={"default": f"{shop.origin}/welcome"})
    code = CodeRegistry.from_settings(gw.settings).issue("cust-anna", "default").code
    for site in sites:
        site.serve(gw.url, code)
    token = issue(TOKEN_SECRET, "web", "cust-eva", int(time.time()) + 600)
    track = ("([token]) => trackShare('cust-eva', token, 'whatsapp')"
             ".then(async r => 'status ' + r.status + ' ' + await r.text(), e => 'blocked: ' + e.message)")
    fetch_link = (f"() => fetch('{gw.url}/r/{code}', {{redirect: 'manual'}})"
                  ".then(r => 'status ' + r.status, e => 'blocked: ' + e.message)")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_context().new_page()
            page.goto(f"{elsewhere.origin}/")
            assert page.evaluate(track, [token]).startswith("blocked: ")  # the preflight is refused
            assert page.evaluate(fetch_link).startswith("blocked: ")  # no CORS headers for it: unreadable
            before = end_offsets(gw.settings, [gw.topic("referrals.shares"), gw.topic("referrals.clicks")])
            assert set(before.values()) == {0}  # and the gateway produced nothing for that page

            page = browser.new_context().new_page()
            page.goto(f"{shop.origin}/")
            assert page.evaluate(track, [token]) == 'status 202 {"accepted":1}'
            page.click("#ref")  # the friend follows a referral link: a navigation, no CORS involved
            page.wait_for_url(f"{shop.origin}/welcome?ref={code}")
            assert page.title() == "Welcome"
        finally:
            browser.close()

    [shared] = read_topic(gw.settings, gw.topic("referrals.shares"), expected=1)
    assert json.loads(shared.value)["referrer_id"] == "cust-eva"
    [click] = read_topic(gw.settings, gw.topic("referrals.clicks"), expected=1)
    assert json.loads(click.value)["referral_code"] == code and json.loads(click.value)["channel"] == "copy_link"
