"""The new-cookie bulk write in a process of its own.

In the server's process, the bulk write's Python (the policy, the encryption, binding the
rows) and the event loop took turns on one interpreter lock: with every sync carrying a
new cookie, the two threads together held it nearly all the time, and each hand-over left
it idle. Here the same `writer._plan` runs, on the same kind of connection
(`db.hot.HotWrites`), in a child process with its own lock; the server's loop only sends
each batch down a pipe and reads the answers back.

Frames on the child's stdin and stdout: a 4-byte length, then msgpack. First the
settings, answered by READY; then batches, each with a number its answer repeats (so a
caller that stops waiting cannot shift the answers of the next). The child ends when its
stdin closes, so it also ends with a server that was killed.

A batch whose answer never comes (the child died, the pipe broke) fails as a whole, and
`GroupCommit` writes its cookies one by one in the server: a cookie the child did commit
is then found unchanged, so nothing is written twice.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from cookiesync.db.engine import make_engine
from cookiesync.db.hot import HotWrites
from cookiesync.domain.sync import writer
from cookiesync.domain.sync.schemas import SyncIn, SyncOut
from cookiesync.domain.sync.services import Device
from cookiesync.logs import configure_logging
from cookiesync.runtime import NamedCaches, policy_config
from cookiesync.security import KeyRing
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


class Batch(msgspec.Struct, array_like=True):
    number: int
    jobs: list[Job]


class Reply(msgspec.Struct, array_like=True):
    number: int
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
        self.numbers = itertools.count()
        self.waiting: dict[int, asyncio.Future] = {}  # batch number -> its answer
        self.reader: asyncio.Task | None = None
        self.ending: set[asyncio.Task] = set()  # lost children being reaped
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
            proc.stdin.write(_frame(self.encode(child_settings(self.settings))))
            await proc.stdin.drain()
            hello = await asyncio.wait_for(_read_frame(proc.stdout), 60)
            if hello != READY:
                raise WriterLost("the cookie writer did not start")
            self.proc = proc
            self.reader = asyncio.get_running_loop().create_task(self._read_answers(proc))
            log.info("cookie writer process %d started", proc.pid)
        except BaseException as exc:  # cancelled too (the server stopping): no child is left behind
            if proc is not None and proc.returncode is None:
                proc.kill()
            if not isinstance(exc, Exception):
                raise
            log.warning("cookie writer process did not start (%s); new cookies are written in the server",
                        type(exc).__name__)
            self.failed_at = time.monotonic()
        finally:
            self.starting = None

    async def write(self, jobs: list) -> list[tuple | None]:
        """Each job's (answer, attempt now, link id, changed), or None for a cookie the server
        must write itself (a state change for the policy's `apply_event`)."""
        proc, number = self.proc, next(self.numbers)
        answer = self.waiting[number] = asyncio.get_running_loop().create_future()
        try:
            proc.stdin.write(_frame(self.encode(Batch(number, [
                Job(j.device.id, j.device.user_id, j.body, j.ip, j.fingerprint, j.now) for j in jobs]))))
            await proc.stdin.drain()
            reply: Reply = await answer
        except (OSError, RuntimeError) as exc:  # a broken pipe, or the child lost while we waited
            self._lost(proc)
            raise WriterLost(f"the cookie writer process ended ({type(exc).__name__})") from None
        finally:
            self.waiting.pop(number, None)
        self.batches += 1
        if reply.error is not None:
            raise BatchFailed(f"the cookie writer rolled the batch back ({reply.error})")
        return [None if r is None else (r.out, r.attempt_now, r.link_id, r.changed) for r in reply.results]

    async def _read_answers(self, proc: asyncio.subprocess.Process) -> None:
        try:
            while True:
                reply = self.decode(await _read_frame(proc.stdout))
                answer = self.waiting.get(reply.number)
                if answer is not None and not answer.done():
                    answer.set_result(reply)
        except (asyncio.IncompleteReadError, OSError, msgspec.DecodeError):
            self._lost(proc)

    def _lost(self, proc: asyncio.subprocess.Process) -> None:
        """Every batch still waiting fails: whether the child wrote it is unknown."""
        if self.proc is proc:  # the first to notice reaps it
            self.proc = None
            self.failed_at = time.monotonic()
            log.warning("cookie writer process %d lost; new cookies are written in the server", proc.pid)
            ending = asyncio.get_running_loop().create_task(_end(proc, wait_s=5))
            self.ending.add(ending)
            ending.add_done_callback(self.ending.discard)
        for answer in self.waiting.values():
            if not answer.done():
                answer.set_exception(WriterLost("the cookie writer process ended"))

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
        if self.reader is not None:
            await self.reader  # it ends at the child's end of output
            self.reader = None
        if self.ending:
            await asyncio.wait(self.ending)


def child_settings(settings: Settings) -> Settings:
    """The server's settings without the secrets the child has no use for: it needs the
    database, the cookie key ring and the policy's durations, not Unipile's or SMTP's keys."""
    return msgspec.structs.replace(
        settings, unipile_api_key="", webhook_secret="", hosted_auth_secret="", smtp_password="",
        integrator_webhook_secret="", signing_secret="")


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
    keyring: KeyRing
    writes: HotWrites
    caches: dict = field(default_factory=dict)

    @property
    def policy_config(self):
        return policy_config(self.settings)


async def _serve(frames_in: int, frames_out) -> None:
    """Answer batches, one at a time, until stdin ends."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                       os.fdopen(frames_in, "rb", buffering=0))
    try:
        settings = msgspec.msgpack.decode(await _read_frame(reader), type=Settings)
    except asyncio.IncompleteReadError:
        return
    configure_logging(settings.log_level, settings.effective_log_format)
    engine = make_engine(settings.database)
    hot = HotWrites(engine)
    await hot.start()
    rt = ChildRuntime(settings, KeyRing(settings.encryption_keys), hot)
    decode = msgspec.msgpack.Decoder(Batch).decode
    encode = msgspec.msgpack.Encoder().encode
    frames_out.write(_frame(READY))
    frames_out.flush()
    try:
        while True:
            try:
                batch = decode(await _read_frame(reader))
            except asyncio.IncompleteReadError:
                break  # the server closed our stdin, or ended
            frames_out.write(_frame(encode(await _write(rt, batch))))
            frames_out.flush()
    finally:
        await hot.close()
        await engine.dispose()


async def _write(rt: ChildRuntime, batch: Batch) -> Reply:
    try:
        results = await writer.write_in_bulk(rt, [
            writer.NewCookie(Device(j.device_id, j.user_id), j.body, j.ip, j.fingerprint, j.now) for j in batch.jobs])
        return Reply(batch.number, results=[None if r is None else Done(*r) for r in results])
    except Exception as exc:  # its type only: a driver's message may quote a value
        log.warning("cookie writer: a batch was rolled back (%s)", type(exc).__name__)
        return Reply(batch.number, error=type(exc).__name__)


def child_main() -> None:
    frames_in = os.dup(0)
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into a frame
    try:
        asyncio.run(_serve(frames_in, frames_out))
    except Exception as exc:  # its type only, as for a batch: the server falls back to its own path
        log.error("cookie writer process ended (%s)", type(exc).__name__)
        sys.exit(1)


if __name__ == "__main__":
    child_main()
