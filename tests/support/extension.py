"""The browser extension under test (`EXTENSION`, its source folder) and the test doubles
around its end-to-end tests (tests/e2e/).

* `FakeLinkedIn`: `https://www.linkedin.com` on a loopback port, over HTTPS with a
  self-signed certificate made here. Chromium reaches it through
  `--host-resolver-rules=MAP www.linkedin.com 127.0.0.1:<port>`. Serves `/feed/`
  with the signed-in member's id as LinkedIn does (HTML-escaped JSON inside a
  `<code>` element); which member, or a signed-out / id-less page, is switchable.
* `Recorder`: a small ASGI middleware put in front of the REAL cookiesync app (see
  `LiveBackend` in tests/e2e/conftest.py). It records every request to `/v1/extension/*` (body,
  headers, `X-Sync-Reason`, token, status, answer) and, only when a test asks with
  `fail_with(status, retry_after)`, answers syncs itself with that failure — the one
  thing the real service cannot be made to do on demand (a 5xx burst, a 429).
  Everything else is answered by the real service.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from tests.support.servers import free_port

EXTENSION = Path(__file__).resolve().parents[2] / "extension"

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


def https_server(port: int, handler: type, cert: tuple[Path, Path]) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """A threaded HTTPS server on 127.0.0.1:port (not started: start the thread)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, cert))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    return httpd, threading.Thread(target=httpd.serve_forever, daemon=True)


class HttpsFake:
    """A fake site on `https_server`: `with` starts its thread and shuts the server down."""

    httpd: ThreadingHTTPServer
    thread: threading.Thread

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeLinkedIn(HttpsFake):
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

        self.httpd, self.thread = https_server(self.port, Handler, self._cert)

    def feed_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].startswith("/feed")]


# ----------------------------------------------------------------------------- the integrator's web app

# The snippet of extension/README.md ("One-click pairing"), between its markers, is what the fake
# integrator's page runs: the documented code is the tested code.
README = EXTENSION / "README.md"


def integrator_snippet() -> str:
    text = README.read_text()
    start, end = "<!-- snippet:start -->", "<!-- snippet:end -->"
    block = text[text.index(start) + len(start):text.index(end)]
    return block.split("```html", 1)[1].rsplit("```", 1)[0]


class FakeIntegrator(HttpsFake):
    """The integrator's web app on HTTPS (any host name Chromium maps here with --host-resolver-rules).

    `/connect` is its "Connect LinkedIn" page: the README's snippet with the extension's id filled in.
    The snippet asks the app's own backend for a pairing code (`POST /api/linkedin/pairing-code`),
    which this fake answers with `mint()` (the test mints it through the cookiesync integrator API,
    as the integrator's backend would). `code_requests` counts those calls, with the Host they came to."""

    def __init__(self, cert_dir: Path, hostname: str, mint: Callable[[], str]) -> None:
        self.extension_id = ""
        self.store_url = "https://chromewebstore.google.com/detail/cookiesync-test"
        self.code_requests: list[str] = []
        self.port = free_port()
        cert = make_self_signed_cert(cert_dir, hostname)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if not self.path.startswith("/connect"):
                    return self._send(404, b"not found", "text/plain")
                page = (integrator_snippet().replace("YOUR_EXTENSION_ID", fake.extension_id)
                        .replace("YOUR_STORE_URL", fake.store_url))
                body = f"<!doctype html><html><head><meta charset=utf-8><title>Integrator app</title></head>" \
                       f"<body><h1>Your LinkedIn connection</h1>{page}</body></html>"
                self._send(200, body.encode(), "text/html; charset=utf-8")

            def do_POST(self) -> None:
                if self.path != "/api/linkedin/pairing-code":
                    return self._send(404, b"not found", "text/plain")
                fake.code_requests.append(self.headers.get("Host", ""))
                self._send(200, json.dumps({"code": mint()}).encode(), "application/json")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd, self.thread = https_server(self.port, Handler, cert)


# ----------------------------------------------------------------------------- recorder

EXTENSION_API = "/v1/extension/"


@dataclass
class Recorded:
    """One request the extension made to the service, and how it was answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    at: float
    status: int = 0          # 0 until the answer has been sent
    answer: Any = None       # the JSON answer, once sent
    injected: bool = False   # answered by `fail_with`, not by the service

    @property
    def reason(self) -> str | None:
        return self.headers.get("x-sync-reason")

    @property
    def token(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class Recorder:
    """Records the extension API's traffic; `wrap(app)` puts it in front of an ASGI app.

    The same Recorder wraps each app instance the test starts, so the record (and an
    injected failure) outlives a service restart."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.failure: tuple[int, str | None] | None = None
        self._lock = threading.Lock()

    def fail_with(self, status: int | None, retry_after: str | None = None) -> None:
        """Answer every sync with `status` (and `Retry-After`) until `fail_with(None)`."""
        self.failure = None if status is None else (status, retry_after)

    def snapshot(self) -> list[Recorded]:
        with self._lock:
            return list(self.requests)

    def wrap(self, app: Callable) -> Callable:
        recorder = self

        async def recording(scope: dict, receive: Callable, send: Callable) -> None:
            if scope["type"] != "http" or not scope["path"].startswith(EXTENSION_API):
                await app(scope, receive, send)
                return
            chunks: list[bytes] = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            raw = b"".join(chunks)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            rec = Recorded(scope["method"], scope["path"], headers, _json_or_none(raw), raw, time.time())
            with recorder._lock:
                recorder.requests.append(rec)

            failure = recorder.failure
            if failure is not None and scope["path"] == EXTENSION_API + "sync":
                status, retry_after = failure
                body = json.dumps({"status_code": status, "detail": "injected failure (test)"}).encode()
                out = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                if retry_after is not None:
                    out.append((b"retry-after", retry_after.encode()))
                rec.injected, rec.answer, rec.status = True, json.loads(body), status
                await send({"type": "http.response.start", "status": status, "headers": out})
                await send({"type": "http.response.body", "body": body})
                return

            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": raw, "more_body": False}
                return await receive()

            answer: list[bytes] = []
            started: list[int] = []

            async def tap(message: dict) -> None:
                if message["type"] == "http.response.start":
                    started.append(message["status"])
                elif message["type"] == "http.response.body":
                    answer.append(message.get("body", b""))
                    if not message.get("more_body", False):  # status last: non-zero means fully answered
                        rec.answer = _json_or_none(b"".join(answer))
                        rec.status = started[0]
                await send(message)

            await app(scope, replay, tap)

        recording.state = getattr(app, "state", None)  # type: ignore[attr-defined]  (Service.rt looks here)
        return recording
