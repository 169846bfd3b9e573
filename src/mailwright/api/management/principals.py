"""`/api/principal`: domains, individuals (mailboxes) and lists (aliases, forwarders).

A domain is a principal of type `domain` in this dialect (Stalwart's model); in Mailwright it is
a row of the domain service, so create/get/patch/delete dispatch on the type. `GET/PATCH/DELETE
/api/principal/{name}` look the name up as a principal (name or any of its addresses) first,
then as a domain of the tenant.

Listing: `types` (comma-separated, default all three), `filter` (substring of name/description),
`page` (1-based) and `limit` (page size; absent or 0 = everything). Items are sorted by type
(domains, individuals, lists, or the order given in `types`) and then name; `total` counts all
matches, not the page.

PATCH takes the guide's object form (`{"secrets": [...], "description": ...}`: each field is a
`set`) or Stalwart's list of changes (`[{"action": "set"|"addItem"|"removeItem", "field", "value"}]`).
Either form is applied atomically. Domains accept `description` and `catchAll` (an address of
the tenant that receives mail for unknown addresses, or null).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mailwright.api.auth import services
from mailwright.api.management.common import (
    RESPONSES,
    Caller,
    DialectError,
    Tenant,
    dialect_errors,
    json_body,
    query_int,
    reject_unknown,
    want_int,
    want_str,
    want_str_list,
)
from mailwright.directory import domains, principals
from mailwright.directory.errors import DirectoryError, NotFound
from mailwright.directory.principals import Change, PrincipalSpec
from mailwright.storage.models import Domain, Principal

router = APIRouter(prefix="/api", tags=["management: principals"], responses=RESPONSES)

TYPES = ("domain", "individual", "list")
_PRINCIPAL_FIELDS = {"type", "name", "secrets", "emails", "members", "description", "quota", "roles",
                     "externalMembers"}
_TOLERATED = frozenset({"id", "memberOf", "lists", "enabledPermissions", "disabledPermissions", "urls", "locale",
                        "picture", "usedQuota", "tenant"})
_DOMAIN_FIELDS = {"type", "name", "description"}
_PATCH_FIELDS = {"name", "secrets", "emails", "members", "description", "quota", "roles"}
_DOMAIN_PATCH_FIELDS = {"description", "catchAll"}

_CREATE_EXAMPLE = {
    "domain": {"summary": "a domain", "value": {"name": "example.com", "type": "domain"}},
    "individual": {"summary": "an account", "value": {
        "name": "agent@example.com", "type": "individual", "secrets": ["SecurePassword123!"],
        "emails": ["agent@example.com"], "description": "AI agent", "quota": 1073741824}},
    "list": {"summary": "an alias / forwarder", "value": {
        "name": "sales@example.com", "type": "list", "members": ["agent@example.com", "external@gmail.com"]}},
}


def _body_doc(examples: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object"}, "examples": examples}}}}


def domain_item(d: Domain) -> dict[str, Any]:
    return {"id": d.id, "type": "domain", "name": d.name, "description": d.description or "",
            "catchAll": None}


def principal_item(p: Principal, emails: list[str], members: list[str]) -> dict[str, Any]:
    """Stalwart's principal shape, minus secrets: passwords and hashes never leave the server."""
    item: dict[str, Any] = {"id": p.id, "type": p.type, "name": p.name, "description": p.description or "",
                            "emails": emails, "quota": p.quota_bytes, "usedQuota": p.used_bytes,
                            "roles": [p.role]}
    if p.type == "list":
        item["members"] = members
    return item


def _types(request: Request) -> list[str]:
    raw = request.query_params.get("types") or request.query_params.get("type") or ",".join(TYPES)
    wanted = [t.strip() for t in raw.split(",") if t.strip()]
    for t in wanted:
        if t not in TYPES:
            raise DialectError("unsupported", f"unsupported principal type {t!r}", field="types")
    return list(dict.fromkeys(wanted))


@router.get("/principal", summary="List domains, accounts and lists",
            description="`?types=domain|individual|list[,...]&filter=&page=&limit=` → "
                        "`{data: {items: [...], total: N}}`. Secrets are never returned.")
