"""DKIM key store: generate per (domain, selector), list public parts, retire, and the active
keys the submission path signs with. Private keys never leave the server through any API.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory.errors import AlreadyExists, Invalid, NotFound
from mailwright.mailauth.dkim import DkimKey, generate_dkim_key
from mailwright.storage.db import Database
from mailwright.storage.models import DkimKeyRow, Domain, utcnow

if TYPE_CHECKING:
    from mailwright.directory.tenants import Actor

ALGORITHMS = ("ed25519-sha256", "rsa-sha256")


def _check_selector(selector: object) -> str:
    if not isinstance(selector, str) or not selector:
        raise Invalid("selector is required", field="selector")
    sel = selector.strip().lower()
    labels = sel.split(".")
    if len(sel) > 63 or not all(lbl and all(c.isalnum() or c == "-" for c in lbl) for lbl in labels):
        raise Invalid(f"invalid selector {selector!r}", field="selector", value=str(selector))
    return sel


def default_selector(algorithm: str) -> str:
    """Stalwart's convention when no selector is given: year+month and r (rsa) or e (ed25519)."""
    return utcnow().strftime("%Y%m") + ("e" if algorithm.startswith("ed25519") else "r")


async def create(db: Database, domain: Domain, algorithm: str, selector: str | None, key_id: str | None = None,
                 *, actor: Actor | None = None) -> DkimKeyRow:
    if algorithm not in ALGORITHMS:
        raise Invalid(f"unsupported algorithm {algorithm!r}: use ed25519-sha256 or rsa-sha256",
                      field="algorithm", value=str(algorithm))
    if key_id is not None and (not isinstance(key_id, str) or len(key_id) > 255):
        raise Invalid("id must be a string of at most 255 characters", field="id")
    sel = _check_selector(default_selector(algorithm) if selector is None else selector)
    private, txt = await asyncio.to_thread(generate_dkim_key, algorithm)
    async with db.write() as s:
        dup = select(DkimKeyRow.id).where(DkimKeyRow.domain_id == domain.id, DkimKeyRow.selector == sel)
        if (await s.execute(dup)).first():
            raise AlreadyExists(f"selector {sel} already exists for {domain.name}", field="selector", value=sel)
        if key_id and await s.get(DkimKeyRow, key_id) is not None:
            key_id = None  # the guide reuses the domain name as id; a second selector gets its own
        row = DkimKeyRow(domain_id=domain.id, selector=sel, algorithm=algorithm,
                         private_key=private.decode("ascii"), public_txt=txt)
        if key_id:
            row.id = key_id
        s.add(row)
        try:
            await s.flush()
        except IntegrityError:  # a concurrent create of the same selector (or id) won
            raise AlreadyExists(f"selector {sel} already exists for {domain.name}", field="selector",
                                value=sel) from None
        await _log(s, actor, "dkim.create", f"{sel}._domainkey.{domain.name}", algorithm=algorithm)
    return row


async def _log(session: AsyncSession, actor: Actor | None, action: str, target: str, **details: object) -> None:
    if actor is not None:
        from mailwright.directory.tenants import log_action

        await log_action(session, actor, action, target, **details)


async def list_for_domain(session: AsyncSession, domain_id: str) -> list[DkimKeyRow]:
    q = select(DkimKeyRow).where(DkimKeyRow.domain_id == domain_id).order_by(DkimKeyRow.created_at)
    return list((await session.execute(q)).scalars())


async def retire(session: AsyncSession, domain_id: str, selector: str, *, actor: Actor | None = None) -> None:
    q = select(DkimKeyRow).where(DkimKeyRow.domain_id == domain_id, DkimKeyRow.selector == selector.lower())
    row = (await session.execute(q)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no DKIM key with selector {selector!r}", field="selector", value=selector)
    await session.delete(row)
    await _log(session, actor, "dkim.retire", f"{row.selector}", domain_id=domain_id)


async def signing_keys(session: AsyncSession, domain_name: str) -> list[DkimKey]:
    """Every active key of the domain, ready for `mailauth.dkim.dkim_sign`."""
    q = (
        select(DkimKeyRow)
        .join(Domain, Domain.id == DkimKeyRow.domain_id)
        .where(Domain.name == domain_name, DkimKeyRow.active.is_(True))
    )
    rows = (await session.execute(q)).scalars()
    return [DkimKey(domain=domain_name, selector=r.selector, algorithm=r.algorithm,  # type: ignore[arg-type]
                    private_key=r.private_key.encode("ascii")) for r in rows]
