"""Fixtures: the mock in-process with a memory store, a frozen clock and the response self-check on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import START
from pg import Cluster

from mockserver.domain.clock import FrozenClock
from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web import create_app, served

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL per test session, started by the first test that needs it."""
    cluster = Cluster().start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> str:
    """A fresh database of its own for each test (its URL carries a password)."""
    return postgres_cluster.new_database()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def app(clock: FrozenClock) -> Flask:
    """The mock with a memory store, a frozen clock, and every response checked against the contract."""
    app = create_app(Config(self_check=True), store=MemoryStore(), clock=clock)
    app.testing = True
    return app


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    yield app.test_client()
    assert served(app).self_check_failures == []
