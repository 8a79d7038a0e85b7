"""A shop's webhook receiver for the tests, run in its own process: ``python -m
tests.integration.support.webhook_receiver --port P --secret S --log FILE --behaviour B``.

Every request is verified with the ``standardwebhooks`` package (a wrong signature is answered 401 and logged
``verified: false``; a request whose sender went before its body ended is logged ``incomplete``), logged as one
JSON line (``t``, ``webhook_id``, ``type``, ``key``: the reward or referee
it is about, ``answered``, ``verified``) and answered as ``--behaviour`` says:

- ``ok``: 204;
- ``fail-first:N``: the first N attempts of each webhook id 503 (the first with ``Retry-After: 1``), then 200;
- ``slow-first:N:S``: the first N attempts of each webhook id wait S seconds before their 200;
- ``fail-matching:TEXT:N``: the first N attempts of each webhook id containing TEXT 503, the others 200;
- ``status:CODE``: always CODE.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--behaviour", default="ok")
    args = parser.parse_args()
    verifier = Webhook(args.secret)
    kind, _, rest = args.behaviour.partition(":")
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    log = open(args.log, "a", encoding="utf-8")  # open for the process's life

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet: the JSON log is the record
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = self.rfile.read(length)
            if len(body) < length:  # the sender went (a SIGKILLed dispatcher) before its request ended
                with lock:
                    log.write(json.dumps({"t": time.time(), "webhook_id": self.headers.get("webhook-id", ""),
                                          "incomplete": True, "answered": 0, "verified": False}) + "\n")
                    log.flush()
                self.close_connection = True
                return
            try:
                payload = verifier.verify(body, dict(self.headers.items()))
                verified = True
            except WebhookVerificationError:
                payload, verified = json.loads(body or b"{}"), False
            webhook_id = self.headers.get("webhook-id", "")
            with lock:
                seen[webhook_id] += 1
                attempt = seen[webhook_id]
            status, headers, wait = 204, {}, 0.0
            if not verified:
                status = 401
            elif kind == "fail-first" and attempt <= int(rest):
                status = 503
                if attempt == 1:
                    headers["Retry-After"] = "1"
            elif kind == "fail-matching" and rest.rsplit(":", 1)[0] in webhook_id and attempt <= int(
                    rest.rsplit(":", 1)[1]):
                status = 503
            elif kind == "slow-first":
                count, seconds = rest.split(":")
                status, wait = 200, float(seconds) if attempt <= int(count) else 0.0
            elif kind == "status":
                status = int(rest)
            data = payload.get("data", {})
            line = {"t": time.time(), "webhook_id": webhook_id, "type": payload.get("type"),
                    "key": data.get("reward_id") or data.get("referee_id"), "answered": status,
                    "verified": verified, "attempt": attempt}
            with lock:
                log.write(json.dumps(line) + "\n")
                log.flush()
            if wait:
                time.sleep(wait)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            answer = b"" if status == 204 else json.dumps({"status": status}).encode()
            if status != 204:
                self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
