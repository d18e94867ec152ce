"""The new-cookie bulk write in a process of its own.

In the server's process, the bulk write's Python (the policy, the encryption, binding the
rows) and the event loop took turns on one interpreter lock: with every sync carrying a
new cookie, the two threads together held it nearly all the time, and each hand-over left
it idle. Here the same `writer._plan` runs, on the same kind of connection
(`db.hot.HotWrites`), in a child process with its own lock; the server's loop only sends
each batch down a pipe and reads the answers back.

Frames on the child's stdin and stdout: a 4-byte length, then msgpack. First the
settings, answered by READY; then one batch at a time, each answered before the next is
sent (`GroupCommit` has one in flight). The child ends when its stdin closes, so it also
ends with a server that was killed.

A batch whose answer never comes (the child died, the pipe broke) fails as a whole, and
`GroupCommit` writes its cookies one by one in the server: a cookie the child did commit
is then found unchanged, so nothing is written twice.
"""
from __future__ import annotations

import asyncio
import logging
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from cookiesync.domain.sync.schemas import SyncIn, SyncOut
from cookiesync.runtime import NamedCaches, policy_config
from cookiesync.settings import Settings

log = logging.getLogger("cookiesync.sync")

READY = b"ready"
_LENGTH = struct.Struct(">I")
RESTART_AFTER_S = 30.0  # after a failed start or a lost child, the server's own path meanwhile


class Job(msgspec.Struct, array_like=True):
    device_id: str
    user_id: str
    body: SyncIn
    ip: str | None
    fingerprint: str
    now: datetime


class Done(msgspec.Struct, array_like=True):
    out: SyncOut
    attempt_now: bool
    link_id: int
    changed: bool


class Reply(msgspec.Struct, array_like=True):
    results: list[Done | None] | None = None  # None: left to the server's one-by-one path
    error: str | None = None                   # the batch's error type; nothing of it was written


class WriterLost(RuntimeError):
    """The batch's answer never came: whether it was written is unknown."""


class BatchFailed(RuntimeError):
    """The child rolled the batch back."""


def _frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


# --- the server's side ----------------------------------------------------------------------------
class WriterProcess:
    """The child, as the server's `GroupCommit` sees it. Started on the first batch, in the
    background (a cookie that arrives before it is ready is written by the server itself),
    so an app that never receives a new cookie never starts one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: asyncio.subprocess.Process | None = None
        self.starting: asyncio.Task | None = None
        self.failed_at: float | None = None
        self.restart_after_s = RESTART_AFTER_S
        self.batches = 0
        self.encode = msgspec.msgpack.Encoder().encode
        self.decode = msgspec.msgpack.Decoder(Reply).decode

    @property
    def ready(self) -> bool:
        return self.proc is not None

    def ensure_started(self) -> None:
        if self.proc is not None or self.starting is not None:
            return
        if self.failed_at is not None and time.monotonic() - self.failed_at < self.restart_after_s:
            return
        self.starting = asyncio.get_running_loop().create_task(self._start())

    async def wait_ready(self) -> bool:
        """Start it if it is not running, and wait for the outcome."""
        self.ensure_started()
        if self.starting is not None:
            await asyncio.shield(self.starting)
        return self.ready

    async def _start(self) -> None:
        proc = None
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", __name__, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            proc.stdin.write(_frame(self.encode(self.settings)))
            await proc.stdin.drain()
            hello = await asyncio.wait_for(_read_frame(proc.stdout), 60)
            if hello != READY:
                raise WriterLost("the cookie writer did not start")
            self.proc = proc
            log.info("cookie writer process %d started", proc.pid)
        except Exception as exc:
            log.warning("cookie writer process did not start (%s); new cookies are written in the server",
                        type(exc).__name__)
            self.failed_at = time.monotonic()
            if proc is not None:
                await _end(proc, wait_s=0)
        finally:
            self.starting = None

    async def write(self, jobs: list) -> list[tuple | None]:
        """Each job's (answer, attempt now, link id, changed), or None for a cookie the server
        must write itself (a state change for the policy's `apply_event`)."""
        proc = self.proc
        payload = self.encode([Job(j.device.id, j.device.user_id, j.body, j.ip, j.fingerprint, j.now) for j in jobs])
        try:
            proc.stdin.write(_frame(payload))
            await proc.stdin.drain()
            reply = self.decode(await _read_frame(proc.stdout))
        except BaseException as exc:  # a half-read answer would shift every later one: start afresh
            self._lost()
            if isinstance(exc, Exception):
                raise WriterLost(f"the cookie writer process ended ({type(exc).__name__})") from None
            raise
        self.batches += 1
        if reply.error is not None:
            raise BatchFailed(f"the cookie writer rolled the batch back ({reply.error})")
        return [None if r is None else (r.out, r.attempt_now, r.link_id, r.changed) for r in reply.results]

    def _lost(self) -> None:
        proc, self.proc = self.proc, None
        self.failed_at = time.monotonic()
        if proc is not None:
            log.warning("cookie writer process %d lost; new cookies are written in the server", proc.pid)
            if proc.returncode is None:
                proc.kill()

    async def close(self) -> None:
        if self.starting is not None:
            self.starting.cancel()
            try:
                await self.starting
            except asyncio.CancelledError:
                pass
        proc, self.proc = self.proc, None
        if proc is not None:
            await _end(proc, wait_s=10)


async def _read_frame(stream: asyncio.StreamReader) -> bytes:
    (size,) = _LENGTH.unpack(await stream.readexactly(_LENGTH.size))
    return await stream.readexactly(size)


async def _end(proc: asyncio.subprocess.Process, wait_s: float) -> None:
    """Close its stdin (it finishes the batch it holds, then exits); kill it if it lingers."""
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), wait_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()


