"""Logging with a redaction filter: whatever a caller passes by mistake, values
that look like LinkedIn cookies, bearer tokens or keys never reach the output."""
from __future__ import annotations

import logging
import os
import re
import sys

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


def _install_record_factory() -> None:
    """Redact at record creation, so every handler (ours, uvicorn's, a test's) sees clean text."""
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        RedactingFilter().filter(record)
        return record

    logging.setLogRecordFactory(factory)


def configure_logging(level: str = "INFO") -> None:
    global _configured
    if not _configured:
        _install_record_factory()
        logger = logging.getLogger("cookiesync")
        if not logging.getLogger().handlers and not os.environ.get("PYTEST_CURRENT_TEST"):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
            logger.propagate = False  # root has no handler of its own; ours prints
        _configured = True
    logging.getLogger("cookiesync").setLevel(level.upper())
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per sweep tick is noise
