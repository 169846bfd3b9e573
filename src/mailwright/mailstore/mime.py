"""Parse a message once at delivery, and keep what IMAP/JMAP/REST need as ready-to-send text.

Why this module exists
----------------------
A 10,000-message IMAP sync must be string joins, never re-parsing.  So at delivery we compute
ENVELOPE, BODYSTRUCTURE and BODY exactly as they go on the wire, plus the decoded bits that JMAP,
REST, SORT/THREAD and SEARCH need.  The answers must be what Dovecot 2.3 sends, byte for byte,
because clients (and our conformance tests) compare us against it.  ``tests/data/mime`` holds a
corpus, the answers of a real Dovecot 2.3.19.1 for every message (``dovecot_golden.json``, made
by ``make_golden.py``) and a differential fuzzer against Dovecot (``diff_fuzz.py``).

Why not just ``email.message_from_bytes``
-----------------------------------------
IMAP sizes, line counts and ``BODY[section]`` byte ranges are defined on the raw octets, with
quirks the ``email`` package does not reproduce (and cannot: it re-serialises).  So the part tree
is built by our own scan over the raw bytes, emulating Dovecot's ``message-parser.c``; the
``email`` package is not used at all (its header decoding is slow and raises on junk, so RFC 2047
and charsets are decoded here too, best effort).  The rules that matter:

* A boundary line is any line that *starts* with ``--`` + an active boundary (of this multipart or
  any ancestor, at most 80 chars); the longest match wins, on a tie the innermost.  Trailing
  garbage on the line is ignored; a boundary line without LF at EOF starts no part.
* The CRLF before a boundary line belongs to the boundary, not to the part before it.  If that
  CRLF ends a *header* (a part with no body, or a header never terminated by a blank line), the
  header loses it and the immediate parent's body keeps it -- visible as an off-by-two in
  ``message/rfc822`` sizes that Dovecot really sends (corpus 27 and 37).
* After a close delimiter (``--b--``) the boundary is no longer active; text up to the next
  ancestor boundary is epilogue (an empty epilogue keeps the close line's CRLF).
* A multipart without boundary, or whose boundary never shows up, has no children; BODYSTRUCTURE
  then shows Dovecot's placeholder ``("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)``.
  Nesting stops at 100 levels: deeper multiparts show as application/octet-stream.
* ``message/rfc822`` bodies are parsed as messages whatever their Content-Transfer-Encoding;
  children of ``multipart/digest`` default to ``message/rfc822``.
* Content-* headers only count in a MIME part: inside a multipart, or with MIME-Version or
  Content-Type.  Content-Type/ID/Description/MD5/Location: the first wins; the first *valid*
  Content-Transfer-Encoding wins; Content-Disposition is re-read until one has parameters.  Broken
  Content-Types keep what Dovecot keeps (``text`` -> ``("text" "")``, ``a:b`` -> ``("" "")``).
* ENVELOPE: the last Date/Subject/Message-ID/In-Reply-To wins, repeated address headers are
  concatenated; addresses are parsed like ``message-address.c`` (groups, routes, comments as
  names, MISSING_MAILBOX/MISSING_DOMAIN/SYNTAX_ERROR, and everything after unparsable junk
  dropped); RFC 2047 words stay encoded.  Subject and display names are written like
  ``imap_append_string_for_humans`` (whitespace collapsed, a literal whenever that changed
  anything or the text has ``"``, ``\\`` or 8-bit); other strings like ``imap_append_nstring``
  (quoted, literal for 8-bit or more than 4 escapes).

Sizes are Dovecot's "virtual" sizes: a bare LF counts as CRLF, and CR CR LF as CRLF (Dovecot
saves with LF line ends, so a doubled CR loses one CR for good; see ``_normalize``).  Messages
arrive CRLF-normalised by SMTP, so for stored messages this is usually the raw size; for anything
else (IMAP APPEND of an LF-only file, the corpus) we normalise first, and
``fetch_section``/``fetch_binary`` return the same normalised bytes, so BODYSTRUCTURE sizes always
equal the fetched lengths.

The sent date SORT and SEARCH use is the *first* Date: header parsed like ``message-date.c``
(``message_date``), and the SORT/THREAD base subject comes from the *first* Subject: header
(undecodable 8-bit as U+FFFD), as Dovecot's index-sort/thread read them; ENVELOPE and the display
subject use the last header, as Dovecot's ENVELOPE does.

IMAP strings in ``ParsedMessage`` are ``str``.  Raw 8-bit header bytes are decoded as UTF-8 with
``surrogateescape``; encode with ``encode("utf-8", "surrogateescape")`` to get the exact wire
octets (literal lengths ``{n}`` are already counted in those octets).

Known deviations from Dovecot 2.3.19 (all deliberate or untestable):

* ``fetch_section`` returns None for a part that does not exist (and for HEADER/TEXT of a part
  that is not message/rfc822); Dovecot sends ``""`` there -- the IMAP layer should do the same.
* ``fetch_binary(check=True)`` (IMAP BINARY) raises UndecodableContent where Dovecot answers
  ``NO [PARSE]``; without ``check`` (downloads) corrupt base64/quoted-printable is decoded
  leniently.  BINARY.SIZE should be ``len(fetch_binary())``: Dovecot's own BINARY.SIZE disagrees
  with its BINARY[] for a base64 message/rfc822 part and for multiparts with encoded parts, and
  fails for a part when another part is corrupt.
* Dovecot's BODY can differ from a fresh parse when it is derived from a cached BODYSTRUCTURE in
  the same session (seen with broken Content-Type parameters); we always answer the fresh-parse
  form.  (NUL is emulated: U+FFFD in ENVELOPE/BODYSTRUCTURE strings, 0x80 in BODY[].)

Nothing in here raises on any input: ``parse_message`` falls back to a minimal structure if a bug
is ever hit, because a delivery must never fail on a weird message.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property

__all__ = [
    "Attachment",
    "ParsedMessage",
    "UndecodableContent",
    "fetch_binary",
    "fetch_section",
    "message_date",
    "parse_message",
    "quote_imap_string",
    "virtual_size",
]


@dataclass(frozen=True)
class Attachment:
    """A non-body leaf part (or an attached message).  ``part`` is its IMAP section number."""

    index: int
    filename: str | None
    content_type: str
    size: int
    part: str


@dataclass(frozen=True)
class ParsedMessage:
    """Everything stored beside a message blob at delivery (see module docstring).

    ``search_text`` layout (imap.session relies on it to tell header text from body text):
    decoded Subject, from_display, then the decoded To and Cc headers that are present, then the
    text of the text/plain and (tag-stripped) text/html parts, attachment names and the subjects
    of attached messages -- joined with "\\n"."""

    envelope: str
    bodystructure: str
    body: str
    header_size: int
    subject: str
    base_subject: str
    from_addr: str
    from_display: str
    to_addrs: list[str]
    cc_addrs: list[str]
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    sent_date: datetime | None
    preview: str
    text_crlf: str | None  # the text/plain parts as decoded, CRLF line ends (see text_body)
    html_crlf: str | None
    attachments: list[Attachment]
    search_text: str
    vsize: int  # RFC822.SIZE = len(_normalize(raw)) = virtual_size(raw), without counting again

    # The bodies with LF line ends, made only when asked for (the API's reads): delivery needs
    # only the search text and the preview, which do not care (~0.2 ms per 100 KiB saved).
    @cached_property
    def text_body(self) -> str | None:
        return _lf(self.text_crlf)

    @cached_property
    def html_body(self) -> str | None:
        return _lf(self.html_crlf)


def _lf(text: str | None) -> str | None:
    return None if text is None else "\n".join(text.split("\r\n"))  # 30% faster than replace()


# --------------------------------------------------------------------------------------------
# Limits (Dovecot's message_parser defaults) -- also what keeps recursion bounded.
MAX_NESTED_PARTS = 100
MAX_TOTAL_PARTS = 10000
BOUNDARY_MAX_LEN = 80  # Dovecot: 70 (RFC 2046) + 10
PREVIEW_LEN = 256
MAX_DECODE = 4 * 1024 * 1024  # never decode more than this per text part for bodies/search

_BARE_LF = re.compile(rb"(?<!\r)\n")
_CR_CR_LF = re.compile(rb"\r(?=\r\n)")


def _normalize(raw: bytes, crlf: bool = False) -> bytes:
    """The message as Dovecot serves it: bare LF -> CRLF, and one CR dropped from every run of
    two or more CRs before an LF (``CR CR LF`` -> ``CR LF``).  Dovecot stores messages with LF
    line ends (``mail_save_crlf = no``: the CR of each CRLF is dropped on save) and adds a CR
    before every LF not already preceded by one when serving, so a doubled CR loses one CR for
    good; lone CRs elsewhere are kept.  A no-op (no copy) for clean CRLF input."""
    if crlf:  # the caller knows every LF follows a CR: two scans of the bytes saved
        return _CR_CR_LF.sub(b"", raw) if b"\r\r\n" in raw else raw
    n = raw.count(b"\n")
    if n == 0:
        return raw
    if n == raw.count(b"\r\n"):
        return _CR_CR_LF.sub(b"", raw) if b"\r\r\n" in raw else raw
    out = _BARE_LF.sub(b"\r\n", raw)
    return _CR_CR_LF.sub(b"", out) if b"\r\r\n" in out else out


def virtual_size(raw: bytes) -> int:
    """RFC822.SIZE: ``len(_normalize(raw))`` without building it (a bare LF counts 2, ``CR CR LF``
    counts 2, as Dovecot counts them)."""
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n") - raw.count(b"\r\r\n")


def _s(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _wire(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------------------------
# IMAP quoting (imap-quote.c)


def _literal(b: bytes) -> str:
    return f"{{{len(b)}}}\r\n" + _s(b)


_NL_DROP_RE = re.compile(r"[\r\n](?=[ \t\r\n]|\Z)")
_NL_SPACE_RE = re.compile(r"[\r\n]")
_QSAFE_RE = re.compile(r"[\x01-\x09\x0b\x0c\x0e-\x21\x23-\x5b\x5d-\x7f]*")


def _nstring(s: str | None) -> str:
    """``imap_append_nstring_nolf``: CR/LF removed; quoted unless 8-bit/NUL or >4 escapes."""
    if s is None:
        return "NIL"
    if _QSAFE_RE.fullmatch(s):
        return '"' + s + '"'
    if "\r" in s or "\n" in s:
        # remove_newlines_and_append: a CR/LF before whitespace, CR/LF or the end is dropped
        # (folds), any other becomes a space
        s = _NL_SPACE_RE.sub(" ", _NL_DROP_RE.sub("", s))
    if "\x00" in s:
        s = s.replace("\x00", "\ufffd")  # Dovecot sends NUL in header values as U+FFFD
    if s.isascii():
        esc = s.count('"') + s.count("\\")
        if esc == 0:
            return '"' + s + '"'
        if esc <= 4:
            return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _literal(_wire(s))


_HUMAN_SPECIAL = re.compile(r'[\x00\t\r\n"\\]|^ | $|  |[^\x00-\x7f]')
_HUMAN_WS = re.compile(rb"[\t\r\n ]+")


def _human(s: str | None) -> str:
    """``imap_append_string_for_humans`` (Subject and address names): whitespace collapsed, and
    sent as a literal whenever anything had to change or the text has quotes/backslash/8-bit."""
    if s is None:
        return "NIL"
    if not _HUMAN_SPECIAL.search(s):
        return '"' + s + '"'
    b = _HUMAN_WS.sub(b" ", _wire(s).replace(b"\x00", "\ufffd".encode())).strip(b" ")
    if not b:
        return '""'
    return _literal(b)


def quote_imap_string(s: str | bytes | None) -> str:
    """IMAP string as Dovecot writes it: ``"..."`` with ``\\`` escapes when safe, else a literal
    ``{n}\\r\\n...`` (CR, LF, 8-bit, or more than 4 escapes); NUL becomes U+FFFD; ``NIL`` for None.  For ``str``
    with surrogate escapes the literal carries the original bytes."""
    if s is None:
        return "NIL"
    if isinstance(s, bytes):
        s = _s(s)
    if "\x00" in s:
        s = s.replace("\x00", "\ufffd")  # as Dovecot does for header-derived strings
    if s.isascii() and "\r" not in s and "\n" not in s:
        esc = s.count('"') + s.count("\\")
        if esc == 0:
            return '"' + s + '"'
        if esc <= 4:
            return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _literal(_wire(s))


# --------------------------------------------------------------------------------------------
# Headers


def _value_start(v: bytes) -> bytes:
    """The blanks after the colon go (SKIP_INITIAL_LWSP), except when the first line holds only
    blanks: then only the first one goes (message-header-parser.c)."""
    s = v.lstrip(b" \t")
    if s[:1] in (b"", b"\n") and v[:1] in (b" ", b"\t"):
        return v[1:]
    return s


def _header_fields(block: bytes, drop_cr: bool = False) -> list[tuple[str, bytes]]:  # also imap.session
    """Logical header fields of a header block (without its blank line): (lowercase name, value).

    A CR left before a line end (CR CR LF after _normalize) stays in the value, as Dovecot's
    header parser keeps it; ``drop_cr`` drops one more, as Dovecot's top-level ENVELOPE shows
    (it reads that header through one more CRLF -> LF pass: "Subject: x" CR CR CR LF as
    received is "x" there, with four CRs a literal; checked for 2..6 CRs).

    Value = text after the colon with leading LWSP skipped, continuation lines appended after a
    bare ``\n`` (Dovecot's full_value: CR dropped, LF kept -- it matters, because Subject and
    address names go through imap_append_string_for_humans, which turns a fold into a literal).
    Lines without a colon are kept with an empty name so continuation lines after them are not
    glued to the previous field."""
    out: list[tuple[str, bytes]] = []
    if not block:
        return out
    if b"\r\r" not in block and not block.endswith(b"\r") and block[:1] not in (b" ", b"\t"):
        # fast path: unfold first (fold -> "\n" + WSP), then one split per logical field
        for field in block.replace(b"\r\n ", b"\n ").replace(b"\r\n\t", b"\n\t").split(b"\r\n"):
            i = field.find(b":")
            if i < 0 or b"\n" in field[:i]:
                out.append(("", b""))
                continue
            out.append((field[:i].rstrip(b" \t").lower().decode("latin-1"), _value_start(field[i + 1 :])))
        return out
    for line in block.split(b"\r\n"):
        if drop_cr and line.endswith(b"\r"):
            line = line[:-1]
        if line[:1] in (b" ", b"\t"):
            if out and out[-1][0]:
                name, val = out[-1]
                out[-1] = (name, val + b"\n" + line)
            continue
        i = line.find(b":")
        if i < 0:
            out.append(("", b""))
            continue
        out.append((line[:i].rstrip(b" \t").lower().decode("latin-1"), _value_start(line[i + 1 :])))
    return out


# --------------------------------------------------------------------------------------------
# RFC 822 tokenising for Content-* values (rfc822-parser.c)


_TOKEN_RE = re.compile(r'[^\x00-\x20()<>@,;:\\"/\[\]?=\x7f]*')
_ATEXT_ASCII = frozenset("!#$%&'*+-/=?^_`{|}~ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ATEXT_RUN = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\x80-\U0010ffff]*")
_ATEXT_DOT_RUN = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.\x80-\U0010ffff]*")


def _atext(c: str) -> bool:
    return c in _ATEXT_ASCII or c >= "\x80"


class _Rfc822:
    """The primitives of Dovecot's rfc822-parser.c over a str.  Return codes as Dovecot's:
    -1 error, 0 end of input, 1 more input follows.  ``comment`` is the last comment seen."""

    __slots__ = ("s", "i", "n", "comment")

    def __init__(self, s: str, i: int = 0) -> None:
        self.s = s
        self.i = i
        self.n = len(s)
        self.comment = ""

    def cur(self) -> str:
        return self.s[self.i] if self.i < self.n else "\x00"

    # ---- rfc822-parser primitives
    def skip_comment(self) -> int:
        """At '('.  The text is kept in ``comment`` (reset first); a fold (LF) inside a comment
        is dropped, and an unterminated comment keeps only the text before its last fold or
        quoted-pair (``rfc822_skip_comment``)."""
        s, n = self.s, self.n
        level, i = 1, self.i + 1
        start, buf = i, []
        self.comment = ""
        while i < n:
            c = s[i]
            if c == "(":
                level += 1
            elif c == ")":
                level -= 1
                if level == 0:
                    buf.append(s[start:i])
                    self.comment = "".join(buf)
                    self.i = i + 1
                    return 1 if self.i < n else 0
            elif c == "\n":
                buf.append(s[start:i].removesuffix("\r"))
                self.comment = "".join(buf)
                start = i + 1
            elif c == "\\":
                if i + 1 >= n:
                    self.i = n
                    return -1
                if s[i + 1] not in "\r\n\x00":  # obs-qp: a backslash before CR/LF/NUL is text
                    buf.append(s[start:i])
                    self.comment = "".join(buf)  # an unterminated comment keeps this much
                    start = i + 1
                    i += 1
            i += 1
        self.i = n
        return -1

    def skip_lwsp(self) -> int:
        s, n = self.s, self.n
        while self.i < n:
            c = s[self.i]
            if c in " \t\r\n":
                self.i += 1
                continue
            if c != "(":
                break
            if self.skip_comment() < 0:
                return -1
        return 1 if self.i < n else 0

    def dot_atom(self, out: list[str], domain: bool) -> int:
        if self.i >= self.n or not _atext(self.s[self.i]):
            return -1
        while True:
            j = _ATEXT_RUN.match(self.s, self.i).end()  # type: ignore[union-attr]
            out.append(self.s[self.i : j])
            self.i = j
            if j >= self.n:
                return 0
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            if self.s[self.i] != ".":
                return 1
            self.i += 1
            out.append(".")
            ret = self.skip_lwsp()
            if domain and (ret == 0 or (ret > 0 and not _atext(self.s[self.i]))):
                return -1  # a domain may not end with "." (Dovecot 2.3: x@y.z. -> MISSING_DOMAIN)
            if ret <= 0:
                return ret

    def atom_or_dot(self, out: list[str]) -> int:
        j = _ATEXT_DOT_RUN.match(self.s, self.i).end()  # type: ignore[union-attr]
        out.append(self.s[self.i : j])
        self.i = j
        if j >= self.n:
            return 0
        return self.skip_lwsp()

    def quoted_string(self, out: list[str]) -> int:
        s, n = self.s, self.n
        i = self.i + 1
        start = i
        while i < n:
            c = s[i]
            if c == '"':
                out.append(s[start:i])
                self.i = i + 1
                return self.skip_lwsp()
            if c == "\n":
                out.append(s[start:i].removesuffix("\r"))
                start = i + 1
            elif c == "\\":
                i += 1
                if i >= n:
                    self.i = n
                    return -1
                out.append(s[start : i - 1])
                start = i
            i += 1
        self.i = n
        return -1

    def phrase(self, out: list[str]) -> int:
        if self.i >= self.n:
            return 0
        if self.s[self.i] == ".":
            return -1
        while True:
            ret = self.quoted_string(out) if self.s[self.i] == '"' else self.atom_or_dot(out)
            if ret <= 0:
                return ret
            c = self.cur()
            if not _atext(c) and c != '"' and c != ".":
                break
            out.append(" ")
        return self.skip_lwsp()

    def domain_part(self, out: list[str]) -> int:
        """At '@'."""
        self.i += 1
        if self.skip_lwsp() <= 0:
            return -1
        if self.s[self.i] == "[":
            s, n = self.s, self.n
            start = i = self.i
            while i < n:
                if s[i] == "\\":
                    i += 1
                    if i >= n:
                        break
                elif s[i] == "]":
                    lit = s[start : i + 1]
                    # a fold inside the literal loses its line break (CR LF), keeps its blank
                    out.append(lit.replace("\r\n", "").replace("\n", "") if "\n" in lit else lit)
                    self.i = i + 1
                    return self.skip_lwsp()
                i += 1
            self.i = n
            return -1
        return self.dot_atom(out, True)

    def mime_token(self) -> tuple[str, int]:
        j = _TOKEN_RE.match(self.s, self.i).end()  # type: ignore[union-attr]
        tok = self.s[self.i : j]
        self.i = j
        return tok, (0 if j >= self.n else self.skip_lwsp())


def _content_type(value: str) -> tuple[str, str | None, list[tuple[str, str]], bool]:
    """(type, subtype or None, params, ok) like Dovecot 2.3: case kept as given.  A broken value
    keeps what could be parsed ("text" alone -> type "text"; "junk: x" -> type "") and gets
    no parameters."""
    m = _FAST_CT_RE.match(value)
    if m is not None and (m.end() >= len(value) or value[m.end()] == ";"):
        return m.group(1), m.group(2), _params(value, m.end()), True
    p = _Rfc822(value)
    if p.skip_lwsp() <= 0:
        return "", None, [], False
    typ, ret = p.mime_token()
    if ret <= 0 or not typ:
        return typ, None, [], False  # a type running to the end is kept ("text" -> "text" "")
    if p.cur() != "/":
        return "", None, [], False
    p.i += 1
    if p.skip_lwsp() <= 0:
        return "", None, [], False
    sub, ret = p.mime_token()
    if ret < 0 or not sub or (p.i < p.n and p.s[p.i] != ";"):
        return "", None, [], False  # anything but parameters after the subtype: all invalid
    return typ, sub, _params(value, p.i), True


_TOK = r'[^\x00-\x20()<>@,;:\\"/\[\]?=\x7f]+'
_FAST_PARAM_RE = re.compile(
    r"[ \t\n]*;[ \t\n]*(" + _TOK + r')[ \t\n]*=[ \t\n]*(?:"((?:[^"\\\r\n]|\\.)*)"|(' + _TOK + r"))[ \t\n]*"
)
_FAST_CT_RE = re.compile(r"[ \t\n]*(" + _TOK + r")[ \t\n]*/[ \t\n]*(" + _TOK + r")[ \t\n]*")
_UNESCAPE_RE = re.compile(r"\\(.)")


def _content_param(p: _Rfc822) -> tuple[int, str, str]:
    """``rfc822_parse_content_param``: one ``; key=value``.  (ret, key, value)."""
    if p.i >= p.n:
        return 0, "", ""
    if p.s[p.i] != ";":
        return -1, "", ""
    p.i += 1
    if p.skip_lwsp() <= 0:
        return -1, "", ""
    key, ret = p.mime_token()
    if ret <= 0 or p.s[p.i] != "=":
        return -1, "", ""
    p.i += 1
    ret = p.skip_lwsp()
    if ret <= 0:
        value = ""  # broken / no value
    elif p.s[p.i] == '"':
        buf: list[str] = []
        ret = p.quoted_string(buf)
        value = "".join(buf)
    elif p.s[p.i] == "=":
        # Dovecot's workaround for name==?utf-8?b?...?=
        j = p.i
        while j < p.n and p.s[j] not in "; \t\r\n":
            j += 1
        value, p.i = p.s[p.i : j], j
    else:
        value, ret = p.mime_token()
    return (-1 if ret < 0 else 1), key, value


def _params(s: str, i: int) -> list[tuple[str, str]]:
    """``rfc2231_parse``: ``; key=value`` pairs (a broken one is skipped one character at a time,
    as Dovecot does), then RFC 2231 continuations merged and appended after the plain ones."""
    # fast path: well-formed, comment-free parameters without RFC 2231 syntax
    fast: list[tuple[str, str]] = []
    j, n = i, len(s)
    while j < n:
        m = _FAST_PARAM_RE.match(s, j)
        if m is None:
            break
        q = m.group(2)
        fast.append((m.group(1), m.group(3) if q is None else (_UNESCAPE_RE.sub(r"\1", q) if "\\" in q else q)))
        j = m.end()
    if j >= n and not any("*" in k for k, _ in fast):
        return fast
    plain: list[tuple[str, str]] = []
    ext: list[tuple[str, int, bool, str]] = []
    p = _Rfc822(s, i)
    while True:
        ret, key, val = _content_param(p)
        if ret == 0:
            break
        if ret < 0:
            if p.i >= p.n:
                break
            p.i += 1
            continue
        star = key.find("*")
        if star >= 0:
            k, idx = star, 0
            if k + 1 < len(key):
                k += 1
                while k < len(key) and key[k] in "0123456789":
                    idx = idx * 10 + ord(key[k]) - 48
                    k += 1
            extended = k < len(key) and key[k] == "*"
            if extended:
                k += 1
            if k == len(key):
                ext.append((key[:star], idx, extended, val))
                continue
        plain.append((key, val))
    if ext:
        ext.sort(key=lambda t: (t[0].lower(), t[1]))
        k = 0
        while k < len(ext):
            j = k
            ok = True
            have_ext = False
            nxt = 0
            while j < len(ext) and ext[j][0].lower() == ext[k][0].lower():
                if ext[j][1] != nxt:
                    ok = False
                have_ext = have_ext or ext[j][2]
                nxt += 1
                j += 1
            if not ok:
                for x in range(k, j):
                    kk, idx, e, v = ext[x]
                    plain.append((f"{kk}*{idx}*" if e else f"{kk}*{idx}", v))
            else:
                parts: list[str] = []
                if not ext[k][2] and have_ext:
                    parts.append("''")
                for x in range(k, j):
                    v = ext[x][3]
                    if not ext[x][2] and have_ext:
                        v = v.replace("%", "%25")  # Dovecot's rfc2231_escape only escapes '%'
                    parts.append(v)
                plain.append((ext[k][0] + ("*" if have_ext else ""), "".join(parts)))
            k = j
    return plain


def _disposition(value: str) -> tuple[str, list[tuple[str, str]]] | None:
    """Dovecot keeps even an empty disposition token (sent as ``("" NIL)``)."""
    p = _Rfc822(value)
    p.skip_lwsp()
    tok, ret = p.mime_token()
    if ret < 0:
        return None
    return tok, _params(value, p.i)


def _languages(value: str) -> list[str] | None:
    """``parse_content_language``: atoms separated by ","; an atom followed by an unterminated
    comment is not taken, and the list stops there."""
    p = _Rfc822(value)
    if p.skip_lwsp() <= 0:
        return None
    langs: list[str] = []
    while True:
        if p.i >= p.n or not _atext(p.s[p.i]):
            break
        j = _ATEXT_RUN.match(p.s, p.i).end()  # type: ignore[union-attr]
        tok = p.s[p.i : j]
        p.i = j
        if j < p.n and p.skip_lwsp() < 0:
            break
        langs.append(tok)
        if p.i >= p.n or p.s[p.i] != ",":
            break
        p.i += 1
        if p.skip_lwsp() <= 0:
            break
    return langs or None


# --------------------------------------------------------------------------------------------
# Addresses: a re-implementation of the behaviour of Dovecot's message-address.c (FILL_MISSING)
# on top of its rfc822-parser.c primitives.  Return codes follow Dovecot's convention:
# -1 = syntax error, 0 = end of input reached, 1 = more input follows.  The quirks matter:
# they decide which addresses appear in ENVELOPE, e.g. anything after "a@b <c@d>" is dropped,
# "Name Only" becomes a name with MISSING_MAILBOX/MISSING_DOMAIN, "<a@b" gets SYNTAX_ERROR.

MISSING_MAILBOX = "MISSING_MAILBOX"
MISSING_DOMAIN = "MISSING_DOMAIN"

# An address: (name, route, mailbox, domain); group start = (None, None, name, None),
# group end = (None, None, None, None).
_Addr = tuple[str | None, str | None, str | None, str | None]


class _AddrParser(_Rfc822):
    __slots__ = ("out", "name", "route", "mailbox", "domain", "invalid")

    def __init__(self, s: str) -> None:
        super().__init__(s)
        self.out: list[_Addr] = []
        self.name: str | None = None
        self.route: str | None = None
        self.mailbox: str | None = None
        self.domain: str | None = None
        self.invalid = False

    # ---- message-address.c
    def add(self) -> None:
        self.out.append((self.name, self.route, self.mailbox, self.domain))
        self.name = self.route = self.mailbox = self.domain = None
        self.invalid = False

    def add_fixed(self) -> None:
        if self.mailbox is None:
            self.mailbox = MISSING_MAILBOX
        if not self.domain:
            self.domain = MISSING_DOMAIN
        self.add()

    def local_part(self, buf: list[str]) -> int:
        """quoted-string, or atext/dot runs (dots anywhere, CFWS allowed before a dot but not
        after one; a trailing dot only right before '@' or at the end) -- Dovecot 2.3's
        obs-local-part leniency, checked against it case by case."""
        del buf[:]
        c = self.s[self.i]
        if c == '"':
            ret = self.quoted_string(buf)
            if ret < 0:
                return -1
            self.mailbox = "".join(buf)
            return ret
        if not (_atext(c) or c == "."):
            return -1
        while True:
            j = _ATEXT_DOT_RUN.match(self.s, self.i).end()  # type: ignore[union-attr]
            run = self.s[self.i : j]
            buf.append(run)
            self.i = j
            if j >= self.n:
                ret = 0
                break
            if run.endswith("."):
                if self.s[j] != "@":
                    return -1
                ret = 1
                break
            ret = self.skip_lwsp()
            if ret <= 0:
                if ret < 0:
                    return -1
                break
            if self.s[self.i] != ".":
                break
        self.mailbox = "".join(buf)
        return ret

    def parse_domain(self) -> int:
        buf: list[str] = []
        ret = self.domain_part(buf)
        if ret < 0:
            return -1
        self.domain = "".join(buf)
        return ret

    def domain_list(self) -> int:
        buf: list[str] = []
        while True:
            if self.i >= self.n:
                return 0
            if self.s[self.i] != "@":
                break
            if buf:
                buf.append(",")
            buf.append("@")
            ret = self.domain_part(buf)
            if ret <= 0:
                return ret
            while self.skip_lwsp() > 0 and self.s[self.i] == ",":
                self.i += 1
        self.route = "".join(buf)
        return 1

    def angle_addr(self) -> int:
        """``<[@route:]local@domain>``; running out of input before ``>`` is an error."""
        self.i += 1  # '<'
        if self.skip_lwsp() <= 0:
            return -1
        if self.s[self.i] == "@":
            if self.domain_list() <= 0 or self.cur() != ":":
                self.route = "INVALID_ROUTE"
                if self.i >= self.n:
                    return -1
            else:
                self.i += 1
            if self.skip_lwsp() <= 0:
                return -1
        if self.s[self.i] != ">":
            buf: list[str] = []
            if self.local_part(buf) <= 0:
                return -1
            if self.s[self.i] == "@" and self.parse_domain() <= 0:
                return -1
        if self.cur() != ">":
            return -1
        self.i += 1
        return self.skip_lwsp()

    def name_addr(self) -> int:
        buf: list[str] = []
        if self.phrase(buf) <= 0 or self.cur() != "<":
            return -1
        self.name = "".join(buf) or None
        if self.angle_addr() < 0:
            self.domain = "SYNTAX_ERROR"
            self.invalid = True
        return 1 if self.i < self.n else 0

    def addr_spec(self) -> int:
        ret2 = -2
        self.comment = ""
        quoted = self.s[self.i] == '"'
        buf: list[str] = []
        ret = self.local_part(buf)
        if ret <= 0:
            self.invalid = True
        if ret != 0 and self.i < self.n and self.s[self.i] == "@":
            ret2 = self.parse_domain()
            if ret2 <= 0:
                ret = ret2
        if self.comment:
            self.name = self.comment
        elif ret2 == -2:
            # "user" alone is a mailbox; "user more words" is a display name
            buf.append(" ")
            before = len("".join(buf))
            self.phrase(buf)
            text = "".join(buf)
            if len(text) != before:
                self.mailbox = None
                self.name = text
            elif not quoted:
                self.domain = ""
            self.invalid = True
            ret = -1
        return ret

    def mailbox_(self) -> int:
        start = self.i
        ret = self.name_addr()
        if ret < 0:
            self.i = start
            self.name = self.route = self.mailbox = self.domain = None
            ret = self.addr_spec()
            if self.invalid and self.name is None and self.mailbox is not None and self.domain is None:
                self.name, self.mailbox = self.mailbox, None
        self.add_fixed()
        return ret

    def group(self) -> int:
        buf: list[str] = []
        if self.phrase(buf) <= 0 or self.cur() != ":":
            return -1
        self.i += 1
        ret = self.skip_lwsp()
        self.mailbox = "".join(buf)
        self.add()
        if ret > 0 and self.s[self.i] != ";":
            while True:
                self.mailbox_()
                if self.i >= self.n or self.s[self.i] != ",":
                    break
                self.i += 1
                if self.skip_lwsp() <= 0:
                    ret = -1
                    break
        if ret >= 0:
            if self.i >= self.n or self.s[self.i] != ";":
                ret = -1
            else:
                self.i += 1
                ret = self.skip_lwsp()
        self.add()
        return 0 if ret == 0 else 1

    def address(self) -> int:
        start = self.i
        ret = self.group()
        if ret < 0:
            self.i = start
            self.name = self.route = self.mailbox = self.domain = None
            ret = self.mailbox_()
        return ret

    def address_list(self) -> None:
        for _ in range(100000):
            if self.address() == 0:
                break
            if self.i >= self.n or self.s[self.i] != ",":
                break
            self.i += 1
            ret = self.skip_lwsp()
            if ret <= 0:
                if ret < 0:
                    self.add_fixed()
                break


_AT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\x80-\U0010ffff]"
_FAST_ADDR_RE = re.compile(
    r"[ \t\n]*(?:"
    rf"(?P<l1>[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~.\x80-\U0010ffff]+)@(?P<d1>{_AT}+(?:\.{_AT}+)*)"
    r"|"
    rf"(?P<name>(?:{_AT}[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~.\x80-\U0010ffff]*|\"(?:[^\"\\\n]|\\.)*\")"
    rf"(?:[ \t\n]+(?:{_AT}[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~.\x80-\U0010ffff]*|\"(?:[^\"\\\n]|\\.)*\"))*)?"
    rf"[ \t\n]*<(?P<l2>[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~.\x80-\U0010ffff]+)@(?P<d2>{_AT}+(?:\.{_AT}+)*)>"
    r")[ \t\n]*(?:,|$)"
)
_NAME_WORD_RE = re.compile(r'"((?:[^"\\\n]|\\.)*)"|[^ \t\n"]+')


def _fast_addresses(value: str) -> list[_Addr] | None:
    """The common shapes (``a@b``, ``Name <a@b>``, ``"Name" <a@b>``, comma-separated) without
    the character-level parser; None when anything else shows up.  Same results as the port."""
    out: list[_Addr] = []
    i, n = 0, len(value)
    while i < n:
        m = _FAST_ADDR_RE.match(value, i)
        if m is None:
            return None
        if m.group("l1") is not None:
            out.append((None, None, m.group("l1"), m.group("d1")))
        else:
            name: str | None = None
            raw_name = m.group("name")
            if raw_name:
                words = []
                for w in _NAME_WORD_RE.finditer(raw_name):
                    q = w.group(1)
                    words.append(w.group(0) if q is None else _UNESCAPE_RE.sub(r"\1", q))
                name = " ".join(words) or None
            out.append((name, None, m.group("l2"), m.group("d2")))
        i = m.end()
        if value[i - 1 : i] == "," and value[i:].strip(" \t\n\r") == "":
            break
    return out


def _parse_addresses(value: str) -> list[_Addr]:
    """Address list the way Dovecot's message_address_parse(FILL_MISSING) sees it."""
    fast = _fast_addresses(value) if value.strip(" \t\n\r") else None
    if fast:
        return fast
    return _parse_addresses_slow(value)