# --- the child's side ------------------------------------------------------------------------------
@dataclass
class ChildRuntime(NamedCaches):
    """What `writer._plan` reads of the server's `Runtime`."""
    settings: Settings
    keyring: object
    writes: object  # db.hot.HotWrites
    caches: dict = field(default_factory=dict)

    @property
    def policy_config(self):
        return policy_config(self.settings)


def _read_frame_blocking(stream) -> bytes | None:
    """The next frame, or None at the end of the stream (a buffered read blocks for all of it)."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def child_main() -> None:
    from cookiesync.db.engine import make_engine
    from cookiesync.db.hot import HotWrites
    from cookiesync.domain.sync import writer
    from cookiesync.domain.sync.services import Device
    from cookiesync.logs import configure_logging
    from cookiesync.security import KeyRing

    frames_in = os.fdopen(os.dup(0), "rb")
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into a frame
    first = _read_frame_blocking(frames_in)
    if first is None:
        return
    settings = msgspec.msgpack.decode(first, type=Settings)
    configure_logging(settings.log_level, settings.effective_log_format)
    loop = asyncio.new_event_loop()
    engine = make_engine(settings.database)
    hot = HotWrites(engine)
    loop.run_until_complete(hot.start())
    rt = ChildRuntime(settings, KeyRing(settings.encryption_keys), hot)
    decode = msgspec.msgpack.Decoder(list[Job]).decode
    encode = msgspec.msgpack.Encoder().encode
    frames_out.write(_frame(READY))
    frames_out.flush()
    try:
        while (frame := _read_frame_blocking(frames_in)) is not None:
            try:
                jobs = [writer.NewCookie(Device(j.device_id, j.user_id), j.body, j.ip, j.fingerprint, j.now)
                        for j in decode(frame)]
                results = loop.run_until_complete(writer.write_in_bulk(rt, jobs))
                reply = Reply(results=[None if r is None else Done(*r) for r in results])
            except Exception as exc:  # its type only: a driver's message may quote a value
                log.warning("cookie writer: a batch was rolled back (%s)", type(exc).__name__)
                reply = Reply(error=type(exc).__name__)
            frames_out.write(_frame(encode(reply)))
            frames_out.flush()
    finally:
        loop.run_until_complete(hot.close())
        loop.run_until_complete(engine.dispose())
        loop.close()


if __name__ == "__main__":
    child_main()
