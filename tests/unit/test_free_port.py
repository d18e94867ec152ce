"""`free_port` never hands out a port twice in one process, even when the kernel offers a just-released
one again (two servers told the same port: one exits with EADDRINUSE, as the week bench's simulator did)."""
from __future__ import annotations

import socket

from benchmarks import processes


def test_a_port_the_kernel_offers_again_is_not_given_twice(monkeypatch) -> None:
    offered = iter([47001, 47001, 47001, 47002])

    class Kernel:  # bind(0) answers these ports in turn, as a kernel may after a close
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, _addr) -> None:
            self.port = next(offered)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(socket, "socket", lambda *a, **k: Kernel())
    monkeypatch.setattr(processes, "_GIVEN", set())
    assert [processes.free_port(), processes.free_port()] == [47001, 47002]


def test_many_real_ports_are_all_distinct_and_free() -> None:
    ports = [processes.free_port() for _ in range(200)]
    assert len(set(ports)) == 200
    with socket.socket() as s:  # and each is one nobody listens on: it binds
        s.bind(("127.0.0.1", ports[-1]))
