"""Debian's Firefox (firefox-esr) driven headless over Marionette, for the extension's Firefox test
(tests/e2e/test_extension_firefox.py).

* `Marionette`: a client of Firefox's own remote protocol (`firefox --marionette`), which carries the
  WebDriver commands plus `Addon:Install`. The protocol is a TCP stream of `<length>:<JSON>` frames:
  the browser greets first, a command is `[0, id, name, params]`, its answer `[1, id, error, result]`.
  That is all a test needs, so it is spoken here rather than through Mozilla's `marionette_driver`
  package (whose dependencies, mozrunner/mozprofile/mozversion…, would each be another install).
* `HostTunnel`: the HTTP proxy every non-loopback request of that Firefox goes to
  (`network.proxy.*` prefs). Firefox has no counterpart of Chromium's `--host-resolver-rules`, which
  also changes the port: `network.dns.localDomains` sends a name to 127.0.0.1 on port 443 only. So the
  proxy opens CONNECT tunnels to `www.linkedin.com:443` (and the integrator's host) onto the fakes'
  loopback ports and refuses every other destination, which also keeps the browser off any other host.
* `Firefox`: one headless firefox-esr on a fresh profile whose `user.js` sets those prefs, with a
  Marionette session that accepts the fakes' self-signed certificates.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from socketserver import StreamRequestHandler, ThreadingTCPServer
from typing import Any

from tests.support.wait import wait_for

FIREFOX = Path("/usr/bin/firefox-esr")
# W3C WebDriver's key for an element reference in a command's parameters and answers.
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class MarionetteError(AssertionError):
    """The browser answered a command with an error (its name, message and stack)."""


class Marionette:
    """One connection to Firefox's Marionette server; `command(name, **params)` → the result."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.stream = self.sock.makefile("rb")
        self.ids = 0
        hello = self._read()
        assert hello.get("marionetteProtocol") == 3, hello

    def _read(self) -> Any:
        size = b""
        while (byte := self.stream.read(1)) != b":":
            if not byte:
                raise ConnectionError("Marionette closed the connection")
            size += byte
        return json.loads(self.stream.read(int(size)))

    def command(self, name: str, **params: Any) -> Any:
        self.ids += 1
        frame = json.dumps([0, self.ids, name, params]).encode()
        self.sock.sendall(str(len(frame)).encode() + b":" + frame)
        kind, answer_id, error, result = self._read()
        assert (kind, answer_id) == (1, self.ids), (kind, answer_id)
        if error:
            raise MarionetteError(f"{name}: {error.get('error')}: {error.get('message')}")
        # Most commands wrap a single value as {"value": …}; NewSession answers a plain object.
        return result.get("value", result) if isinstance(result, dict) else result

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


