"""Fakes the browser extension talks to in the end-to-end tests.

* `FakeLinkedIn`: `https://www.linkedin.com` on a loopback port, over HTTPS with a
  self-signed certificate made here. Chromium reaches it through
  `--host-resolver-rules=MAP www.linkedin.com 127.0.0.1:<port>`. Serves `/feed/`
  with the signed-in member's id as LinkedIn does (HTML-escaped JSON inside a
  `<code>` element); which member, or a signed-out / id-less page, is switchable.
* `FakeBackend`: the extension-facing half of cookiesync (pair, sync, device), per
  the shapes in docs/design.md, recording every request. Its public methods are the
  interface the tests use (`url`, `requests`, `pairing_code`, `sync_requests`,
  `wait_for`, `fail_with`, `revoke_all_tokens`, `stop`, `start`), so the real service
  can be put behind the same interface later (e.g. the real app wrapped in an ASGI
  middleware that records requests and injects `fail_with` answers).
"""
from __future__ import annotations

import datetime as dt
import html
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from litestar import Litestar, Request, Response, delete, post

from tests.support.servers import ServerThread, free_port

# ----------------------------------------------------------------------------- LinkedIn


def make_self_signed_cert(directory: Path, hostname: str = "www.linkedin.com") -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname), x509.DNSName("*.linkedin.com")]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "linkedin.crt", directory / "linkedin.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def feed_html(plain_id: str | None) -> str:
    """A page shaped like linkedin.com/feed/: several escaped JSON blobs in <code> elements,
    only the "me" one carrying `data.plainId`."""
    blobs = [
        {"request": "/voyager/api/feed/updatesV2", "status": 200, "body": "bpr-guid-1001"},
        {"data": {"$type": "com.linkedin.voyager.feed.Updates", "paging": {"count": 10, "start": 0},
                  "*elements": ["urn:li:fs_updateV2:(urn:li:activity:7000000000000000001,MAIN_FEED)"]},
         "included": [{"$type": "com.linkedin.voyager.identity.shared.MiniProfile", "firstName": "Ann",
                       "lastName": "Other", "publicIdentifier": "ann-other-123",
                       "entityUrn": "urn:li:fs_miniProfile:ACoAAB0therMember"}]},
    ]
    if plain_id is not None:
        blobs.append({"request": "/voyager/api/me", "status": 200, "body": "bpr-guid-1002"})
        blobs.append({"data": {"$type": "com.linkedin.voyager.common.Me", "plainId": int(plain_id),
                               "premiumSubscriber": False,
                               "*miniProfile": f"urn:li:fs_miniProfile:ACoAA{plain_id}"},
                      "included": [{"$type": "com.linkedin.voyager.identity.shared.MiniProfile",
                                    "firstName": "Test", "lastName": "Member",
                                    "entityUrn": f"urn:li:fs_miniProfile:ACoAA{plain_id}"}]})
    codes = "\n".join(
        f'<code style="display: none" id="bpr-guid-{1000 + i}">\n  {html.escape(json.dumps(b), quote=True)}\n</code>'
        for i, b in enumerate(blobs)
    )
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Feed | LinkedIn</title>"
        "<meta name=\"clientSideIngraphs\" content=\"1\"></head><body class=\"render-mode-BIGPIPE\">"
        f"<div id=\"app-boot-bg-loader\"></div>{codes}<div class=\"application-outlet\"></div></body></html>"
    )


class FakeLinkedIn:
    """`with FakeLinkedIn(tmp_path) as li: li.member = "123"`; `li.mode` in feed | signed_out | no_plain_id."""

    def __init__(self, cert_dir: Path) -> None:
        self.member: str = "100200300"
        self.mode: str = "feed"
        self.requests: list[dict[str, Any]] = []
        self._cert = make_self_signed_cert(cert_dir)
        self.port = free_port()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                fake.requests.append({"path": self.path, "cookie": self.headers.get("Cookie", ""),
                                      "user_agent": self.headers.get("User-Agent", ""), "at": time.time()})
                if self.path.startswith("/feed") and fake.mode == "signed_out":
                    self._send(302, b"", {"Location": "https://www.linkedin.com/login?session_redirect=%2Ffeed%2F"})
                elif self.path.startswith("/feed"):
                    body = feed_html(fake.member if fake.mode == "feed" else None).encode()
                    self._send(200, body, {"Content-Type": "text/html; charset=utf-8"})
                elif self.path.startswith("/login"):
                    self._send(200, b"<!DOCTYPE html><title>LinkedIn Login</title><form></form>",
                               {"Content-Type": "text/html"})
                else:
                    self._send(404, b"not found", {"Content-Type": "text/plain"})

            def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*map(str, self._cert))
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def feed_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].startswith("/feed")]

    def __enter__(self) -> "FakeLinkedIn":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ----------------------------------------------------------------------------- backend