def _parse_addresses_slow(value: str) -> list[_Addr]:
    p = _AddrParser(value)
    if p.skip_lwsp() <= 0:
        return []
    p.address_list()
    return p.out


def _plain_nstring(s: str | None) -> str:
    """``imap_append_nstring`` (quote_imap_string) with the common all-safe case first."""
    if s is not None and _QSAFE_RE.fullmatch(s):
        return '"' + s + '"'
    return quote_imap_string(s)


def _addr_list_imap(addrs: list[_Addr]) -> str:
    if not addrs:
        return "NIL"
    parts = ["("]
    for name, route, mbox, dom in addrs:
        # imap_write_address: plain imap_append_nstring for route/mailbox/domain (a CR is kept)
        parts.append(f"({_human(name)} {_plain_nstring(route)} {_plain_nstring(mbox)} {_plain_nstring(dom)})")
    parts.append(")")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# Part tree


class _Part:
    """One MIME entity: byte ranges are on the (normalised) message."""

    __slots__ = (
        "hdr_start",
        "hdr_end",
        "body_start",
        "body_end",
        "fields",
        "ctype",
        "csub",
        "params",
        "multipart",
        "rfc822",
        "children",
        "disp",
        "lang",
        "cid",
        "desc",
        "loc",
        "md5",
        "cte",
        "boundary",
        "outer_end",
        "bin_cte",
    )

    def __init__(self, start: int) -> None:
        self.hdr_start = start
        self.hdr_end = start
        self.body_start = start
        self.body_end = start
        self.fields: list[tuple[str, bytes]] = []
        self.ctype: str | None = None
        self.csub: str | None = None
        self.params: list[tuple[str, str]] = []
        self.multipart = False
        self.rfc822 = False
        self.children: list[_Part] = []
        self.disp: tuple[str, list[tuple[str, str]]] | None = None
        self.lang: list[str] | None = None
        self.cid: str | None = None
        self.desc: str | None = None
        self.loc: str | None = None
        self.md5: str | None = None
        self.cte: str | None = None
        self.boundary: bytes | None = None
        self.outer_end = start  # where the parent's body continues (body_end + stolen CRLF)
        self.bin_cte: str | None = None  # raw last CTE value, as Dovecot's BINARY decoder reads it

    @property
    def is_text(self) -> bool:
        return not self.rfc822 and (self.ctype is None or self.ctype.lower() == "text")

    def mime_type(self) -> str:
        """Lowercase type/subtype for JMAP/REST (broken values mapped to sane defaults)."""
        if self.rfc822:
            return "message/rfc822"
        if self.ctype is None or (self.ctype.lower() == "text" and not self.csub):
            return "text/plain"
        if not self.ctype or not self.csub:
            return "application/octet-stream"
        return f"{self.ctype}/{self.csub}".lower()