@dialect_errors
async def list_principals(request: Request, tenant: Tenant) -> JSONResponse:
    svc = services(request)
    types = _types(request)
    text = request.query_params.get("filter") or None
    if text is not None and ("\x00" in text or len(text) > 320):
        raise DialectError("invalid", "filter must be at most 320 characters, without NUL", field="filter")
    limit = query_int(request, "limit", 0) or None
    page = max(1, query_int(request, "page", 1) or 1)
    offset = (page - 1) * limit if limit else 0
    items: list[dict[str, Any]] = []
    total = 0
    async with svc.db.read() as s:
        for t in types:
            # Page across the concatenation: ask each type only for the slice that falls in it
            # (limit 1 and discard when the page is already full: only the count is wanted).
            left = None if limit is None else limit - len(items)
            local = {"filter_text": text, "offset": max(0, offset - total), "limit": left or 1}
            if left is None:
                local["limit"] = None
            if t == "domain":
                rows_d, n = await domains.list_domains(s, tenant, **local)  # type: ignore[arg-type]
                if left != 0:
                    items += [domain_item(d) for d in rows_d]
            else:
                rows_p, n = await principals.list_principals(s, tenant, [t], **local)  # type: ignore[arg-type]
                if left != 0 and rows_p:
                    info = await principals.describe(s, [p.id for p in rows_p])
                    items += [principal_item(p, *info[p.id]) for p in rows_p]
            total += n
    return JSONResponse({"data": {"items": items, "total": total}})


@router.post("/principal", summary="Create a domain, account (individual) or list (alias/forwarder)",
             description="Returns `{data: <id>}`. List `members` in this tenant's domains make an alias; "
                         "other addresses make a forwarder. 409 if the name or an address is taken.",
             openapi_extra=_body_doc(_CREATE_EXAMPLE))
