"""The event loop a Mailwright process runs on: uvloop when it is installed, else asyncio's own.

Why: one SMTP connection is a serial chain of four round trips per message (MAIL, RCPT, DATA,
the dot), each a socket wake-up, a read, a reply and a write, and on that chain asyncio's
pure-Python selector loop and transports cost more than any single piece of our own code.
uvloop (libuv; what uvicorn picks when present) does that part in C: 1 KiB messages on one
connection took 7% less CPU per message and ran 5% faster (medians of six alternating pairs;
the host's noise moves single runs by 10-15%). It is a drop-in loop: the protocol servers,
aiosmtpd's STARTTLS and the thread hand-offs run unchanged on it; only code that checked for
asyncio's own transport classes had to go (imap/compress.py).

``Settings.event_loop`` (``MAILWRIGHT_EVENT_LOOP``): ``auto`` (uvloop if importable), ``uvloop``
(required) or ``asyncio`` (the standard loop, e.g. to rule the loop out when debugging). The test
suite's in-process servers use the same choice (tests/support/server.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ValueError(f"event_loop must be auto, uvloop or asyncio, not {choice!r}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(coro: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run`` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(coro)