class _Parser:
    """Dovecot-compatible boundary scan (see module docstring for the rules)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)
        self.total = 0
        self.rx_cache: dict[tuple[bytes, ...], tuple[re.Pattern[bytes], dict[bytes, int], list[bytes]]] = {}

    def next_boundary(self, pos: int, bounds: list[bytes]) -> tuple[int, int]:
        """First line at/after line-start ``pos`` starting with an active ``--boundary``:
        (line offset, index into bounds) or (len, -1).  Longest match wins; on a tie (the same
        boundary nested) the innermost (Dovecot).  One C-level regex search per call, so a body
        full of "--" lines costs no Python loop per line."""
        if not bounds:
            return self.n, -1
        key = tuple(bounds)
        cached = self.rx_cache.get(key)
        if cached is None:
            alts = sorted(set(bounds), key=len, reverse=True)
            # Dovecot matches boundaries in its LF-ended file: a boundary ending in CR cannot
            # take the CR of a line's CRLF
            rx = re.compile(b"\n--(?:" + b"|".join(re.escape(b[2:]) + (b"(?!\n)" if b.endswith(b"\r") else b"")
                                                    for b in alts) + b")")
            index = {b: max(k for k, x in enumerate(bounds) if x == b) for b in alts}
            cached = self.rx_cache[key] = (rx, index, alts)
        rx, index, alts = cached
        data = self.data
        if data.startswith(b"--", pos):
            for b in alts:
                if data.startswith(b, pos) and not (b.endswith(b"\r") and data.startswith(b"\n", pos + len(b))):
                    return pos, index[b]
        m = rx.search(data, pos)
        if m is None:
            return self.n, -1
        return m.start() + 1, index[m.group(0)[1:]]

    def entity(
        self, start: int, bounds: list[bytes], digest_child: bool, depth: int, in_multipart: bool = False
    ) -> tuple[_Part, int, int]:
        """Parse headers+body at ``start``.  Returns (part, stop line, bound index) where stop is
        the boundary line that ended it (or len, -1 at EOF).  part.body_end is the end as the
        parent sees it (may include a CRLF stolen from this part's header)."""
        data, n = self.data, self.n
        self.total += 1
        p = _Part(start)
        # ---- header
        if data.startswith(b"\r\n", start):
            blk_end, hdr_end = start, start + 2
        else:
            k = data.find(b"\r\n\r\n", start)
            if k < 0:
                blk_end = hdr_end = n
            else:
                blk_end, hdr_end = k + 2, k + 4
        b, bi = self.next_boundary(start, bounds)
        cut = b < hdr_end or (b == hdr_end and hdr_end == n and bi >= 0)
        if cut:
            blk_end = hdr_end = max(start, b - 2)
        p.hdr_end = hdr_end
        block = data[start:blk_end]
        if block.endswith(b"\r\n"):
            block = block[:-2]
        p.fields = _header_fields(block)
        self.apply_mime(p, digest_child, in_multipart)
        if cut:
            p.body_start = p.body_end = p.outer_end = hdr_end
            if b > start:
                p.hdr_end = p.body_start = p.body_end = b - 2
                p.outer_end = b  # the stolen CRLF goes to the parent's body
            return p, b, bi
        p.body_start = hdr_end
        nested_ok = depth + 1 < MAX_NESTED_PARTS and self.total < MAX_TOTAL_PARTS
        if not nested_ok and ((p.multipart and p.boundary is not None) or p.rfc822):
            # too deep: Dovecot stops nesting and shows the part as application/octet-stream
            # (parameters kept); its body is then an ordinary leaf body
            p.multipart = p.rfc822 = False
            p.ctype, p.csub = "application", "octet-stream"
        if p.multipart and p.boundary is not None and nested_ok:
            return self.multipart_body(p, bounds, depth)
        if p.rfc822 and nested_ok:
            child, b, bi = self.entity(hdr_end, bounds, False, depth + 1)
            p.children = [child]
            if bi >= 0 and b == hdr_end and hdr_end > start:
                # empty message right before a boundary: our blank line goes to the boundary
                p.hdr_end = p.body_start = p.body_end = b - 2
                p.outer_end = b
            else:
                p.body_end = p.outer_end = child.outer_end
            return p, b, bi
        b, bi = self.next_boundary(hdr_end, bounds)
        self.finish_body(p, b, bi)
        return p, b, bi

    def finish_body(self, p: _Part, b: int, bi: int) -> None:
        """Body ends at boundary line ``b``: the CRLF before it belongs to the boundary; if the
        body is empty that CRLF is taken from the header (and kept by the parent's body)."""
        if bi < 0:
            p.body_end = p.outer_end = self.n
        elif b > p.body_start:
            p.body_end = p.outer_end = b - 2
        elif p.body_start > p.hdr_start:
            p.hdr_end = p.body_start = p.body_end = b - 2
            p.outer_end = b
        else:
            p.body_end = p.outer_end = b

    def multipart_body(self, p: _Part, bounds: list[bytes], depth: int) -> tuple[_Part, int, int]:
        data = self.data
        assert p.boundary is not None
        own = b"--" + p.boundary
        inner = bounds + [own]
        me = len(inner) - 1
        digest = (p.csub or "").lower() == "digest"
        b, bi = self.next_boundary(p.body_start, inner)
        last_child: _Part | None = None
        while bi == me:
            line_end = data.find(b"\r\n", b)
            nxt = self.n if line_end < 0 else line_end + 2
            close = data.startswith(b"--", b + len(own))
            if line_end < 0 and not close:
                # a boundary line without LF at EOF starts no part (Dovecot)
                p.body_end = p.outer_end = self.n
                return p, self.n, -1
            if close:
                # close delimiter: the rest up to an ancestor boundary is epilogue
                last_child = None
                eb, ebi = self.next_boundary(nxt, bounds)
                if ebi < 0:
                    p.body_end = self.n
                else:
                    # an empty epilogue keeps the close delimiter's CRLF (Dovecot)
                    p.body_end = eb - 2 if eb > nxt else eb
                p.outer_end = p.body_end
                return p, eb, ebi
            if self.total >= MAX_TOTAL_PARTS:
                break
            child, b, bi = self.entity(nxt, inner, digest, depth + 1, True)
            p.children.append(child)
            last_child = child
        if last_child is not None:
            p.body_end = p.outer_end = self.n if bi < 0 else last_child.outer_end
        else:
            self.finish_body(p, b, bi)
        return p, b, bi

    def apply_mime(self, p: _Part, digest_child: bool, in_multipart: bool) -> None:
        """Content-* headers count only in a MIME part: inside a multipart, or with a
        MIME-Version or Content-Type header (else Dovecot forgets them all)."""
        is_mime = in_multipart
        for n, rv in p.fields:
            if n == "content-transfer-encoding":
                p.bin_cte = _s(rv).replace("\n", "").strip(" \t\r").lower()
            elif n in ("mime-version", "content-type"):
                is_mime = True
        if not is_mime:
            return
        seen: set[str] = set()
        for name, raw in p.fields:
            if not name.startswith("content-") or name in seen:
                continue
            v = _s(raw)
            if name == "content-transfer-encoding":
                # first *valid* one counts: one token, then only CFWS (an unterminated comment
                # makes it invalid, as rfc822_skip_lwsp fails)
                cp = _Rfc822(v)
                if cp.skip_lwsp() >= 0:
                    tok, ret = cp.mime_token()
                    if tok and ret == 0:
                        p.cte = tok
                        seen.add(name)
                continue
            if name == "content-disposition":
                # Dovecot re-parses Content-Disposition until one of them has parameters
                d = _disposition(v)
                if d is not None:
                    p.disp = d
                    if d[1]:
                        seen.add(name)
                continue
            if name == "content-language":
                p.lang = _languages(v)
                if p.lang is not None:
                    seen.add(name)
                continue
            seen.add(name)
            if name == "content-type":
                typ, sub, params, _ok = _content_type(v)
                p.ctype, p.csub, p.params = typ, sub if sub is not None else "", params
                full = f"{typ}/{sub}".lower() if sub is not None else typ.lower()
                if full == "message/rfc822":
                    p.rfc822 = True
                elif full.startswith("multipart/"):
                    p.multipart = True
                    for k, val in params:
                        if k.lower() == "boundary":
                            p.boundary = _wire(val)[:BOUNDARY_MAX_LEN]
                            break
            elif name == "content-id":
                p.cid = v
            elif name == "content-description":
                p.desc = v
            elif name == "content-location":
                p.loc = v
            elif name == "content-md5":
                p.md5 = v
        if p.ctype is None and digest_child:
            p.rfc822 = True


# --------------------------------------------------------------------------------------------
# IMAP structure writers (imap-bodystructure.c, imap-envelope.c)

_EMPTY_BODY = '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
_EMPTY_BODYSTRUCTURE = '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'


def _params_imap(params: list[tuple[str, str]], default_charset: bool) -> str:
    if not params and not default_charset:
        return "NIL"
    out = []
    seen = False
    for k, v in params:
        if default_charset and k.lower() == "charset":
            seen = True
        # plain imap_append_string: a CR inside a parameter value is kept (as a literal)
        out.append(quote_imap_string(k) + " " + quote_imap_string(v))
    if default_charset and not seen:
        out.append('"charset" "us-ascii"')
    return "(" + " ".join(out) + ")"


def _common_ext(p: _Part) -> str:
    if p.disp is None:
        disp = "NIL"
    else:
        disp = "(" + _nstring(p.disp[0]) + " " + _params_imap(p.disp[1], False) + ")"
    lang = "NIL" if not p.lang else "(" + " ".join(_nstring(x) for x in p.lang) + ")"
    return " " + disp + " " + lang + " " + _nstring(p.loc)


def _envelope(fields: list[tuple[str, bytes]]) -> str:
    return _envelope_and_addrs(fields)[0]


def _envelope_and_addrs(fields: list[tuple[str, bytes]]) -> tuple[str, dict[str, list[_Addr]]]:
    """ENVELOPE text, plus the parsed address headers (so they are parsed only once)."""
    single: dict[str, bytes] = {}
    addrs: dict[str, list[_Addr]] = {}
    for name, raw in fields:
        if name in ("date", "subject", "in-reply-to", "message-id"):
            single[name] = raw
        elif name in ("from", "sender", "reply-to", "to", "cc", "bcc"):
            addrs.setdefault(name, []).extend(_parse_addresses(_s(raw)))

    def one(k: str) -> str | None:
        v = single.get(k)
        return None if v is None else _s(v)

    frm = addrs.get("from") or []
    items = (
        _nstring(one("date")),
        _human(one("subject")),
        _addr_list_imap(frm),
        _addr_list_imap(addrs.get("sender") or frm),
        _addr_list_imap(addrs.get("reply-to") or frm),
        _addr_list_imap(addrs.get("to") or []),
        _addr_list_imap(addrs.get("cc") or []),
        _addr_list_imap(addrs.get("bcc") or []),
        _nstring(one("in-reply-to")),
        _nstring(one("message-id")),
    )
    return "(" + " ".join(items) + ")", addrs


def _structures(p: _Part, data: bytes) -> tuple[str, str]:
    """(BODYSTRUCTURE, BODY) of a part, without the outer parentheses, in one walk."""
    if p.multipart:
        if p.children:
            pairs = [_structures(c, data) for c in p.children]
            kids_x = "".join("(" + x + ")" for x, _ in pairs)
            kids_b = "".join("(" + b + ")" for _, b in pairs)
        else:
            kids_x, kids_b = _EMPTY_BODYSTRUCTURE, _EMPTY_BODY
        sub = " " + _nstring(p.csub or "")
        ext = " " + ("NIL" if not p.params else _params_imap(p.params, False)) + _common_ext(p)
        return kids_x + sub + ext, kids_b + sub
    size = p.body_end - p.body_start
    if p.rfc822:
        head = '"message" "rfc822"'
        text = False
    elif p.ctype is None:
        head = '"text" "plain"'
        text = True
    elif p.ctype.lower() == "multipart":
        # "multipart" that is not parsed as one (no subtype): Dovecot shows application/octet-stream
        head = '"application" "octet-stream"'
        text = False
    else:
        head = _nstring(p.ctype) + " " + _nstring(p.csub or "")
        text = p.ctype.lower() == "text"
    cte = _nstring(p.cte) if p.cte is not None else '"7bit"'
    base = f"{head} {_params_imap(p.params, text)} {_nstring(p.cid)} {_nstring(p.desc)} {cte} {size}"
    lines = data.count(b"\n", p.body_start, p.body_end)
    if text:
        base += f" {lines}"
        base_b = base
    elif p.rfc822:
        child = p.children[0] if p.children else _Part(p.body_start)
        env = _envelope(child.fields)
        cx, cb = _structures(child, data)
        base_b = f"{base} {env} ({cb}) {lines}"
        base = f"{base} {env} ({cx}) {lines}"
    else:
        base_b = base
    return base + " " + _nstring(p.md5) + _common_ext(p), base_b


# --------------------------------------------------------------------------------------------
# Decoding helpers (bodies, headers) -- best effort, never raising


_B64_JUNK_RE = re.compile(rb"[^A-Za-z0-9+/]")
_B64_PAD_RE = re.compile(rb"=+")


def _b64_lenient(body: bytes) -> bytes:
    """base64 that never fails: junk ignored, padding in the middle restarts decoding."""
    if b"=" not in body.rstrip(b"\r\n\t =") and b"=" not in body[:-4].rstrip(b"\r\n\t ="):
        clean = _B64_JUNK_RE.sub(b"", body)
        if len(clean) % 4 == 0:
            try:
                return binascii.a2b_base64(clean)
            except (binascii.Error, ValueError):
                pass
    out = bytearray()
    for chunk in _B64_PAD_RE.split(body):
        clean = _B64_JUNK_RE.sub(b"", chunk)
        if len(clean) % 4 == 1:
            clean = clean[:-1]
        if clean:
            try:
                out += binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
            except (binascii.Error, ValueError):
                pass
    return bytes(out)


def _cte_decode(body: bytes, cte: str | None, strict: bool = False) -> bytes | None:
    """Undo a Content-Transfer-Encoding; None if unknown.  ``strict`` (BINARY): the value must be
    exactly a known name -- Dovecot answers UNKNOWN-CTE for "" or "base64 junk"; otherwise the
    first token counts."""
    c = "7bit" if cte is None else cte.lower()
    if not strict:
        c = c.split()[0] if c.split() else "7bit"
    if c in ("7bit", "8bit", "binary"):
        return body
    if c == "base64":
        return _b64_lenient(body)
    if c == "quoted-printable":
        try:
            return binascii.a2b_qp(body)
        except (binascii.Error, ValueError):
            return body
    return None


class UndecodableContent(ValueError):
    """BINARY of a part whose base64 / quoted-printable data is corrupt: Dovecot answers
    ``NO [PARSE]`` (RFC 5530) rather than sending bytes it had to guess."""


_B64_WS_RE = re.compile(rb"[ \t\r\n]+")
_B64_STRICT_RE = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# quoted-printable that Dovecot's qp-decoder.c rejects: "=" not starting "=XX" or a soft line
# break ("=", optional blanks, CRLF), a CR without LF, more than 76 blanks before text
_QP_BAD_RE = re.compile(rb"=(?![0-9A-Fa-f]{2}|[ \t]*\r?\n)|\r(?!\n)|[ \t]{77,}[^ \t\r\n]")
_QP_TOKEN_RE = re.compile(rb"=([0-9A-Fa-f]{2})|=[ \t]*\r?\n|[ \t]+(?=\r?\n|\Z)")


def _qp_token(m: re.Match[bytes]) -> bytes:
    h = m.group(1)
    return b"" if h is None else bytes.fromhex(h.decode())


def _binary_decode(body: bytes, cte: str | None, check: bool) -> bytes | None:
    """BINARY's decoding of one leaf body (``cte`` as Dovecot reads it: the last header, exact
    name).  None for an unknown encoding.  With ``check``, corrupt data raises
    UndecodableContent where Dovecot's decoders (istream-base64-decoder with no flags,
    qp-decoder.c) fail: base64 with a character outside the alphabet and blanks, wrong or missing
    padding, or data after the padding; quoted-printable as _QP_BAD_RE says.  Valid
    quoted-printable is decoded as Dovecot does (blanks before a line end dropped)."""
    c = "7bit" if cte is None else cte.lower()
    if check and c == "base64":
        clean = _B64_WS_RE.sub(b"", body)
        if not _B64_STRICT_RE.fullmatch(clean):
            raise UndecodableContent("invalid base64 data")
        return binascii.a2b_base64(clean)
    if check and c == "quoted-printable":
        if _QP_BAD_RE.search(body):
            raise UndecodableContent("invalid quoted-printable data")
        return _QP_TOKEN_RE.sub(_qp_token, body)
    return _cte_decode(body, c, strict=True)


_CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "x-sjis": "shift_jis",
    "x-mac-roman": "mac-roman",
    "windows-874": "cp874",
}


