"""Listening sockets, bound once by the parent process and inherited by every worker.

Binding in the parent (without SO_REUSEPORT) is what makes a second `serve` on the same ports
fail at once with "address in use", while the N workers forked from it share each socket's
accept queue — the same sharing SO_REUSEPORT gives, without letting a stranger join in.
"""

from __future__ import annotations

import errno
import socket


class BindError(Exception):
    pass


def bind(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"{host}:{port} is already in use (is another mailwright serve running?)") from None
        if exc.errno == errno.EACCES:
            raise BindError(f"no permission to listen on {host}:{port} (ports below 1024 need root or "
                            "CAP_NET_BIND_SERVICE)") from None
        raise BindError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def bind_all(host: str, ports: dict[str, int]) -> dict[str, socket.socket]:
    """Bind every enabled listener, or none: on failure the ones already bound are closed."""
    socks: dict[str, socket.socket] = {}
    try:
        for name, port in ports.items():
            if port:
                socks[name] = bind(host, port)
    except BindError:
        for s in socks.values():
            s.close()
        raise
    return socks