SYNC_KEYS = {"li_at", "li_a", "user_agent", "plain_id", "extension_version"}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    at: float
    status: int = 0

    @property
    def reason(self) -> str | None:
        return self.headers.get("x-sync-reason")

    @property
    def token(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None


@dataclass
class FakeBackend:
    """pair / sync / device, with the shapes of docs/design.md; keeps state across stop/start."""

    next_sync_in_s: int = 900
    port: int = field(default_factory=free_port)
    requests: list[Recorded] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)      # pairing code -> user_id
    tokens: dict[str, str] = field(default_factory=dict)     # live device token -> user_id
    failure: tuple[int, str | None] | None = None            # (status, Retry-After) answered to syncs
    _server: ServerThread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- the interface the tests use
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pairing_code(self, user_id: str = "user-1") -> str:
        code = f"{secrets.randbelow(10**8):08d}"
        self.codes[code] = user_id
        return code

    def fail_with(self, status: int | None, retry_after: str | None = None) -> None:
        self.failure = None if status is None else (status, retry_after)

    def revoke_all_tokens(self) -> None:
        self.tokens.clear()

    def sync_requests(self, reason: str | None = None, since: float = 0.0) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/extension/sync" and r.at >= since
                    and (reason is None or r.reason == reason)]

    def wait_for(self, predicate: Callable[[], Any], timeout: float, pump: Callable[[float], None],
                 what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}; "
                                     f"backend saw {[(r.method, r.path, r.reason, r.status) for r in self.requests]}")
            pump(0.05)

    def start(self) -> "FakeBackend":
        self._server = ServerThread(self._app(), port=self.port).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    # --- the app
    def _record(self, request: Request, raw: bytes, body: Any) -> Recorded:
        rec = Recorded(request.method, request.url.path, {k.lower(): v for k, v in request.headers.items()},
                       body, raw, time.time())
        with self._lock:
            self.requests.append(rec)
        return rec

    def _app(self) -> Litestar:
        fake = self

        def answer(rec: Recorded, status: int, content: Any = None, headers: dict[str, str] | None = None) -> Response:
            rec.status = status
            if content is None:
                return Response(content=b"", status_code=status, headers=headers)
            return Response(content=content, status_code=status, headers=headers, media_type="application/json")

        def error(rec: Recorded, status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
            return answer(rec, status, {"status_code": status, "detail": detail}, headers)

        async def parse(request: Request) -> tuple[Recorded, Any]:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            return fake._record(request, raw, body), body

        @post("/v1/extension/pair", status_code=201)
        async def pair(request: Request) -> Response:
            rec, body = await parse(request)
            if not isinstance(body, dict) or set(body) != {"pairing_code", "extension_version"}:
                return error(rec, 400, "expected {pairing_code, extension_version}")
            user_id = fake.codes.pop(body["pairing_code"], None)
            if user_id is None:
                return error(rec, 400, "unknown, used or expired pairing code")
            token = "dev_" + secrets.token_urlsafe(24)
            fake.tokens[token] = user_id
            return answer(rec, 201, {"device_token": token, "user_id": user_id,
                                     "next_sync_in_s": fake.next_sync_in_s})

        @post("/v1/extension/sync", status_code=200)
        async def sync(request: Request) -> Response:
            rec, body = await parse(request)
            if rec.token not in fake.tokens:
                return error(rec, 401, "unknown or revoked device token: pair the extension again")
            if fake.failure is not None:
                status, retry_after = fake.failure
                return error(rec, status, "simulated failure", {"Retry-After": retry_after} if retry_after else None)
            if not isinstance(body, dict) or set(body) != SYNC_KEYS:
                return error(rec, 400, f"bad keys: {sorted(body) if isinstance(body, dict) else body!r}")
            ok = (isinstance(body["li_at"], str) and len(body["li_at"]) >= 8
                  and (body["li_a"] is None or isinstance(body["li_a"], str))
                  and isinstance(body["user_agent"], str) and isinstance(body["extension_version"], str)
                  and isinstance(body["plain_id"], str) and body["plain_id"].isdigit())
            if not ok:
                return error(rec, 400, "bad field types")
            return answer(rec, 200, {"link_status": "connected", "unipile_account_id": f"acc_{body['plain_id']}",
                                     "next_sync_in_s": fake.next_sync_in_s})

        @delete("/v1/extension/device", status_code=200)
        async def unpair(request: Request) -> Response:
            rec, _ = await parse(request)
            if fake.tokens.pop(rec.token or "", None) is None:
                return error(rec, 401, "unknown or revoked device token")
            return answer(rec, 204)

        return Litestar([pair, sync, unpair], debug=False)