def _charset_decode(b: bytes, charset: str | None) -> str:
    """Best effort: unknown or non-text charsets fall back to UTF-8, then cp1252."""
    cs = (charset or "").strip().strip('"').lower()
    cs = _CHARSET_ALIASES.get(cs, cs)
    try:
        info = codecs.lookup(cs) if cs not in ("", "us-ascii", "ascii", "unknown-8bit", "x-unknown") else None
        cs = info.name if info is not None and getattr(info, "_is_text_encoding", True) else "utf-8"
    except (LookupError, ValueError, TypeError):
        cs = "utf-8"
    if cs == "utf-8":
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return b.decode("cp1252", "replace")
    try:
        return b.decode(cs, "replace")
    except Exception:  # noqa: BLE001 - a codec may fail in its own ways
        return b.decode("utf-8", "replace")


_EW_RE = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def _decode_words(s: str) -> str:
    """RFC 2047: decode encoded-words; whitespace between adjacent words is dropped, and
    adjacent words in the same charset are joined *before* charset decoding (a multi-byte
    character may be split across words).  Hand-written because email.header is slow and
    raises on junk."""
    if "=?" not in s:
        return s
    out: list[str] = []
    pend_cs: str | None = None
    pend: list[bytes] = []
    pos = 0

    def flush() -> None:
        nonlocal pend_cs
        if pend_cs is not None:
            out.append(_charset_decode(b"".join(pend), pend_cs))
            pend.clear()
            pend_cs = None

    for m in _EW_RE.finditer(s):
        gap = s[pos : m.start()]
        if gap and not (pend_cs is not None and gap.strip(" \t\r\n") == ""):
            flush()
            out.append(gap)
        cs = m.group(1).split("*", 1)[0]
        txt = m.group(3)
        try:
            if m.group(2) in "bB":
                clean = re.sub(r"[^A-Za-z0-9+/]", "", txt)
                if len(clean) % 4 == 1:
                    clean = clean[:-1]
                b = base64.b64decode(clean + "=" * (-len(clean) % 4))
            else:
                b = binascii.a2b_qp(txt.encode("ascii", "replace"), header=True)
        except (binascii.Error, ValueError):
            flush()
            out.append(m.group(0))
            pos = m.end()
            continue
        if pend_cs is not None and pend_cs.lower() != cs.lower():
            flush()
        pend_cs = cs
        pend.append(b)
        pos = m.end()
    flush()
    out.append(s[pos:])
    return "".join(out)


