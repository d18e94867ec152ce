"""The new-cookie bulk write in a process of its own: the transport, nothing of the plan.

In the server's process, the bulk write's Python (the policy, the encryption, binding the
rows) and the event loop took turns on one interpreter lock: with every sync carrying a
new cookie, the two threads together held it nearly all the time, and each hand-over left
it idle. Here the same `writer.write_in_bulk` runs, on the same kind of connection
(`db.hot.HotWrites`), in a child process with its own lock; the server's loop only sends
each batch down a pipe and reads the answers back.

Frames on the child's stdin and stdout: a 4-byte length, then msgpack. First the
settings, answered by READY; then batches of `models.NewCookie`, each with a number its
answer repeats (so a caller that stops waiting cannot shift the answers of the next),
answered by `models.CookieResult`s. The child ends when its stdin closes, so it also ends
with a server that was killed.

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
from dataclasses import dataclass

import msgspec

from cookiesync.db.bulk import BulkSQL
from cookiesync.db.engine import make_engine
from cookiesync.db.hot import HotWrites
from cookiesync.domain.reconnect import policy
from cookiesync.domain.reconnect.services import policy_config
from cookiesync.domain.sync import writer
from cookiesync.domain.sync.models import CookieResult, NewCookie
from cookiesync.logs import configure_logging
from cookiesync.security import KeyRing
from cookiesync.settings import Settings

log = logging.getLogger("cookiesync.sync")

READY = b"ready"
_LENGTH = struct.Struct(">I")
RESTART_AFTER_S = 30.0  # after a failed start or a lost child, the server's own path meanwhile


class Batch(msgspec.Struct, array_like=True):
    number: int
    jobs: list[NewCookie]


class Reply(msgspec.Struct, array_like=True):
    number: int
    results: list[CookieResult | None] | None = None  # None: left to the server's one-by-one path
    error: str | None = None                   # the batch's error type; nothing of it was written


class WriterLost(RuntimeError):
    """The batch's answer never came: whether it was written is unknown."""


class BatchFailed(RuntimeError):
    """The child rolled the batch back."""


def _frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


# --- the server's side ----------------------------------------------------------------------------
class WriterProcess:
    """The child, as the server's cookie writer sees it (a `writer.Bulk`). Started on the first
    batch, in the background, so an app that never receives a new cookie never starts one. A
    batch that comes while it is not running (starting, or lost and not yet restarted) goes to
    `fallback`, the server's own bulk write (None: one by one)."""

    def __init__(self, settings: Settings, fallback: writer.Bulk | None = None) -> None:
        self.settings = settings
        self.fallback = fallback
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

    async def write(self, jobs: list[NewCookie]) -> list[CookieResult | None]:
        """Each job's result, or None for a cookie the server must write itself (a state change
        for the policy's `apply_event`)."""
        self.ensure_started()
        if self.proc is None:
            return [None] * len(jobs) if self.fallback is None else await self.fallback.write(jobs)
        proc, number = self.proc, next(self.numbers)
        answer = self.waiting[number] = asyncio.get_running_loop().create_future()
        try:
            proc.stdin.write(_frame(self.encode(Batch(number, jobs))))
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
        return reply.results

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
        integrator_webhook_secret="", signing_secret="", metrics_token="")


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
class ChildRuntime:
    """The child's `writer.WriterContext`: what the bulk plan reads of the server's `Runtime`."""
    settings: Settings
    keyring: KeyRing
    writes: HotWrites
    bulk_sql: BulkSQL
    policy_config: policy.Config


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
    rt = ChildRuntime(settings, KeyRing(settings.encryption_keys), hot, BulkSQL(engine.dialect.name),
                      policy_config(settings))
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
        return Reply(batch.number, results=await writer.write_in_bulk(rt, batch.jobs))
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