class HostTunnel:
    """`with HostTunnel({"www.linkedin.com": fake_port}) as proxy:` → `proxy.port`; each named host's
    port 443 is tunnelled to that loopback port, anything else refused (`proxy.refused` lists it)."""

    def __init__(self, routes: dict[str, int]) -> None:
        self.refused: list[str] = []
        targets = {f"{host}:443": port for host, port in routes.items()}
        tunnel = self

        class Handler(StreamRequestHandler):
            def handle(self) -> None:
                request = self.rfile.readline().decode("latin-1").split()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # the request's headers: nothing in them matters here
                if len(request) < 2 or request[0] != "CONNECT" or request[1] not in targets:
                    tunnel.refused.append(" ".join(request[:2]))
                    self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                upstream = socket.create_connection(("127.0.0.1", targets[request[1]]))
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                pipe(self.connection, upstream)

        class Server(ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "HostTunnel":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes (the TLS inside is end to end)."""
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], 30)
            if not ready:
                return
            for src in ready:
                data = src.recv(65536)
                if not data:
                    return
                (b if src is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()


def user_prefs(proxy_port: int, addon_uuids: dict[str, str]) -> dict[str, Any]:
    """The profile's prefs: a fixed moz-extension:// UUID per add-on id (so the test knows the popup's
    URL before installing), the tunnel as the proxy for everything but loopback, background services
    off, and console output on stdout (to check that no secret is logged)."""
    return {
        "marionette.port": 0,  # any free port; Firefox writes it to <profile>/MarionetteActivePort
        "extensions.webextensions.uuids": json.dumps(addon_uuids),
        "network.proxy.type": 1,  # manual
        "network.proxy.http": "127.0.0.1", "network.proxy.http_port": proxy_port,
        "network.proxy.ssl": "127.0.0.1", "network.proxy.ssl_port": proxy_port,
        "network.proxy.no_proxies_on": "",  # loopback (the backend) is never proxied anyway
        "network.proxy.allow_hijacking_localhost": False,
        "browser.startup.page": 0, "browser.startup.homepage": "about:blank",
        "browser.shell.checkDefaultBrowser": False,
        "datareporting.policy.dataSubmissionEnabled": False, "toolkit.telemetry.enabled": False,
        "app.update.disabledForTesting": True, "extensions.update.enabled": False,
        "extensions.getAddons.cache.enabled": False, "extensions.blocklist.enabled": False,
        "browser.safebrowsing.malware.enabled": False, "browser.safebrowsing.phishing.enabled": False,
        "network.captive-portal-service.enabled": False, "network.connectivity-service.enabled": False,
        # Remote settings: this dummy URL makes Firefox skip them, an override that release builds
        # honour only under MOZ_DISABLE_NONLOCAL_CONNECTIONS=1 (see Firefox.__init__).
        "services.settings.server": "data:,#remote-settings-dummy/v1",
        "devtools.console.stdout.content": True, "devtools.console.stdout.chrome": True,
    }


class Firefox:
    """A headless firefox-esr with a Marionette session; `close()` quits it."""

    addon: str = ""  # the installed add-on's moz-extension://<uuid> base URL, set by whoever installs it

    def __init__(self, profile: Path, prefs: dict[str, Any], log: Path) -> None:
        shutil.rmtree(profile, ignore_errors=True)
        profile.mkdir(parents=True)
        (profile / "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n"
                                                 for k, v in prefs.items()))
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            # --remote-allow-system-access: WebDriver:Navigate refuses moz-extension:// URLs without it
            # (driver.sys.mjs: only http(s), data, about:blank are "webdriver-safe"), and the popup is one.
            [str(FIREFOX), "--headless", "--marionette", "--remote-allow-system-access", "--no-remote",
             "--profile", str(profile)],
            stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            # Mozilla's own test harnesses set this: a socket to anything but loopback is refused inside
            # Firefox (the tunnel, the backend and the fakes are all on 127.0.0.1).
            env={**os.environ, "MOZ_DISABLE_NONLOCAL_CONNECTIONS": "1"})
        try:
            active = profile / "MarionetteActivePort"
            wait_for(lambda: active.exists() and active.read_text().strip() or self.process.poll() is not None,
                     30, 0.1, what=lambda _: f"Firefox's Marionette port within 30 s (log: {log})")
            assert self.process.poll() is None, \
                f"Firefox exited with {self.process.returncode}: {log.read_text()[-2000:]}"
            self.marionette = Marionette(int(active.read_text()))
            self.session = self.marionette.command("WebDriver:NewSession", acceptInsecureCerts=True)
        except BaseException:
            self._end_process(0)
            raise

    def __call__(self, name: str, **params: Any) -> Any:
        return self.marionette.command(name, **params)

    def install_temporary(self, path: Path) -> str:
        """Load an unpacked add-on as about:debugging does (temporary: no signature needed); → its id."""
        return self("Addon:Install", path=str(path), temporary=True)

    def find(self, css: str) -> dict[str, str]:
        return self("WebDriver:FindElement", using="css selector", value=css)

    def text(self, css: str) -> str:
        return self("WebDriver:GetElementText", id=self.find(css)[ELEMENT])

    def type(self, css: str, text: str) -> None:
        self("WebDriver:ElementSendKeys", id=self.find(css)[ELEMENT], text=text)

    def click(self, css: str) -> None:
        self("WebDriver:ElementClick", id=self.find(css)[ELEMENT])

    def script(self, body: str, *args: Any) -> Any:
        """Run `body` (a function body; a returned promise is awaited) in the current page."""
        return self("WebDriver:ExecuteScript", script=body, args=list(args))

    def wait_script(self, body: str, timeout: float, what: str, *args: Any) -> Any:
        """Poll `script(body, *args)` until it returns something truthy; → that value."""
        return wait_for(lambda: self.script(body, *args), timeout, 0.1, what=lambda _: f"{what} within {timeout} s")

    def wait_text(self, css: str, predicate, timeout: float, what: str) -> str:
        """Poll an element's text until `predicate(text)` holds; → the text."""
        texts: list[str | None] = []

        def check() -> str | None:
            texts.append(self.script("const e = document.querySelector(arguments[0]); return e && e.textContent;", css))
            return texts[-1] if texts[-1] is not None and predicate(texts[-1]) else None
        return wait_for(check, timeout, 0.1, what=lambda _: f"{what} within {timeout} s ({css}: {texts[-1]!r})")

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self("WebDriver:TakeScreenshot", full=True)))
        return path

    def output(self) -> str:
        """What Firefox printed so far (its console, with devtools.console.stdout.*)."""
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        try:
            self.marionette.command("Marionette:Quit", flags=["eForceQuit"])
        except (OSError, ConnectionError, MarionetteError):
            pass
        self.marionette.close()
        self._end_process(15)

    def _end_process(self, grace_s: float) -> None:
        """Wait `grace_s` for this Firefox to exit, then kill it (its own process only)."""
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_file.close()
