"""Entry points for the production server's worker processes (configured via RETURNS_MOCK_CONFIG)."""

from __future__ import annotations

from flask import Flask

from mockserver.domain.config import Config
from mockserver.web import create_app
from mockserver.web.serving import Server, in_worker


def app_from_env() -> Flask:
    """The Flask app configured through RETURNS_MOCK_CONFIG (any WSGI server)."""
    return create_app(Config.from_env())


def rsgi_from_env() -> Server:
    """What `returns-mock serve` runs in each worker: the app behind granian's RSGI interface
    (mockserver.web.serving)."""
    return in_worker(create_app(Config.from_env()).wsgi_app)