def _decode_header(raw: bytes, strict: bool = False) -> str:
    """RFC 2047 decode; raw 8-bit taken as UTF-8 (else cp1252 for display; with ``strict``
    invalid UTF-8 becomes U+FFFD, as Dovecot's message_header_decode_utf8).  Folding removed."""
    raw = raw.replace(b"\n", b"")
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        s = raw.decode("utf-8", "replace") if strict else raw.decode("cp1252", "replace")
    return _decode_words(s)


def _param(params: list[tuple[str, str]], name: str) -> str | None:
    """Parameter value, RFC 2231 (``name*``) and RFC 2047 decoded."""
    for k, v in params:
        if k.lower() == name + "*":
            cs, _, rest = v.partition("'")
            _lang, _, pct = rest.partition("'")
            if not _:
                pct, cs = v, "utf-8"
            try:
                raw = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), pct)
                return _charset_decode(raw.encode("latin-1", "replace"), cs or "utf-8")
            except Exception:  # noqa: BLE001
                return pct
    for k, v in params:
        if k.lower() == name:
            return _decode_header(_wire(v))
    return None


_TAG_RE = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.S | re.I)
_WS_RE = re.compile(r"\s+")


def _html_to_text(h: str) -> str:
    return html.unescape(_TAG_RE.sub(" ", h))


