"""Normalising and validating domain names and addresses (IDNA, lowercase, RFC 5321 limits).

Everything stored is in canonical form: lowercase, domains as IDNA A-labels, so lookups are
plain equality and an address routes to one principal however a client spells it.
"""

from __future__ import annotations

import re

from mailwright.directory.errors import Invalid

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# Dot-atom local part (RFC 5322 atext); quoted local parts are refused on purpose: they are a
# classic relay-trick vector and no mailbox we create needs one.
_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


def normalize_domain(name: str, *, field: str = "name") -> str:
    if not isinstance(name, str):
        raise Invalid("domain name must be a string", field=field, value=name)
    raw = name.strip().rstrip(".").lower()
    if not raw:
        raise Invalid("domain name is empty", field=field, value=name)
    try:
        ascii_name = raw.encode("idna").decode("ascii")
    except UnicodeError:
        raise Invalid(f"invalid domain name: {name!r}", field=field, value=name) from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or len(labels) < 2 or not all(_LABEL.match(lbl) for lbl in labels):
        raise Invalid(f"invalid domain name: {name!r}", field=field, value=name)
    if labels[-1].isdigit():
        raise Invalid(f"invalid domain name: {name!r}", field=field, value=name)
    return ascii_name


def normalize_address(address: str, *, field: str = "email") -> str:
    if not isinstance(address, str):
        raise Invalid("address must be a string", field=field, value=address)
    raw = address.strip()
    if raw.startswith("<") and raw.endswith(">"):
        raw = raw[1:-1]
    if raw.count("@") != 1:
        raise Invalid(f"invalid email address: {address!r}", field=field, value=address)
    local, domain = raw.rsplit("@", 1)
    local = local.lower()
    if not local or len(local) > 64 or not _LOCAL.match(local):
        raise Invalid(f"invalid email address: {address!r}", field=field, value=address)
    return f"{local}@{normalize_domain(domain, field=field)}"


def split_address(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return local, domain
