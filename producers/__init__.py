"""Producers: what puts events on Kafka (gateway, client, simulator)."""
