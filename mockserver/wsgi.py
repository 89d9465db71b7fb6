"""WSGI entry point for the production server's worker processes (configured via RETURNS_MOCK_CONFIG)."""

from __future__ import annotations

from flask import Flask

from .config import Config
from .web import create_app


def app_from_env() -> Flask:
    return create_app(Config.from_env())
