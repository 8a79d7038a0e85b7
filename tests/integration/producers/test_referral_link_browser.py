"""A real browser (Debian's headless Chromium, driven by Playwright) follows a referral link."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import sync_playwright

from referrals.code_registry import CodeRegistry
from tests.integration.support.kafka_reading import read_topic

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class _Landing(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html><title>Welcome</title><body>landing</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def landing_page():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Landing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_browser_lands_with_ref_holds_the_cookie_and_a_reload_adds_no_click(app_factory, landing_page, tmp_path):
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is missing: run `referrals stack prepare --test-tools`")
    gw = app_factory(landing_urls={"spring": f"{landing_page}/welcome?utm_source=referral"})
    code = CodeRegistry.from_settings(gw.settings).issue("cust-anna", "spring").code

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{gw.url}/r/{code}?c=whatsapp")
            assert page.url == f"{landing_page}/welcome?utm_source=referral&ref={code}"
            assert page.title() == "Welcome"
            cookies = {c["name"]: c for c in context.cookies(gw.url)}
            visitor = cookies["rp_vid"]
            assert visitor["httpOnly"] and visitor["sameSite"] == "Lax"
            assert visitor["expires"] > 0  # persistent (30 days), not a session cookie

            page.goto(f"{gw.url}/r/{code}?c=whatsapp")  # the friend opens the link again
            page.reload()
            assert page.url.endswith(f"ref={code}")
            assert context.cookies(gw.url)[0]["value"] == visitor["value"]
        finally:
            browser.close()

    records = read_topic(gw.settings, gw.topic("referrals.clicks"), expected=1, timeout_s=10)
    assert len(records) == 1
    click = json.loads(records[0].value)
    assert click["visitor_id"] == visitor["value"] and click["referral_code"] == code
    assert click["channel"] == "whatsapp"
