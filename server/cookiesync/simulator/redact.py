"""What the simulator keeps and shows in place of a secret: a fingerprint.

The simulator never keeps a cookie value (``li_at``, ``li_a``) or a proxy password: it keeps
their fingerprints, which are enough to recognise the same cookie again and for a test to check
which cookie reached it (``fingerprint(value) == shown``). Secrets it must keep to act like
Unipile (its API key, the webhook secret header, a ``notify_url`` with its query) never appear
in a ``/_sim`` answer: ``scrub`` replaces them there by their fingerprints.
"""
from __future__ import annotations

import hashlib
import urllib.parse
from typing import Any

FINGERPRINT_PREFIX = "sha256:"
# Fields of a Unipile request body (contract §1: cookies, the credentials variant, the proxy's
# login) whose value is a secret; `scrub` fingerprints them wherever they are nested.
SECRET_FIELDS = frozenset({"access_token", "premium_token", "password", "li_at", "li_a"})


def fingerprint(value: str) -> str:
    """``sha256:`` and the first 16 hex digits of the value's SHA-256: stable, one-way, and short.
    64 bits tell apart any cookies a test makes; a cookie (or a 24-byte secret) has far more
    entropy than that, so the prefix reveals nothing usable about the value."""
    return FINGERPRINT_PREFIX + hashlib.sha256(value.encode()).hexdigest()[:16]


def maybe_fingerprint(value: str | None) -> str | None:
    return fingerprint(value) if value else None


def scrub_url(url: str) -> str:
    """An http(s) URL with each query value fingerprinted (the hosted-auth ``notify_url`` carries
    its secret in the query); anything else unchanged."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.query:
        return url
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    return urllib.parse.urlunsplit(parts._replace(
        query=urllib.parse.urlencode([(k, fingerprint(v)) for k, v in query], safe=":")))


def scrub(value: Any) -> Any:
    """A JSON value (a request body, a webhook registration, a config) as ``/_sim`` may show it:
    secret fields and header values fingerprinted, URL queries fingerprinted, the rest as it is."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in SECRET_FIELDS and isinstance(v, str):
                out[k] = fingerprint(v)
            elif k == "headers" and isinstance(v, list):  # webhook registration: [{key, value}]
                out[k] = [{**h, "value": fingerprint(h["value"])} if isinstance(h, dict)
                          and isinstance(h.get("value"), str) else scrub(h) for h in v]
            else:
                out[k] = scrub(v)
        return out
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str) and "?" in value:
        return scrub_url(value)
    return value
