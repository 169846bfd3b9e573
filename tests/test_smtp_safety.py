"""Protocol safety: SMTP smuggling, size/line/command limits, timeouts, error budget."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import InProcessServer
from tests.support.smtp import RawSMTP, add_domain, add_mailbox, stored_messages


@pytest.fixture
def tight(tmp_path: Path, database_url: str) -> Iterator[InProcessServer]:
    srv = InProcessServer(
        tmp_path / "data", database_url, max_message_size=20_000, smtp_max_line_length=1000,
        smtp_timeout=2.5, smtp_data_timeout=4.0, smtp_max_errors=5, smtp_max_commands=30,
    ).start()
    try:
        add_domain(srv, "mx.test")
        add_mailbox(srv, "alice@mx.test")
        yield srv
    finally:
        srv.stop()


SMUGGLED = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"]


@pytest.mark.parametrize("ending", SMUGGLED, ids=lambda e: repr(e)[2:-1])
def test_smuggling_never_ends_data(server: InProcessServer, ending: bytes) -> None:
    add_domain(server, "mx.test")
    add_mailbox(server, "alice@mx.test")
    c = RawSMTP(server.ports["smtp"])
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
    assert c.cmd("RCPT TO:<alice@mx.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    payload = (b"Subject: outer\r\n\r\nbefore" + ending
               + b"MAIL FROM:<evil@remote.test>\r\nRCPT TO:<alice@mx.test>\r\nDATA\r\n"
               + b"Subject: smuggled\r\n\r\nSMUGGLED-BODY\r\n.\r\n")
    c.send(payload)
    code, _ = c.reply()
    assert code == 250
    # Exactly one reply for that DATA: the next thing the server says answers our NOOP.
    assert c.cmd("NOOP")[0] == 250
    assert c.cmd("QUIT")[0] == 221
    c.close()
    msgs = stored_messages(server, "alice@mx.test")
    assert len(msgs) == 1
    body = msgs[0].split(b"\r\n\r\n", 1)[1]
    assert b"SMUGGLED-BODY" in body and b"MAIL FROM:<evil@remote.test>" in body
    assert b"\n" not in body.replace(b"\r\n", b"")  # bare LFs were normalised to CRLF


def test_dot_stuffing_is_undone(server: InProcessServer) -> None:
    add_domain(server, "mx.test")
    add_mailbox(server, "alice@mx.test")
    c = RawSMTP(server.ports["smtp"])
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<bob@remote.test>")
    c.cmd("RCPT TO:<alice@mx.test>")
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: dots\r\n\r\n..\r\n...leading\r\nend\r\n.\r\n")
    assert c.reply()[0] == 250
    c.close()
    (msg,) = stored_messages(server, "alice@mx.test")
    assert msg.endswith(b"\r\n\r\n.\r\n..leading\r\nend\r\n")


STUFFED_BODY = b"..first\r\nplain\r\n...two\r\n.\tx\r\n..\r\nend\r\n"


def test_data_end_and_stuffing_across_reads(server: InProcessServer) -> None:
    """DATA arriving in two reads, cut at every offset (inside CRLF "." CRLF and inside the
    stuffed lines too): the end is found once, every stuffed dot is undone, nothing else."""
    add_domain(server, "mx.test")
    add_mailbox(server, "alice@mx.test")
    c = RawSMTP(server.ports["smtp"])
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.cmd("EHLO client.test")
    wire = STUFFED_BODY + b".\r\nNOOP\r\n"  # the body starts with a stuffed line; NOOP pipelined
    cuts = range(len(wire) - 5)
    for cut in cuts:
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@mx.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(wire[:cut])
        time.sleep(0.02)  # the server reads the first part on its own
        c.send(wire[cut:])
        assert c.reply()[0] == 250, cut
        assert c.reply()[0] == 250, cut  # the pipelined NOOP, answered once
    c.close()
    msgs = stored_messages(server, "alice@mx.test")
    assert len(msgs) == len(cuts)
    want = b".first\r\nplain\r\n..two\r\n\tx\r\n.\r\nend\r\n"
    for msg in msgs:  # after our trace header: the body as sent, unstuffed
        assert msg.endswith(b"\r\n" + want)
        assert msg.count(b"\r\n") == msg.count(b"\n")


def test_size_limit_enforced_while_reading(tight: InProcessServer) -> None:
    c = RawSMTP(tight.ports["smtp"])
    c.cmd("EHLO client.test")
    code, text = c.cmd("MAIL FROM:<bob@remote.test> SIZE=50000")
    assert code == 552 and text.startswith("5.3.4")
    assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250  # no SIZE declared: find out while reading
    assert c.cmd("RCPT TO:<alice@mx.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    line = b"x" * 76 + b"\r\n"
    c.send(b"Subject: big\r\n\r\n" + line * 1000 + b".\r\n")  # ~78 KB > 20 KB
    code, text = c.reply()
    assert code == 552 and text.startswith("5.3.4")
    # The connection stays usable and nothing was stored.
    assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
    assert c.cmd("RCPT TO:<alice@mx.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: small\r\n\r\nok\r\n.\r\n")
    assert c.reply()[0] == 250
    c.close()
    msgs = stored_messages(tight, "alice@mx.test")
    assert len(msgs) == 1 and b"Subject: small" in msgs[0]


def test_line_length_limits(tight: InProcessServer) -> None:
    c = RawSMTP(tight.ports["smtp"])
    c.cmd("EHLO client.test")
    code, _ = c.cmd(b"NOOP " + b"a" * 2000)
    assert code == 500
    c.cmd("MAIL FROM:<bob@remote.test>")
    c.cmd("RCPT TO:<alice@mx.test>")
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: long\r\n\r\n" + b"y" * 1500 + b"\r\n.\r\n")
    code, text = c.reply()
    assert code == 500 and text.startswith("5.5.6")
    c.close()
    assert stored_messages(tight, "alice@mx.test") == []


def test_idle_client_times_out(tight: InProcessServer) -> None:
    c = RawSMTP(tight.ports["smtp"])
    c.cmd("EHLO client.test")
    t0 = time.monotonic()
    assert c.closed()
    assert time.monotonic() - t0 < 6
    c.close()


def test_slow_data_times_out(tight: InProcessServer) -> None:
    c = RawSMTP(tight.ports["smtp"])
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<bob@remote.test>")
    c.cmd("RCPT TO:<alice@mx.test>")
    assert c.cmd("DATA")[0] == 354
    t0 = time.monotonic()
    closed = False
    for _ in range(10):  # one byte a second keeps the idle timer alive, not the DATA deadline
        try:
            c.send(b"z")
        except OSError:
            closed = True
            break
        time.sleep(1)
    if not closed:
        closed = c.closed()
    assert closed and time.monotonic() - t0 < 9  # well before 10 idle-timer resets would allow
    if c.buf:  # the reply may be lost to the reset when our write races the close
        assert b"421 4.4.2" in c.buf
    c.close()
    assert stored_messages(tight, "alice@mx.test") == []


def test_error_budget(tight: InProcessServer) -> None:
    c = RawSMTP(tight.ports["smtp"])
    c.cmd("EHLO client.test")
    codes = [c.cmd("RCPT TO:<alice@mx.test>")[0] for _ in range(5)]  # no MAIL: 503 each
    assert codes == [503] * 5
    c.send(b"RCPT TO:<alice@mx.test>\r\n")
    assert c.reply()[0] == 503
    code, text = c.reply()
    assert code == 421 and text.startswith("4.7.0")
    assert c.closed()
    c.close()


def test_command_budget(tight: InProcessServer) -> None:
    c = RawSMTP(tight.ports["smtp"])
    c.cmd("EHLO client.test")
    for _ in range(29):
        assert c.cmd("NOOP")[0] == 250
    c.send(b"NOOP\r\n")
    assert c.reply()[0] == 250
    assert c.reply()[0] == 421
    assert c.closed()
    c.close()
