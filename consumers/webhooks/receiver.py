"""``referrals webhooks receive <endpoint>``: a local endpoint to try the webhooks with (``make demo`` runs one).

It listens on the port of the endpoint's configured URL, verifies every POST's Standard Webhooks signature
with the endpoint's secrets (a timestamp more than ``TOLERANCE_S`` away is refused, as the libraries do),
answers 204 (401 for a signature that does not verify, 400 for a body that is not whole), and appends one JSON
line per delivery to ``out``: when it came, its ``webhook-id``, type, and the reward's or referee's fields a
shop would act on. ``GET /healthz`` answers 200. The standard library's threading HTTP server: one thread per
connection, enough for a demo, not meant to face the internet.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from consumers.webhooks.signing import signature

TOLERANCE_S = 300


def verified(keys: list[bytes], headers: dict[str, str], body: bytes, now: float) -> bool:
    """Whether one of the ``v1`` signatures in ``webhook-signature`` is the HMAC of one of ``keys``, with a
    timestamp within ``TOLERANCE_S`` of ``now``."""
    webhook_id, stamp, signed = (headers.get(h, "") for h in ("webhook-id", "webhook-timestamp",
                                                                "webhook-signature"))
    if not (webhook_id and stamp.isdigit() and signed) or abs(now - int(stamp)) > TOLERANCE_S:
        return False
    given = [s for s in signed.split(" ") if s.startswith("v1,")]
    expected = [signature([key], webhook_id, int(stamp), body) for key in keys]
    return any(hmac.compare_digest(g, e) for g in given for e in expected)


def summary(payload: dict) -> dict:
    data = payload.get("data") or {}
    kept = ("reward_id", "customer_id", "role", "points", "status", "reason", "referee_id", "referrer_id", "method")
    return {k: data[k] for k in kept if k in data}


def serve(keys: list[bytes], url: str, out: Path, host: str = "127.0.0.1", echo=print) -> None:
    port = urlsplit(url).port or (443 if url.startswith("https") else 80)
    path = urlsplit(url).path or "/"
    lock = threading.Lock()
    out.parent.mkdir(parents=True, exist_ok=True)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self._answer(200 if self.path == "/healthz" else 404)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            if self.path != path:
                return self._answer(404)
            if len(body) < length:
                self.close_connection = True
                return self._answer(400)
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not verified(keys, headers, body, time.time()):
                echo(f"refused a POST whose signature does not verify (webhook-id {headers.get('webhook-id')})")
                return self._answer(401)
            payload = json.loads(body)
            line = {"received_at": time.time(), "webhook_id": headers["webhook-id"], "type": payload.get("type"),
                    **summary(payload)}
            with lock, out.open("a", encoding="utf-8") as log:
                log.write(json.dumps(line) + "\n")
            echo(f"{payload.get('type')} {headers['webhook-id']}")
            self._answer(204)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    finally:
        server.server_close()
