"""PostgreSQL for the suite: one template database per run, one fresh copy per test.

`MAILWRIGHT_TEST_PG` names the server (a postgresql:// URL to an admin database); default is
the local trust-auth server on 127.0.0.1:5432. If none answers the PostgreSQL half is skipped
with a message — except under CI=true, where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_dsn() -> str:
    url = os.environ.get("MAILWRIGHT_TEST_PG", DEFAULT_PG)
    return url.replace("postgresql+asyncpg://", "postgresql://")


def asyncpg_url(dsn: str, dbname: str) -> str:
    base = dsn.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+asyncpg://") + "/" + dbname


async def _exec(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn(), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run(sql: str) -> None:
    asyncio.run(_exec(sql))


_state: dict[str, str | None] = {}


def available() -> str | None:
    """None if PostgreSQL answers, else why not."""
    if "why" not in _state:
        try:
            run("SELECT 1")
            _state["why"] = None
        except Exception as exc:  # noqa: BLE001
            _state["why"] = f"PostgreSQL at {admin_dsn()} unavailable: {type(exc).__name__}: {exc}"
    return _state["why"]


def require() -> None:
    why = available()
    if why:
        if os.environ.get("CI", "").lower() == "true" or os.environ.get("MAILWRIGHT_TEST_PG"):
            pytest.fail(why + " (CI=true or MAILWRIGHT_TEST_PG set: the PostgreSQL half must run)")
        pytest.skip(why + " (set MAILWRIGHT_TEST_PG or start PostgreSQL to run the PostgreSQL half)")


def template_name() -> str:
    if "template" not in _state:
        name = f"mw_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        run(f'CREATE DATABASE "{name}"')
        _state["template"] = name

        async def migrate() -> None:
            from mailwright.storage.db import Database

            db = Database(asyncpg_url(admin_dsn(), name))
            await db.migrate()
            await db.close()

        asyncio.run(migrate())
    t = _state["template"]
    assert t is not None
    return t


def fresh_database() -> tuple[str, str]:
    """(url, name) of a new database copied from the migrated template."""
    name = f"mw_t_{uuid.uuid4().hex[:12]}"
    run(f'CREATE DATABASE "{name}" TEMPLATE "{template_name()}"')
    return asyncpg_url(admin_dsn(), name), name


def drop(name: str) -> None:
    try:
        run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:  # noqa: BLE001 - best effort clean-up
        pass


def drop_template() -> None:
    t = _state.pop("template", None)
    if t:
        drop(t)
