"""Every setting comes from the environment, read once into one typed object.

`Settings.from_env()` is what `cookiesync serve` uses; tests build their own
`Settings(...)` and hand it to `create_app`.
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Callable, Literal, Mapping

import msgspec

PREFIX = "COOKIESYNC_"
SIMULATED = "simulated"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


class Settings(msgspec.Struct, kw_only=True):
    mode: Literal["local", "production"] = "local"
    data_dir: str = "./data"
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    public_url: str = ""

    unipile_dsn: str = ""
    unipile_api_key: str = ""
    unipile_timeout_s: float = 20.0
    webhook_secret: str = ""
    webhook_header: str = "Unipile-Auth"
    hosted_auth_secret: str = ""

    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    email_from: str = "cookiesync <noreply@localhost>"

    retry_interval_s: float = 3600.0
    retry_count: int = 4
    max_incident_age_s: float = 86400.0
    sweep_interval_s: float = 30.0
    sweep_lease_s: float = 120.0
    attempt_lease_s: float = 90.0
    unipile_concurrency: int = 8
    stale_cookie_s: float = 86400.0
    scheduler: Literal["on", "off"] = "on"
    writer_process: Literal["on", "off"] = "on"  # new cookies' bulk writes in a child process
    trusted_proxies: str = ""

    integrator_webhook_url: str = ""
    integrator_webhook_secret: str = ""
    notify_retry_base_s: float = 5.0

    max_accounts_per_user: int = 1
    sync_interval_s: int = 900
    cookie_repeat_window_s: float = 3600.0
    touch_flush_s: float = 1.0          # last-seen times are written at most this often
    pairing_code_ttl_s: int = 900
    reconnect_link_ttl_s: int = 7 * 86400
    token_cache_ttl_s: float = 5.0
    link_cache_ttl_s: float = 60.0
    max_body_bytes: int = 16384
    encryption_keys: str = ""
    signing_secret: str = ""
    log_level: str = "INFO"
    log_format: Literal["auto", "text", "json"] = "auto"

    @property
    def effective_log_format(self) -> str:
        if self.log_format != "auto":
            return self.log_format
        return "json" if self.mode == "production" else "text"

    # --- derived -------------------------------------------------------
    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{Path(self.data_dir).resolve() / 'cookiesync.db'}"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def unipile_simulated(self) -> bool:
        return self.unipile_dsn in ("", SIMULATED) or self.unipile_dsn.startswith(SIMULATED + "+")

    def __post_init__(self) -> None:
        # An attempt's lease must outlast its Unipile call, or another worker could take the link
        # over and call Unipile for it a second time while the first call still runs.
        if self.attempt_lease_s < self.unipile_timeout_s + 1:
            raise SettingsError(
                f"{PREFIX}ATTEMPT_LEASE_S ({self.attempt_lease_s:g}) must be at least "
                f"{PREFIX}UNIPILE_TIMEOUT_S ({self.unipile_timeout_s:g}) + 1 s: a lease that ends "
                "during a Unipile call lets another worker start the same attempt again")

    @property
    def smtp_enabled(self) -> bool:
        return bool(self.smtp_host)

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        nets = []
        for item in filter(None, (p.strip() for p in self.trusted_proxies.split(","))):
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise SettingsError(f"{PREFIX}TRUSTED_PROXIES: {item!r} is not an address or CIDR") from exc
        return nets

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in msgspec.structs.fields(cls):
            raw = env.get(PREFIX + field.name.upper())
            if raw is not None and raw != "":
                values[field.name] = raw
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            # "Expected `int`, got `str` - at `$.port`" -> name the variable
            message = str(exc)
            if "`$." in message:
                name = message.rsplit("`$.", 1)[1].rstrip("`")
                message = message.rsplit(" - at", 1)[0]
                raise SettingsError(f"{PREFIX}{name.upper()}: {message}") from None
            raise SettingsError(message) from None


def ensure_local_secrets(settings: Settings, say=print) -> Settings:
    """Fill in missing secrets.

    In local mode they are generated once and kept in the data folder (0600),
    so restarts keep decrypting the same cookies. Production refuses to start
    without them: a secret made up at boot would be lost at the next deploy.
    """
    needed = {
        "encryption_keys": lambda: "k1:" + secrets.token_urlsafe(32),
        "signing_secret": lambda: secrets.token_urlsafe(32),
        "webhook_secret": lambda: secrets.token_urlsafe(24),
        "hosted_auth_secret": lambda: secrets.token_urlsafe(24),
    }
    if settings.mode == "production":
        missing = [PREFIX + name.upper() for name in needed if not getattr(settings, name)]
        if settings.unipile_simulated:
            missing.append(PREFIX + "UNIPILE_DSN")
        if not settings.unipile_api_key:
            missing.append(PREFIX + "UNIPILE_API_KEY")
        if not settings.database_url:
            missing.append(PREFIX + "DATABASE_URL")
        if missing:
            raise SettingsError("production mode needs these settings: " + ", ".join(missing))
        return settings

    wanted = {name: make for name, make in needed.items() if not getattr(settings, name)}
    stored, created = local_secrets(settings.data_dir, wanted)
    if created:
        say(f"local mode: created secrets in {Path(settings.data_dir) / 'secrets.json'} (owner-only); "
            f"set {PREFIX}* variables in production")
    updates = {name: stored[name] for name in wanted}
    return msgspec.structs.replace(settings, **updates) if updates else settings


def local_secrets(data_dir: str, wanted: Mapping[str, Callable[[], str]]) -> tuple[dict[str, str], bool]:
    """The local secrets file's values, with each of `wanted` that is missing made and kept.
    Under an exclusive lock, and replaced whole (0600), so that instances starting together from
    one data folder agree on every value and never read a half-written file."""
    folder = Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "secrets.json"
    with open(path.with_suffix(".json.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stored: dict[str, str] = msgspec.json.decode(path.read_bytes()) if path.exists() else {}
        missing = [name for name in wanted if name not in stored]
        if missing:
            for name in missing:
                stored[name] = wanted[name]()
            fresh = path.with_suffix(".json.new")
            fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(msgspec.json.format(msgspec.json.encode(stored)))
            os.replace(fresh, path)
    return stored, bool(missing)
