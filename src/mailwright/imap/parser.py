"""Tokenising a command read by `protocol.read_command` into nested Python values.

Atoms are `str`, quoted strings and literals are `bytes`, parenthesised lists are `list`.
A fetch attribute such as ``BODY.PEEK[HEADER.FIELDS (A B)]<0.100>`` is one atom: inside
brackets spaces and parentheses do not split. Anything malformed raises `ParseError`, which the
session answers with BAD (the connection goes on).
"""

from __future__ import annotations

import re
from typing import Union

Token = Union[str, bytes, list["Token"]]  # noqa: UP007 - recursive alias

_LIT = re.compile(rb"~?\{(\d{1,20})\+?\}\r\n")
_ATOM_STOP = frozenset(b" ()\"\r\n")
MAX_DEPTH = 20


class ParseError(Exception):
    pass


class Tokenizer:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        d, p = self.data, self.pos
        return p >= len(d) or d[p : p + 2] == b"\r\n" or d[p : p + 1] == b"\n"

    def space(self) -> None:
        if self.data[self.pos : self.pos + 1] != b" ":
            raise ParseError("expected space")
        self.pos += 1

    def rest_tokens(self) -> list[Token]:
        out: list[Token] = []
        while not self.at_end():
            if out:
                self.space()
                if self.at_end():  # tolerate one trailing space, like Dovecot
                    break
            out.append(self.token(0))
        return out

    def token(self, depth: int) -> Token:
        d = self.data
        if self.pos >= len(d):
            raise ParseError("unexpected end")
        c = d[self.pos]
        if c == 0x28:  # (
            if depth >= MAX_DEPTH:
                raise ParseError("too deeply nested")
            self.pos += 1
            items: list[Token] = []
            while True:
                if self.pos >= len(d):
                    raise ParseError("unterminated list")
                if d[self.pos] == 0x29:
                    self.pos += 1
                    return items
                if items:
                    if d[self.pos] == 0x20:
                        self.pos += 1
                    elif not (d[self.pos] == 0x28 and isinstance(items[-1], list)):
                        raise ParseError("expected space")  # ")(" needs none, as in ENVELOPE
                items.append(self.token(depth + 1))
        if c == 0x22:  # "
            return self.quoted()
        if c in (0x7B, 0x7E):  # { or ~{
            m = _LIT.match(d, self.pos)
            if m is None:
                raise ParseError("bad literal")
            n = int(m.group(1))
            start = m.end()
            if start + n > len(d):
                raise ParseError("short literal")
            self.pos = start + n
            return d[start : start + n]
        return self.atom()

    def quoted(self) -> bytes:
        d = self.data
        i = self.pos + 1
        out = bytearray()
        while i < len(d):
            c = d[i]
            if c == 0x22:
                self.pos = i + 1
                return bytes(out)
            if c == 0x5C:
                i += 1
                if i >= len(d) or d[i] not in (0x22, 0x5C):
                    raise ParseError("bad escape in quoted string")
                out.append(d[i])
            elif c in (0x0D, 0x0A):
                raise ParseError("CR/LF in quoted string")
            else:
                out.append(c)
            i += 1
        raise ParseError("unterminated quoted string")

    def atom(self) -> str:
        """An atom; inside [...] spaces, parentheses, quoted strings and literals are kept (a
        literal is turned into a quoted string, e.g. ``BODY[HEADER.FIELDS ({7}\\r\\nSubject)]``)."""
        d = self.data
        i = self.pos
        start = i
        pieces: list[bytes] = []
        while i < len(d):
            c = d[i]
            if c == 0x5B:  # [ ... ]
                depth = 0
                while i < len(d):
                    ch = d[i]
                    if ch == 0x5B:
                        depth += 1
                    elif ch == 0x5D:
                        depth -= 1
                        if depth == 0:
                            break
                    elif ch in (0x7B, 0x7E):
                        m = _LIT.match(d, i)
                        if m is not None:
                            n = int(m.group(1))
                            body = d[m.end() : m.end() + n]
                            if len(body) < n:
                                raise ParseError("short literal")
                            pieces.append(d[start:i])
                            pieces.append(b'"' + body.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"')
                            i = m.end() + n
                            start = i
                            continue
                    elif ch in (0x0D, 0x0A):
                        raise ParseError("unterminated [")
                    i += 1
                if i >= len(d):
                    raise ParseError("unterminated [")
                i += 1
                continue
            if c in _ATOM_STOP or c < 0x20 or c == 0x7F:
                break
            i += 1
        pieces.append(d[start:i])
        if i == self.pos:
            raise ParseError("expected atom")
        self.pos = i
        return b"".join(pieces).decode("utf-8", "surrogateescape")

    def word(self) -> str:
        """A tag or command name: an atom without brackets."""
        d = self.data
        i = self.pos
        while i < len(d) and d[i] not in _ATOM_STOP and d[i] > 0x20 and d[i] != 0x7F:
            i += 1
        if i == self.pos:
            raise ParseError("expected word")
        w = d[self.pos : i].decode("utf-8", "surrogateescape")
        self.pos = i
        return w


def split_command(data: bytes) -> tuple[str, str, list[Token]]:
    """(tag, COMMAND upper-cased, arguments). Raises ParseError with the tag attached when known."""
    t = Tokenizer(data)
    tag = t.word()
    if any(ch in tag for ch in "{%*+\\") or not all(0x21 <= ord(ch) <= 0x7E for ch in tag):
        raise ParseError("bad tag")
    t.space()
    name = t.word().upper()
    if name == "UID":
        t.space()
        name = "UID " + t.word().upper()
    if not t.at_end():
        t.space()
    args = t.rest_tokens()
    return tag, name, args


def astring(tok: Token) -> str:
    """An astring argument as text (UTF-8; raw 8-bit kept via surrogateescape)."""
    if isinstance(tok, bytes):
        return tok.decode("utf-8", "surrogateescape")
    if isinstance(tok, str):
        if tok.upper() == "NIL" or "[" in tok and not tok.endswith("]"):
            return tok
        return tok
    raise ParseError("expected a string")


def atom(tok: Token) -> str:
    if not isinstance(tok, str):
        raise ParseError("expected an atom")
    return tok


def number(tok: Token, *, nz: bool = False) -> int:
    if not isinstance(tok, str) or not tok.isdigit() or len(tok) > 20:
        raise ParseError("expected a number")
    n = int(tok)
    if nz and n == 0 or n > 0xFFFFFFFFFFFFFFFF:
        raise ParseError("number out of range")
    return n


def as_list(tok: Token) -> list[Token]:
    if not isinstance(tok, list):
        raise ParseError("expected a parenthesised list")
    return tok
