"""`mailwright tenant create|list|show|limits`: tenants from the command line.

`create NAME` makes a tenant with its default workspace and prints its `tk_` master key alone on
the last line (shown once; only its hash is stored).

`limits NAME --max-domains N --max-mailboxes N` sets a tenant's (or a reseller's) plan limits,
enforced by `directory.limits` on every creation path; 0 = unlimited, an option left out keeps
its value, and with neither it just prints them. These are Mailwright's own operator controls:
none of the reference dialects exposes them, so only the operator (this CLI, or the platform key
on `/api/admin/tenants`) may change them, never a tenant's own key. Lowering a limit below what
is in use deletes nothing (`directory.limits`); the command says so, as a plan downgrade should
be a visible decision. Each change is written to the tenant's audit log ("platform (cli)").

`list` and `show` print limits as used/limit (`domains=3/10 mailboxes=7/unlimited`), counted as
they are enforced: a reseller's over itself and its sub-tenants.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir, fail, run_with_services, settings_from
from mailwright.directory import limits, tenants, workspaces
from mailwright.directory.errors import DirectoryError
from mailwright.directory.limits_usage import LimitsUsage, usage
from mailwright.directory.tenants import Actor, bytes_to_gb
from mailwright.services import Services
from mailwright.storage.models import Tenant

app = typer.Typer(no_args_is_help=True, help="Tenants")

TenantName = Annotated[str, typer.Argument(help="Tenant (or reseller) name or id")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of text")]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Tenant name (unique)")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Create a tenant and print its tenant master key (tk_...) on the last line."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> tuple[str, str]:
        try:
            async with svc.db.write() as s:
                t, _ws, key = await workspaces.create_tenant(s, name)
                return t.id, key
        except DirectoryError as exc:
            fail(exc.message)

    tenant_id, key = run_with_services(settings, go)
    print(f"tenant {name} created (id {tenant_id}); its tenant master key, shown once:")
    print(key)


@dataclass(frozen=True)
class TenantView:
    id: str
    name: str
    kind: str
    status: str
    parent: str | None  # the reseller's name
    quota_gb: float | int
    limits: LimitsUsage

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "status": self.status,
                "parent": self.parent, "quota_gb": self.quota_gb, **self.limits.as_dict()}

    def line(self) -> str:
        return (f"{self.name}\t{self.id}\t{self.kind}\t{self.status}\treseller={self.parent or '-'}\t"
                + self.limits.text().replace(" ", "\t"))

    def text(self) -> str:
        u = self.limits
        scope = " with its sub-tenants" if self.kind == "reseller" else ""
        return "\n".join([
            f"name: {self.name}", f"id: {self.id}", f"kind: {self.kind}", f"status: {self.status}",
            f"reseller: {self.parent or '-'}", f"quota: {f'{self.quota_gb} GB' if self.quota_gb else 'unlimited'}",
            f"max domains: {u.max_domains or 'unlimited'} ({u.domains} in use{scope})",
            f"max mailboxes: {u.max_mailboxes or 'unlimited'} ({u.mailboxes} in use{scope})",
        ])


async def _view(s: AsyncSession, t: Tenant, parent: str | None) -> TenantView:
    return TenantView(t.id, t.name, t.kind, t.status, parent, bytes_to_gb(t.quota_bytes), await usage(s, t))


async def _describe(svc: Services, ident: str) -> TenantView:
    async with svc.db.read() as s:
        try:
            t = await tenants.get_tenant(s, ident)
        except DirectoryError as exc:
            fail(exc.message)
        parent = await s.get(Tenant, t.parent_id) if t.parent_id else None
        return await _view(s, t, parent.name if parent else None)


@app.command("list")
def list_command(
    as_json: JsonOut = False, data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None,
) -> None:
    """Tenants and resellers (not terminated) with their limits as used/limit."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> list[TenantView]:
        async with svc.db.read() as s:
            rows = await workspaces.list_tenants(s)
            names = {t.id: t.name for t in rows}
            return [await _view(s, t, names.get(t.parent_id, t.parent_id) if t.parent_id else None) for t in rows]

    views = run_with_services(settings, go)
    if as_json:
        print(json.dumps([v.as_dict() for v in views], indent=2))
        return
    for v in views:
        print(v.line())


@app.command("show")
def show_command(
    name: TenantName, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """One tenant (or reseller): kind, status, quota, and its limits with current usage."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)
    view = run_with_services(settings, lambda svc: _describe(svc, name))
    print(json.dumps(view.as_dict(), indent=2) if as_json else view.text())


@app.command("limits")
def limits_command(
    name: TenantName,
    max_domains: Annotated[int | None, typer.Option("--max-domains", help="Domain limit (0 = unlimited)")] = None,
    max_mailboxes: Annotated[int | None, typer.Option("--max-mailboxes",
                                                      help="Mailbox limit (0 = unlimited)")] = None,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Set a tenant's (or reseller's) max domains / max mailboxes; with neither, print them."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> TenantView:
        if max_domains is not None or max_mailboxes is not None:
            try:
                async with svc.db.write() as s:
                    t = await tenants.get_tenant(s, name)
                    before = (t.max_domains, t.max_mailboxes)
                    t = await limits.set_limits(s, t.id, max_domains=max_domains, max_mailboxes=max_mailboxes)
                    changes = {k: v for k, v in (("max_domains", max_domains), ("max_mailboxes", max_mailboxes))
                               if v is not None}
                    if (t.max_domains, t.max_mailboxes) != before:
                        await tenants.log_action(s, Actor(log_tenant_id=t.id, name="platform (cli)"),
                                                 "tenant.limits", t.name, **changes)
            except DirectoryError as exc:
                field = exc.field or ""  # name the option, not the column
                fail(exc.message.replace(field, "--" + field.replace("_", "-")) if field.startswith("max_")
                     else exc.message)
        return await _describe(svc, name)

    view = run_with_services(settings, go)
    if as_json:
        print(json.dumps(view.as_dict(), indent=2))
        return
    print(view.text())
    u = view.limits
    for what, used, limit in (("domains", u.domains, u.max_domains), ("mailboxes", u.mailboxes, u.max_mailboxes)):
        if limit and used > limit:
            print(f"note: {used} {what} in use, over the new limit of {limit}: nothing is removed, "
                  f"new ones are refused until it is below the limit")
