"""CPU time and resident memory of a process, from /proc (Linux)."""
from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all its threads), in seconds."""
    return sum(user_system_seconds(pid))


def user_system_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of the whole process (all its threads), in seconds: what it ran of its own
    code, and what the kernel ran for it (system calls: sockets, pipes, file writes)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def user_system_many(pids) -> tuple[float, float]:
    user = system = 0.0
    for pid in pids:
        try:
            u, s = user_system_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        user, system = user + u, system + s
    return user, system


def cpu_seconds_many(pids) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def children(pid: int) -> list[int]:
    """The processes this one started (the service's cookie writer)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def service_cpu_seconds(pid: int) -> float:
    """The process and the children it runs now."""
    return cpu_seconds_many([pid] + children(pid))


def service_memory_kb(pid: int) -> dict[str, int]:
    """memory_kb of the process and its children, added up."""
    total: dict[str, int] = {}
    for p in [pid] + children(pid):
        try:
            for key, kb in memory_kb(p).items():
                total[key] = total.get(key, 0) + kb
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1])
    return out


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process, keyed "name:tid" (and, of that, in the kernel: "name:tid system")."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/comm") as fh:
                name = fh.read().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[f"{name}:{tid}"] = (int(fields[11]) + int(fields[12])) / _TICK
        out[f"{name}:{tid} system"] = int(fields[12]) / _TICK
    return out


def service_thread_cpu_seconds(pid: int) -> dict[str, float]:
    """thread_cpu_seconds of the process and of the children it runs now."""
    out = {}
    for p in [pid] + children(pid):
        try:
            out.update(thread_cpu_seconds(p))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out
