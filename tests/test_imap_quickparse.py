"""quickparse.quick_split must agree with parser.split_command wherever it answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwright.imap.parser import ParseError, split_command
from mailwright.imap.quickparse import quick_split

_ALPHABET = list(b'aZ09 .:,*%+$"()[]{}~\\<>-_!#&\'\x00\x7f\xc3\r\n') + [0x20] * 6


def _reference(line: bytes) -> object:
    try:
        return split_command(line)
    except ParseError:
        return "error"


@pytest.mark.parametrize("line", [
    b"a1 FETCH 7 BODY.PEEK[]\r\n", b"a1 UID FETCH 1:* (UID FLAGS)\r\n", b"a1 uid fetch 3 BODY[]<0.10>\r\n",
    b"x NOOP\r\n", b"x NOOP \r\n", b"x  NOOP\r\n", b"x UID\r\n", b"x FETCH 1 BODY[1.MIME]\n",
    b"x FETCH 1 BODY[HEADER.FIELDS (FROM)]\r\n", b"* FETCH 1 FLAGS\r\n", b"a+ NOOP\r\n", b"x FETCH 1 BODY[\r\n",
    b"x FETCH 1 RFC822\r\n", b"x select INBOX\r\n", b"x LOGIN u p\r\n",
])
def test_known_lines(line: bytes) -> None:
    got = quick_split(line)
    if got is not None:
        assert got == _reference(line)
    if line in (b"a1 FETCH 7 BODY.PEEK[]\r\n", b"a1 uid fetch 3 BODY[]<0.10>\r\n", b"x FETCH 1 RFC822\r\n"):
        assert got is not None  # the hot path really is taken


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_ALPHABET), max_size=40))
def test_agrees_with_tokenizer(chars: list[int]) -> None:
    for line in (b"a1 FETCH " + bytes(chars) + b"\r\n", bytes(chars) + b"\r\n", b"t UID " + bytes(chars) + b"\n"):
        got = quick_split(line)
        if got is not None:
            assert got == _reference(line), line
