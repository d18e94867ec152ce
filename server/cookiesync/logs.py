"""Logging with a redaction filter: whatever a caller passes by mistake, values
that look like LinkedIn cookies, bearer tokens or keys never reach the output."""
from __future__ import annotations

import contextvars
import itertools
import logging
import re
import secrets
import sys

import msgspec

REDACTIONS = [
    (re.compile(r"AQ[A-Za-z0-9_\-]{20,}"), "[redacted-cookie]"),           # li_at / li_a shapes
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}"), r"\1[redacted]"),
    (re.compile(r"\b(dev|csk)_[A-Za-z0-9_\-]{16,}"), r"\1_[redacted]"),       # our device tokens / API keys
    (re.compile(r"(?i)((?:li_at|li_a|access_token|premium_token|password|secret|api[_-]?key|token)"
                r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',&}]+"), r"\1[redacted]"),
]


def redact(text: str) -> str:
    for pattern, repl in REDACTIONS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.msg, record.args = clean, None
        return True


_configured = False
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._\-]{1,64}\Z")  # \Z: `$` would take a final "\n"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the request being served."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return msgspec.json.encode(entry).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [req {rid}]" if rid else line


def request_id_middleware(app):
    """ASGI middleware: take a sane X-Request-ID or make one; echo it; tag every log line.
    Made ids are a per-process random prefix and a counter: unique across instances
    without a system call per request (os.urandom is one)."""
    prefix = secrets.token_hex(4)
    counter = itertools.count(1)

    async def middleware(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID_OK.match(given) else f"{prefix}{next(counter):08x}"
        token = request_id.set(rid)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers") or []) + [(b"x-request-id", rid.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)

    return middleware


def _install_record_factory() -> None:
    """Redact at record creation, so every handler (ours, uvicorn's, a test's) sees clean text."""
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        RedactingFilter().filter(record)
        record.request_id = request_id.get()
        return record

    logging.setLogRecordFactory(factory)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    global _configured
    if not _configured:
        _install_record_factory()
        logger = logging.getLogger("cookiesync")
        if not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(JsonFormatter() if fmt == "json" else
                                 TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
            logger.propagate = False  # root has no handler of its own; ours prints
        _configured = True
    logging.getLogger("cookiesync").setLevel(level.upper())
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per sweep tick is noise
