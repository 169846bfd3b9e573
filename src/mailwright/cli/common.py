"""What every CLI command shares: the data options and running a coroutine against the store."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from mailwright.config import Settings, load_settings
from mailwright.services import Services
from mailwright.storage.db import DatabaseError

T = TypeVar("T")

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory [./data]")]
DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (sqlite+aiosqlite:// "
                                                 "or postgresql+asyncpg://)")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="TOML settings file")]


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"mailwright: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def settings_from(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except FileNotFoundError:
        fail(f"config file {config} not found")
    except ValidationError as exc:  # one line, naming the setting: "event_loop: Input should be ..."
        first = exc.errors()[0]
        fail(f"bad configuration: {'.'.join(str(p) for p in first['loc']) or 'settings'}: {first['msg']}")
    except Exception as exc:  # noqa: BLE001 - TOML errors: report, do not trace
        fail(f"bad configuration: {str(exc).splitlines()[0]}")


def run_with_services(settings: Settings, fn: Callable[[Services], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            svc = Services.create(settings)
        except DatabaseError as exc:
            fail(str(exc))
        try:
            await svc.db.migrate()
            return await fn(svc)
        finally:
            await svc.close()

    try:
        return asyncio.run(go())
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001
        fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