_LEADER_RE = re.compile(r"^(?:[ ]+|(?:\[[^\[\]]*\][ ]*)*(?:re|fwd?)[ ]*(?:\[[^\[\]]*\][ ]*)?:)", re.I)
_BLOB_RE = re.compile(r"^\[[^\[\]]*\][ ]*")
_TRAILER_RE = re.compile(r"(?:[ ]+|\(fwd\))$", re.I)


def base_subject(subject: str) -> str:
    """RFC 5256 section 2.1 base subject (case kept; SORT compares with i;unicode-casemap)."""
    s = _WS_RE.sub(" ", subject)
    for _ in range(100):
        while True:
            m = _TRAILER_RE.search(s)
            if not m or not s:
                break
            s = s[: m.start()]
        while True:
            changed = False
            m = _LEADER_RE.match(s)
            if m and m.end() > 0:
                s = s[m.end() :]
                changed = True
            m = _BLOB_RE.match(s)
            if m and s[m.end() :]:
                s = s[m.end() :]
                changed = True
            if not changed:
                break
        if s[:5].lower() == "[fwd:" and s.endswith("]"):
            s = s[5:-1]
            continue
        break
    return s.strip(" ")


# --------------------------------------------------------------------------------------------
# Public API


def _collect(p: _Part, num: str, data: bytes, acc: _Acc, in_attached: bool) -> None:
    """Walk the tree: section numbers, body candidates, attachments."""
    if p.multipart:
        for k, c in enumerate(p.children, 1):
            _collect(c, f"{num}.{k}" if num else str(k), data, acc, in_attached)
        return
    here = num or "1"
    disp = p.disp[0].lower() if p.disp else ""
    fname = _param(p.disp[1], "filename") if p.disp else None
    if fname is None:
        fname = _param(p.params, "name")
    if p.rfc822:
        if not in_attached:
            acc.attachments.append(
                Attachment(len(acc.attachments), fname, "message/rfc822", p.body_end - p.body_start, here)
            )
        if p.children:
            child = p.children[0]
            acc.search.append(_decode_header(_header_value(child.fields, "subject") or b""))
            _collect(child, here if child.multipart else here + ".1", data, acc, True)
        return
    mt = p.mime_type()
    if disp != "attachment" and mt in ("text/plain", "text/html"):
        raw = data[p.body_start : min(p.body_end, p.body_start + MAX_DECODE)]
        dec = _cte_decode(raw, p.bin_cte or p.cte)
        text = _charset_decode(dec if dec is not None else raw, _param(p.params, "charset"))
        if not text:
            return
        if mt == "text/html":
            if not in_attached:
                acc.html.append(text)
            acc.search.append(_html_to_text(text))
        else:
            if not in_attached:
                acc.text.append(text)
            acc.search.append(text)
        return
    if not in_attached:
        acc.attachments.append(Attachment(len(acc.attachments), fname, mt, p.body_end - p.body_start, here))
    if fname:
        acc.search.append(fname)


