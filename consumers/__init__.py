"""Consumers: metrics exporter, read API and sinks."""
