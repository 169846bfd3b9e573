"""Suite-wide fixtures: a fresh database per test on SQLite and PostgreSQL, real servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import pg
from tests.support.server import InProcessServer


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated-on-start database: SQLite in tmp_path, or a PostgreSQL copy."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'mailwright.db'}"
        return
    pg.require()
    url, name = pg.fresh_database()
    try:
        yield url
    finally:
        pg.drop(name)


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[InProcessServer]:
    srv = InProcessServer(tmp_path / "data", database_url).start()
    try:
        yield srv
    finally:
        srv.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    pg.drop_template()