@dataclass
class _Acc:
    text: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    search: list[str] = field(default_factory=list)


def _header_value(fields: list[tuple[str, bytes]], name: str, last: bool = True) -> bytes | None:
    found: bytes | None = None
    for k, v in fields:
        if k == name:
            if not last:
                return v
            found = v
    return found


# --------------------------------------------------------------------------------------------
# Date: headers (message-date.c)

_MONTHS3 = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_ZONES3 = {"E": -300, "C": -360, "M": -420, "P": -480}


def _all_digits(v: str) -> bool:
    return bool(v) and all("0" <= c <= "9" for c in v)


def _zone(v: str) -> int:
    """``parse_timezone``: minutes east of UTC; anything unknown is UTC (Dovecot's choice)."""
    if len(v) == 5 and v[0] in "+-":
        if not _all_digits(v[1:]):
            return 0
        off = int(v[1:3]) * 60 + int(v[3:5])
        return off if v[0] == "+" else -off
    if len(v) == 1:
        up, c = v.upper(), ord(v)  # Dovecot computes with the character as written
        if up < "J":
            return (c - 65 + 1) * 60
        if up == "J":
            return 0
        if up <= "M":
            return (c - 65) * 60
        if up < "Z":
            return (77 - c) * 60
        return 0
    if len(v) == 2 and v.upper() == "UT":
        return 0
    if len(v) == 3 and v[2] == "T":
        base = _ZONES3.get(v[0].upper())
        if base is not None:
            if v[1].upper() == "D":
                return base + 60
            if v[1].upper() == "S":
                return base
    return 0


_FAST_DATE_RE = re.compile(
    r"[ \t]*(?:[A-Za-z]{3},[ \t]*)?([0-9]{1,2})[ \t]+([A-Za-z]{3})[ \t]+([0-9]{4})[ \t]+([0-9]{1,2}):([0-9]{2})"
    r"(?::([0-9]{2}))?[ \t]+([+-][0-9]{4})[ \t]*"
)


def message_date(value: str) -> tuple[datetime, date] | None:
    """A Date: header as Dovecot's ``message_date_parse`` reads it: (the instant, in UTC; the
    date as written, which is what SENTBEFORE/SENTON/SENTSINCE compare -- RFC 3501 6.4.4
    "disregarding time and timezone").  None when Dovecot finds no date (then SEARCH sees
    1970-01-01 and SORT the INTERNALDATE).  ``[Www ","] d[d] Mon[th] [yy]yy h[h]:mm[:ss] [zone]``
    with ``.`` also accepted as time separator, comments and folding anywhere, an unknown or
    missing zone taken as UTC, two-digit years as 1970-2069."""
    m = _FAST_DATE_RE.fullmatch(value)
    if m is not None:  # the usual "Mon, 2 Jan 2023 10:00:00 +0100": same result, 10x faster
        mon = m.group(2).lower()
        if mon in _MONTHS3 and int(m.group(3)) >= 1900:
            try:
                wall = datetime(int(m.group(3)), _MONTHS3.index(mon) + 1, int(m.group(1)), int(m.group(4)),  # noqa: DTZ001
                                int(m.group(5)), min(int(m.group(6) or 0), 59))
                return (wall - timedelta(minutes=_zone(m.group(7)))).replace(tzinfo=UTC), wall.date()
            except (ValueError, OverflowError):
                return None
    p = _Rfc822(value)
    p.skip_lwsp()

    def token() -> tuple[int, str]:
        if p.i >= p.n:
            return 0, ""
        if not _atext(p.s[p.i]):
            return -1, ""
        j = _ATEXT_RUN.match(p.s, p.i).end()  # type: ignore[union-attr]
        tok = p.s[p.i : j]
        p.i = j
        if j < p.n and p.skip_lwsp() < 0:
            return -1, tok
        return 1, tok

    ret, v = token()
    if ret <= 0:
        return None
    if len(v) == 3:  # weekday
        if p.cur() != ",":
            return None
        p.i += 1
        p.skip_lwsp()
        ret, v = token()
        if ret <= 0:
            return None
    if not 1 <= len(v) <= 2 or not _all_digits(v):
        return None
    day = int(v)
    ret, v = token()
    if ret <= 0 or len(v) < 3 or v[:3].lower() not in _MONTHS3:
        return None
    month = _MONTHS3.index(v[:3].lower()) + 1
    ret, v = token()
    if ret <= 0 or len(v) not in (2, 4) or not _all_digits(v):
        return None
    year = int(v)
    if len(v) == 2:
        year += 2000 if year < 70 else 1900
    elif year < 1900:
        return None
    ret, v = token()
    if ret <= 0 or not 1 <= len(v) <= 2 or not _all_digits(v):
        return None
    hour = int(v)
    if p.cur() not in ":.":
        return None
    p.i += 1
    p.skip_lwsp()
    ret, v = token()
    if ret < 0 or len(v) != 2 or not _all_digits(v):
        return None
    minute, sec = int(v), 0
    if p.i < p.n and p.s[p.i] in ":.":
        p.i += 1
        p.skip_lwsp()
        ret, v = token()
        if ret <= 0 or len(v) != 2 or not _all_digits(v):
            return None
        sec = min(int(v), 59)  # utc_mktime takes a leap second as :59
    ret, v = token()
    if ret < 0:
        return None
    offset = _zone(v) if ret > 0 else 0
    try:
        wall = datetime(year, month, day, hour, minute, sec)  # noqa: DTZ001 - the time as written
        return (wall - timedelta(minutes=offset)).replace(tzinfo=UTC), wall.date()
    except (ValueError, OverflowError):
        return None  # 31 Feb, 24:00 ... (utc_mktime refuses what timegm would normalise)


_MSGID_RE = re.compile(r"<[^<>]*>")


def _msgids(raw: bytes | None) -> list[str]:
    if raw is None:
        return []
    return ["".join(m.split()) for m in _MSGID_RE.findall(_s(raw)) if len(m) > 2]


_DOT_ATOM_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\x80-\U0010ffff]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\x80-\U0010ffff]+)*"
)


def _spec(a: _Addr) -> str | None:
    """Lowercased addr-spec, local part re-quoted when it is not a dot-atom."""
    _n, _r, mbox, dom = a
    if mbox is None or dom is None or mbox == MISSING_MAILBOX or dom == MISSING_DOMAIN:
        return None
    if not _DOT_ATOM_RE.fullmatch(mbox):
        mbox = '"' + mbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{mbox}@{dom}".lower()


def _preview(text: str) -> str:
    """First PREVIEW_LEN chars with whitespace collapsed, without collapsing the whole body."""
    take = PREVIEW_LEN * 2
    while True:
        pv = " ".join(text[:take].split())  # str.split() splits on what \s matches, in C
        if len(pv) >= PREVIEW_LEN or take >= len(text):
            return pv[:PREVIEW_LEN].rstrip()
        take *= 4


def _parse(raw: bytes, crlf: bool = False) -> ParsedMessage:
    data = _normalize(raw, crlf)
    parser = _Parser(data)
    root, _b, _bi = parser.entity(0, [], False, 0)
    fields = root.fields
    env_fields = fields
    head = data[root.hdr_start : root.hdr_end]
    if b"\r\r" in head:  # see _header_fields(drop_cr=True)
        head = head[:-4] if head.endswith(b"\r\n\r\n") else head[:-2] if head.endswith(b"\r\n") else head
        env_fields = _header_fields(head, drop_cr=True)
    envelope, addrs = _envelope_and_addrs(env_fields)
    bs, b = _structures(root, data)
    bodystructure, body = "(" + bs + ")", "(" + b + ")"

    subj_raw = _header_value(fields, "subject")
    subject = _WS_RE.sub(" ", _decode_header(subj_raw)).strip() if subj_raw is not None else ""
    # SORT/THREAD's base subject: the *first* Subject: header, undecodable 8-bit as U+FFFD (as
    # Dovecot's index-sort/thread read it; ENVELOPE and the display subject use the last one)
    first_raw = _header_value(fields, "subject", last=False)
    if first_raw is subj_raw and (subj_raw is None or subj_raw.isascii()):
        sort_subject = subject  # one Subject: header, nothing to decode differently
    else:
        sort_subject = "" if first_raw is None else _WS_RE.sub(" ", _decode_header(first_raw, strict=True)).strip()
    froms = [a for a in addrs.get("from", []) if a[2] is not None and a[3] is not None]
    from_addr = next((s for s in (_spec(a) for a in froms) if s), "")
    disp_parts = []
    for a in froms:
        spec = f"{a[2]}@{a[3]}" if _spec(a) else (a[2] or "")
        name = _WS_RE.sub(" ", _decode_header(_wire(a[0]))).strip() if a[0] else ""
        disp_parts.append(f"{name} <{spec}>" if name else spec)
    from_display = ", ".join(disp_parts)
    to_addrs = [s for s in (_spec(a) for a in addrs.get("to", [])) if s]
    cc_addrs = [s for s in (_spec(a) for a in addrs.get("cc", [])) if s]
    mid = _msgids(_header_value(fields, "message-id"))
    # SORT/SEARCH's sent date: the *first* Date: header, as Dovecot's mail_get_date (ENVELOPE
    # shows the last one); stored as the UTC instant so both databases keep the same value
    date_raw = _header_value(fields, "date", last=False)
    when = message_date(_s(date_raw)) if date_raw is not None else None
    sent = when[0] if when is not None else None

    acc = _Acc()
    _collect(root, "", data, acc, False)
    text_body = "\r\n".join(acc.text) if acc.text else None
    html_body = "\r\n".join(acc.html) if acc.html else None
    if text_body is not None:
        pv = text_body
    elif html_body is not None:
        pv = _html_to_text(html_body[: PREVIEW_LEN * 64])
    else:
        pv = ""
    preview = _preview(pv)
    hdr_text = [subject, from_display]
    for nm in ("to", "cc"):
        v = _header_value(fields, nm)
        if v is not None:
            hdr_text.append(_decode_header(v))
    search_text = "\n".join(hdr_text + acc.search)

    return ParsedMessage(
        envelope=envelope,
        bodystructure=bodystructure,
        body=body,
        header_size=root.hdr_end - root.hdr_start,
        subject=subject,
        base_subject=base_subject(sort_subject),
        from_addr=from_addr,
        from_display=from_display,
        to_addrs=to_addrs,
        cc_addrs=cc_addrs,
        message_id=mid[0] if mid else None,
        in_reply_to=_msgids(_header_value(fields, "in-reply-to")),
        references=_msgids(_header_value(fields, "references")),
        sent_date=sent,
        preview=preview,
        text_crlf=text_body,
        html_crlf=html_body,
        attachments=acc.attachments,
        search_text=search_text,
        vsize=len(data),
    )


