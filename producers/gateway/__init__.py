"""The HTTP front door: `POST /v1/events`, referral links `/r/{code}`, health, OpenAPI."""
