"""The benchmarks' child processes: a free loopback port, and stopping them all (SIGTERM in reverse
start order, then SIGKILL for one that does not end in time)."""
from __future__ import annotations

import signal
import socket
import subprocess


_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on, and never one this process was given before: the kernel
    may hand a just-released port out again, and two of our servers told the same port (the week's
    simulator and its recipe's webhook server) end with one of them exiting on `EADDRINUSE`."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def stop_processes(procs: list[subprocess.Popen], timeout: float) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