def parse_message(raw: bytes, *, crlf: bool = False) -> ParsedMessage:
    """Parse once at delivery.  Never raises: on an internal error a minimal but well-formed
    result (a 0-part text/plain structure with the right size) is returned instead.

    `crlf`: the caller guarantees that every LF in `raw` follows a CR (SMTP DATA, whose bare
    LFs were already turned into CRLF); the result is the same, with two scans fewer."""
    try:
        return _parse(raw, crlf)
    except Exception:  # noqa: BLE001 - delivery must never fail because of a parser bug
        data = _normalize(raw) if isinstance(raw, bytes | bytearray) else b""
        size = len(data)
        lines = data.count(b"\n")
        return ParsedMessage(
            envelope="(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
            bodystructure=f'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" {size} {lines} NIL NIL NIL NIL)',
            body=f'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" {size} {lines})',
            header_size=0,
            subject="",
            base_subject="",
            from_addr="",
            from_display="",
            to_addrs=[],
            cc_addrs=[],
            message_id=None,
            in_reply_to=[],
            references=[],
            sent_date=None,
            preview="",
            text_crlf=None,
            html_crlf=None,
            attachments=[],
            search_text="",
            vsize=size,
        )


# ---- BODY[section] / BINARY[part]

_SECTION_RE = re.compile(
    r"^((?:[1-9][0-9]*)(?:\.[1-9][0-9]*)*)?\.?(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME)?"
    r"(?:\s*\(([^()]*)\))?$",
    re.I,
)


def _find_part(root: _Part, path: str) -> _Part | None:
    """``msgpart_find_part`` of Dovecot's imap-msgpart.c."""
    part: _Part | None = root
    nums = [int(x) for x in path.split(".")]
    for k, num in enumerate(nums):
        assert part is not None
        more = k + 1 < len(nums)
        if part.multipart:
            part = part.children[num - 1] if 0 < num <= len(part.children) else None
        elif num != 1 or (more and not part.rfc822):
            part = None
        if part is None:
            return None
        if part.rfc822 and more:
            part = part.children[0] if part.children else None
            if part is None:
                return None
    return part


def _header_lines(block: bytes) -> list[tuple[str, bytes]]:
    """Header block split into (lowercase name, raw bytes incl. CRLFs) fields."""
    out: list[tuple[str, bytes]] = []
    if not block:
        return out
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + line + b"\r\n")
            continue
        i = line.find(b":")
        name = line[:i].rstrip(b" \t").lower().decode("latin-1") if i >= 0 else ""
        out.append((name, line + b"\r\n"))
    return out


def _filter_header(block: bytes, names: str, negate: bool) -> bytes:
    """HEADER.FIELDS always ends with the blank line; HEADER.FIELDS.NOT only when the header had
    one (both as Dovecot 2.3 does)."""
    wanted = {_s(x).strip('"').lower() for x in re.findall(rb'"[^"]*"|[^\s"]+', _wire(names))}
    eoh = block == b"\r\n" or block.endswith(b"\r\n\r\n")
    complete = not block or block.endswith(b"\r\n")
    if block.endswith(b"\r\n\r\n"):
        block = block[:-4]
    elif block.endswith(b"\r\n"):
        block = block[:-2]
    if negate:
        out = [raw for name, raw in _header_lines(block) if name not in wanted]
    else:
        out = [raw for name, raw in _header_lines(block) if name in wanted]
    if eoh or (not negate and (complete or out)):
        out.append(b"\r\n")
    return b"".join(out)


def _section(data: bytes, section: str) -> bytes | None:
    sec = section.strip()
    if sec == "":
        return data
    m = _SECTION_RE.match(sec)
    if not m:
        return None
    path, kind, names = m.group(1), (m.group(2) or "").upper(), m.group(3)
    if (names is not None) != kind.startswith("HEADER.FIELDS"):
        return None
    if path is None and kind == "MIME":
        return None
    root, _b, _bi = _Parser(data).entity(0, [], False, 0)
    part: _Part | None = root
    if path is not None:
        part = _find_part(root, path)
        if part is None:
            return None
        if kind == "":
            return data[part.body_start : part.body_end]
        if kind == "MIME":
            return data[part.hdr_start : part.hdr_end]
        if not part.rfc822 or not part.children:
            return None
        part = part.children[0]
    assert part is not None
    if kind == "TEXT":
        return data[part.body_start : part.body_end]
    block = data[part.hdr_start : part.hdr_end]
    if kind == "HEADER":
        return block
    return _filter_header(block, names or "", kind == "HEADER.FIELDS.NOT")


def fetch_section(raw: bytes, section: str) -> bytes | None:
    """IMAP ``BODY[section]`` (no partial), on the CRLF-normalised message.

    Sections are case-insensitive: ``""``, ``HEADER``, ``TEXT``, ``HEADER.FIELDS (A B)``,
    ``HEADER.FIELDS.NOT (A)``, ``1``, ``1.2``, ``2.MIME``, ``2.HEADER``, ``2.TEXT``,
    ``3.HEADER.FIELDS (X)``.  Returns None when the part does not exist, or when HEADER/TEXT is
    asked of a part that is not message/rfc822; Dovecot answers an empty string (``""``) in both
    cases, so the IMAP layer should send ``""`` for None to match it (RFC 9051 allows either).
    Never raises: a malformed section spec is None too."""
    try:
        out = _section(_normalize(raw), section)
    except Exception:  # noqa: BLE001
        return None
    if out is not None and b"\x00" in out:
        out = out.replace(b"\x00", b"\x80")  # Dovecot never sends NUL in BODY[] (only BINARY)
    return out


_KNOWN_CTES = frozenset(("7bit", "8bit", "binary", "base64", "quoted-printable"))


def _leaves(p: _Part) -> list[_Part]:
    if p.multipart or p.rfc822:
        return [x for c in p.children for x in _leaves(c)]
    return [p]


def _binary_message(data: bytes, root: _Part, start: int = 0, end: int | None = None, check: bool = False
                    ) -> bytes | None:
    """``BINARY[]``: like Dovecot, every base64/QP leaf is decoded in place and its
    Content-Transfer-Encoding header is moved to the end of its header as ``binary``."""
    out: list[bytes] = []
    pos = start
    leaves = _leaves(root)
    if any(leaf.bin_cte is not None and leaf.bin_cte.lower() not in _KNOWN_CTES for leaf in leaves):
        return None  # an unknown encoding anywhere wins over corrupt data (Dovecot: UNKNOWN-CTE)
    for leaf in leaves:
        c = "7bit" if leaf.bin_cte is None else leaf.bin_cte
        if c in ("7bit", "8bit", "binary"):
            continue
        dec = _binary_decode(data[leaf.body_start : leaf.body_end], c, check)
        if dec is None:
            return None
        block = data[leaf.hdr_start : leaf.hdr_end]
        eoh = block.endswith(b"\r\n\r\n") or block == b"\r\n"
        body_lines = block[:-2] if eoh else block
        if body_lines.endswith(b"\r\n"):
            body_lines = body_lines[:-2]
        kept = [raw for name, raw in _header_lines(body_lines) if name != "content-transfer-encoding"]
        kept.append(b"Content-Transfer-Encoding: binary\r\n")
        if eoh:
            kept.append(b"\r\n")
        out.append(data[pos : leaf.hdr_start])
        out.extend(kept)
        out.append(dec)
        pos = leaf.body_end
    out.append(data[pos:end])
    return b"".join(out)


def fetch_binary(raw: bytes, part: str, *, check: bool = False) -> bytes | None:
    """IMAP ``BINARY[part]``: the part body with its Content-Transfer-Encoding removed.

    ``""`` is the whole message.  For the whole message and for multipart/message parts every
    base64/QP leaf inside is decoded in place with its header rewritten (Dovecot does the same).
    None for a part that does not exist or has an unknown CTE (the server answers
    ``NO [UNKNOWN-CTE]``).  Corrupt base64/QP raises UndecodableContent with ``check`` (IMAP
    BINARY: ``NO [PARSE]``, as Dovecot); without it, it is decoded leniently (downloads)."""
    try:
        data = _normalize(raw)
        root, _b, _bi = _Parser(data).entity(0, [], False, 0)
        if part.strip() == "":
            return _binary_message(data, root, check=check)
        p = _find_part(root, part.strip())
        if p is None:
            return None
        if p.multipart or p.rfc822:
            return _binary_message(data, p, p.body_start, p.body_end, check)
        return _binary_decode(data[p.body_start : p.body_end], p.bin_cte, check)
    except UndecodableContent:
        raise
    except Exception:  # noqa: BLE001
        return None
