"""Mailwright: a self-hosted, API-first, multi-tenant email platform."""

__version__ = "0.1.0"