@dialect_errors
async def create_principal(request: Request, tenant: Tenant, actor: Caller) -> JSONResponse:
    svc = services(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise DialectError("invalid", "request body must be a JSON object")
    ptype = want_str(body, "type", required=True)
    if ptype == "domain":
        reject_unknown(body, _DOMAIN_FIELDS, _TOLERATED)
        name = want_str(body, "name", required=True)
        description = want_str(body, "description")
        assert name is not None
        async with svc.db.write() as s:
            d = await domains.create_domain(s, tenant, name, description=description, actor=actor)
        return JSONResponse({"data": d.id})
    if ptype not in principals.PRINCIPAL_TYPES:
        raise DialectError("unsupported", f"unsupported principal type {ptype!r}", field="type")
    reject_unknown(body, _PRINCIPAL_FIELDS, _TOLERATED)
    members = (want_str_list(body, "members") or []) + (want_str_list(body, "externalMembers") or [])
    roles = want_str_list(body, "roles")
    spec = PrincipalSpec(
        type=ptype, name=want_str(body, "name", required=True), secrets=want_str_list(body, "secrets"),
        emails=want_str_list(body, "emails"), members=members or None, description=want_str(body, "description"),
        quota=want_int(body, "quota"), role=roles[0] if roles else None,
    )
    p = await principals.create_principal(svc.db, tenant, spec, password_min_length=svc.settings.password_min_length,
                                          actor=actor)
    return JSONResponse({"data": p.id})


async def _find(request: Request, tenant: str, name: str) -> Principal | Domain:
    svc = services(request)
    async with svc.db.read() as s:
        try:
            return await principals.get_principal(s, name, tenant)
        except NotFound:
            pass
        if "@" not in name:
            try:
                return await domains.get_domain(s, name, tenant)
            except DirectoryError:  # not found, or not a valid domain name: simply not found here
                pass
    raise NotFound(f"principal {name!r} not found", field="name", value=name)


@router.get("/principal/{name}", summary="Get a domain, account or list",
            description="`name` is the principal's name, one of its addresses, or a domain name.")
@dialect_errors
async def get_principal(name: str, request: Request, tenant: Tenant) -> JSONResponse:
    svc = services(request)
    obj = await _find(request, tenant, name)
    if isinstance(obj, Domain):
        item = domain_item(obj)
        async with svc.db.read() as s:
            if obj.catch_all_principal_id:
                target = await s.get(Principal, obj.catch_all_principal_id)
                item["catchAll"] = target.name if target else None
        return JSONResponse({"data": item})
    async with svc.db.read() as s:
        info = await principals.describe(s, [obj.id])
    return JSONResponse({"data": principal_item(obj, *info[obj.id])})


def _changes(body: Any, allowed: set[str]) -> list[Change]:
    if isinstance(body, dict):
        for key in body:
            if key not in allowed:
                raise DialectError("unsupported", f"field {key!r} cannot be changed", field=key)
        return [Change("set", k, v) for k, v in body.items()]
    if isinstance(body, list):
        out = []
        for item in body:
            if not isinstance(item, dict) or not isinstance(item.get("action"), str) \
                    or not isinstance(item.get("field"), str):
                raise DialectError("invalid", "each change must be {action, field, value}")
            extra = set(item) - {"action", "field", "value"}
            if extra:
                raise DialectError("unsupported", f"unsupported key {sorted(extra)[0]!r} in a change")
            if item["action"] not in ("set", "addItem", "removeItem"):
                raise DialectError("invalid", f"unknown action {item['action']!r}", field="action")
            if item["field"] not in allowed:
                raise DialectError("unsupported", f"field {item['field']!r} cannot be changed", field=item["field"])
            out.append(Change(item["action"], item["field"], item.get("value")))
        return out
    raise DialectError("invalid", "body must be an object of fields or a list of changes")


_PATCH_EXAMPLES = {
    "object": {"summary": "object form (the guide)", "value": {"secrets": ["NewSecurePassword456!"],
                                                               "description": "Updated AI agent"}},
    "changes": {"summary": "list of changes (Stalwart)", "value": [
        {"action": "addItem", "field": "emails", "value": "agent2@example.com"},
        {"action": "set", "field": "quota", "value": 2147483648}]},
}


@router.patch("/principal/{name}", summary="Update a domain, account or list",
              description="Object form or list of `{action: set|addItem|removeItem, field, value}` changes; "
                          "atomic. A new password works at once and the old one stops.",
              openapi_extra=_body_doc(_PATCH_EXAMPLES))
@dialect_errors
async def update_principal(name: str, request: Request, tenant: Tenant, actor: Caller) -> JSONResponse:
    svc = services(request)
    body = await json_body(request)
    obj = await _find(request, tenant, name)
    if isinstance(obj, Domain):
        changes = _changes(body, _DOMAIN_PATCH_FIELDS)
        kwargs: dict[str, Any] = {}
        for c in changes:
            if c.action != "set":
                raise DialectError("invalid", f"field {c.field!r} is not a list: use set", field=c.field)
            kwargs["catch_all" if c.field == "catchAll" else c.field] = c.value
        async with svc.db.write() as s:
            await domains.update_domain(s, tenant, obj.name, actor=actor, **kwargs)
        return JSONResponse({"data": None})
    changes = _changes(body, _PATCH_FIELDS)
    await principals.update_principal(svc.db, tenant, obj.name, changes,
                                      password_min_length=svc.settings.password_min_length, actor=actor)
    return JSONResponse({"data": None})


@router.delete("/principal/{name}", summary="Delete a domain, account or list",
               description="Deleting an account deletes its mail and frees its quota. Deleting a domain "
                           "deletes its accounts, aliases, forwarders, DKIM keys and mail.")
@dialect_errors
async def delete_principal(name: str, request: Request, tenant: Tenant, actor: Caller) -> Response:
    svc = services(request)
    obj = await _find(request, tenant, name)
    if isinstance(obj, Domain):
        await domains.delete_domain(svc, tenant, obj.name, actor=actor)
    else:
        await principals.delete_principal(svc, tenant, obj.name, actor=actor)
    return JSONResponse({"data": None})
