"""Entry points for the production server's worker processes (configured via RETURNS_MOCK_CONFIG)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from mockserver.domain.config import Config
from mockserver.web import create_app
from mockserver.web.serving import RsgiServer


def app_from_env() -> Flask:
    """The Flask app configured through RETURNS_MOCK_CONFIG (any WSGI server)."""
    return create_app(Config.from_env())


def rsgi_from_env() -> Any:
    """What `returns-mock serve` runs: the app behind granian's RSGI interface (mockserver.web.serving)."""
    config = Config.from_env()
    return RsgiServer(create_app(config).wsgi_app, body_timeout_ms=config.body_timeout_ms,
                      max_body_bytes=config.max_body_bytes)
