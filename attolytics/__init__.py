"""Attolytics: a small, strict analytics-event collector that writes to PostgreSQL."""

__version__ = "0.1.0"
