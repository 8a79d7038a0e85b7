"""What the gateway publishes for Prometheus (``gateway.metrics_port``): requests, latency, events.

Labels are bounded: the route *template* (``/r/{code}``, never the code), the method, the
status code, the event type.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("referral_gateway_requests", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram("referral_gateway_request_seconds", "From request received to response ready",
                    ["route"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
EVENTS = Counter("referral_gateway_events", "Events accepted (on Kafka) by type", ["type"])

for _type in ("share", "click", "signup", "order", "refund"):
    EVENTS.labels(_type)


class MetricsMiddleware:
    """ASGI middleware: count and time every HTTP request by its route template (set by the router)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUESTS.labels(route, scope["method"], str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)
