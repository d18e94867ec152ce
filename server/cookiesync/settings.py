"""Every setting comes from the environment, read once into one typed object.

`Settings.from_env()` is what `cookiesync serve` uses; tests build their own
`Settings(...)` and hand it to `create_app`.
"""
from __future__ import annotations

import difflib
import email.utils
import fcntl
import ipaddress
import logging
import os
import secrets
import urllib.parse
from pathlib import Path
from typing import Annotated, Callable, Literal, Mapping

import msgspec

from cookiesync.security import KeyRingError, parse_key_ring

PREFIX = "COOKIESYNC_"
SIMULATED = "simulated"

# COOKIESYNC_* variables the project itself reads that are not settings, so that `from_env` does not
# take them for misspelled settings.
NOT_SETTINGS = frozenset({
    PREFIX + "TEST_POSTGRES_URL",    # tests/conftest.py: the PostgreSQL server the tests use
    PREFIX + "BENCH_SETTINGS",       # benchmarks/app.py: the settings file granian's app factory reads
    PREFIX + "BENCH_PLAIN_UVICORN",  # benchmarks/app.py: uvicorn's own HTTP protocol, for comparison
})

log = logging.getLogger("cookiesync")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


# Marks in a field's `msgspec.Meta(extra=...)`, for the documentation only: `settings_docs` shows them
# in the README's table and the env example. SECRET: a value to keep out of logs and version control.
# REQUIRED: one that `ensure_local_secrets` refuses production without (tests/test_settings_docs.py
# holds the marks to that list).
SECRET = {"secret": True}
REQUIRED = {"required_in_production": True}
REQUIRED_SECRET = SECRET | REQUIRED

# The shortest secrets production takes, in characters (what a length can tell; the README says how
# to make them random). The signing secret is an HMAC-SHA256 key, and anyone holding one reconnect
# link can test guesses of it offline: 43 characters carry its full 256 bits as URL-safe base64
# (`secrets.token_urlsafe(32)`). The webhook and hosted-auth secrets are only compared, one guess a
# request: 32 characters, 192 bits as URL-safe base64 (`token_urlsafe(24)`, what local mode makes).
MIN_SECRET_CHARS = {"signing_secret": 43, "webhook_secret": 32, "hosted_auth_secret": 32}


class Settings(msgspec.Struct, kw_only=True):
    """Every setting, each read from `COOKIESYNC_<NAME>`. The descriptions are the documentation:
    `cookiesync settings-docs` (`make docs`) renders them into README.md and deploy/cookiesync.env.example.
    The blank-line groups below are the sections of the env example (settings_docs.SECTIONS)."""

    mode: Annotated[Literal["local", "production"], msgspec.Meta(description=(
        "`local` or `production`. Local mode generates missing secrets into the data folder and adds a demo "
        "user. Production refuses to start without its secrets, a database URL and a real Unipile DSN and "
        "key, and refuses `COOKIESYNC_*` variables that name no setting (local mode warns about them)."))] = "local"
    data_dir: Annotated[str, msgspec.Meta(description=(
        "Folder for the generated local secrets (`secrets.json`, owner-only) and the default SQLite file."))] = "./data"
    database_url: Annotated[str, msgspec.Meta(description=(
        "SQLAlchemy URL of the database: `sqlite+aiosqlite:///…` or `postgresql+asyncpg://…`. "
        "Unset: SQLite in the data folder (`cookiesync.db`)."), extra=REQUIRED)] = ""
    host: Annotated[str, msgspec.Meta(description="Address `cookiesync serve` listens on.")] = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(description="TCP port `cookiesync serve` listens on.")] = 8000
    workers: Annotated[int, msgspec.Meta(description=(
        "uvicorn worker processes of `cookiesync serve`. More than one needs a real Unipile "
        "(the bundled simulator keeps its state in one process)."))] = 1
    public_url: Annotated[str, msgspec.Meta(description=(
        "This service's public base URL, used in email links and the hosted-auth `notify_url`. "
        "Unset: `http://HOST:PORT`."))] = ""

    unipile_dsn: Annotated[str, msgspec.Meta(description=(
        "Unipile base URL, e.g. `https://api8.unipile.com:13851` (`/api/v1` is appended). "
        "Unset or `simulated`: the bundled Unipile simulator (SIMULATED)."), extra=REQUIRED)] = ""
    unipile_api_key: Annotated[str, msgspec.Meta(description=(
        "Unipile access token, sent as `X-API-KEY`. Local mode with the bundled simulator: generated "
        "(the simulator's own key)."), extra=REQUIRED_SECRET)] = ""
    unipile_timeout_s: Annotated[float, msgspec.Meta(description=(
        "Seconds one Unipile call may take in all, from connecting to the last byte."))] = 20.0
    webhook_secret: Annotated[str, msgspec.Meta(description=(
        "Value of the secret header Unipile sends on account-status webhooks. Production: at least 32 "
        "characters, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`. "
        "Local mode: generated."), extra=REQUIRED_SECRET)] = ""
    webhook_header: Annotated[str, msgspec.Meta(description=(
        "Name of the header that carries `COOKIESYNC_WEBHOOK_SECRET`."))] = "Unipile-Auth"
    hosted_auth_secret: Annotated[str, msgspec.Meta(description=(
        "Secret in the query of the hosted-auth `notify_url`, so only Unipile can report a finished "
        "reconnect. Production: at least 32 characters, made as for `COOKIESYNC_WEBHOOK_SECRET`. "
        "Local mode: generated."), extra=REQUIRED_SECRET)] = ""

    smtp_host: Annotated[str, msgspec.Meta(description=(
        "SMTP server for user emails. Unset: emails stay in the outbox, where staff can read them."))] = ""
    smtp_port: Annotated[int, msgspec.Meta(description="SMTP server's port.")] = 25
    smtp_username: Annotated[str, msgspec.Meta(description="SMTP login; unset: no login.")] = ""
    smtp_password: Annotated[str, msgspec.Meta(description="SMTP password.", extra=SECRET)] = ""
    smtp_tls: Annotated[Literal["none", "starttls", "tls"], msgspec.Meta(description=(
        "`none`, `starttls` (upgrade a plain connection) or `tls` (TLS from the start, usually port 465)."))] = "none"
    email_from: Annotated[str, msgspec.Meta(description=(
        "`From:` address of user emails, `addr` or `Name <addr>`; without a name, "
        "`COOKIESYNC_PRODUCT_NAME` is the sender's name."))] = "noreply@localhost"
    product_name: Annotated[str, msgspec.Meta(description=(
        "The name your users know your product by, as the emails and reconnect pages say it "
        "(\"disconnected from Acme\"). Production refuses to start without it once `COOKIESYNC_SMTP_HOST` "
        "is set. Unset: \"the app you connected LinkedIn to\"."))] = ""
    support_contact: Annotated[str, msgspec.Meta(description=(
        "Where your users get help, shown in every email and reconnect page: an email address or an "
        "`http(s)://` URL. Unset: no help line."))] = ""
    logo_url: Annotated[str, msgspec.Meta(description=(
        "`https://` URL of your logo (shown about 32 px high) atop the HTML emails and the reconnect pages. "
        "Unset: no logo."))] = ""
    app_url: Annotated[str, msgspec.Meta(description=(
        "`http(s)://` URL of your own app, linked from every email and reconnect page. Unset: no link."))] = ""
    email_templates_dir: Annotated[str, msgspec.Meta(description=(
        "Folder whose `subject.txt`, `reconnect.txt` and `reconnect.html` replace the built-in email "
        "templates, file by file (Jinja2; variables in README, Emails to your users). Each is rendered "
        "once at start: an unknown variable or a syntax error refuses to start. Unset: the built-in ones."))] = ""

    retry_interval_s: Annotated[float, msgspec.Meta(description=(
        "Seconds between scheduled reconnect attempts of a disconnected account."))] = 3600.0
    retry_count: Annotated[int, msgspec.Meta(description=(
        "Scheduled reconnect attempts after the first one."))] = 4
    max_incident_age_s: Annotated[float, msgspec.Meta(description=(
        "When only transient (Unipile/LinkedIn) failures happen: seconds after which a reconnect gives up "
        "and emails the user."))] = 86400.0
    sweep_interval_s: Annotated[float, msgspec.Meta(description=(
        "Seconds between runs of the scheduler's sweep (due attempts, emails, notifications)."))] = 30.0
    sweep_lease_s: Annotated[float, msgspec.Meta(description=(
        "Seconds an instance holds the sweep's leadership; if it stops renewing, another instance "
        "takes over after this."))] = 120.0
    attempt_lease_s: Annotated[float, msgspec.Meta(description=(
        "Seconds one reconnect attempt or email is leased to an instance; a crashed one is retried after "
        "this. At least `COOKIESYNC_UNIPILE_TIMEOUT_S` + 1 s (checked at start), so no lease ends during "
        "a Unipile call."))] = 90.0
    unipile_concurrency: Annotated[int, msgspec.Meta(description=(
        "Reconnect attempts in flight towards Unipile at once, per instance."))] = 8
    connecting_grace_s: Annotated[float, msgspec.Meta(gt=0, description=(
        "Seconds a connected account may stay `CONNECTING` in Unipile (its status webhook) before it is "
        "treated as disconnected and reconnected with the newest cookie."))] = 900.0
    rate_limit_delay_s: Annotated[float, msgspec.Meta(ge=0, description=(
        "Seconds a reconnect attempt refused with 429 waits when Unipile sends no `Retry-After` (with one, "
        "at least that long). A 429 never uses up a scheduled attempt and never emails the user."))] = 60.0
    unipile_backoff_burst: Annotated[int, msgspec.Meta(ge=1, description=(
        "429 answers from Unipile within `COOKIESYNC_UNIPILE_BACKOFF_WINDOW_S` after which this instance "
        "stops calling Unipile for a while (the longest `Retry-After` seen, at least 2 s doubling with each "
        "burst in a row, at most `COOKIESYNC_UNIPILE_BACKOFF_MAX_S`)."))] = 5
    unipile_backoff_window_s: Annotated[float, msgspec.Meta(gt=0, description=(
        "Seconds in which `COOKIESYNC_UNIPILE_BACKOFF_BURST` 429s make a burst."))] = 10.0
    unipile_backoff_max_s: Annotated[float, msgspec.Meta(gt=0, description=(
        "Longest pause, in seconds, of this instance's calls to Unipile after a burst of 429s."))] = 300.0
    register_webhook: Annotated[Literal["on", "off"], msgspec.Meta(description=(
        "`on`: in production with `COOKIESYNC_PUBLIC_URL` set, make sure at start-up that one Unipile "
        "account-status webhook points at this service (as `cookiesync unipile register-webhook`), "
        "retrying with backoff while Unipile refuses; the service serves meanwhile. `off`: never."))] = "on"
    reconcile_interval_s: Annotated[float, msgspec.Meta(ge=0, description=(
        "Seconds between reconciliation passes: the sweep's leader lists every account from Unipile and "
        "handles a status whose webhook was lost as the webhook would have; an account Unipile no longer "
        "knows (absent from a complete listing, then 404 by id) is disabled. One pass also runs soon after "
        "start-up; a failed pass is logged and tried again after this. 0: never."))] = 900.0
    reconcile_missing_max_share: Annotated[float, msgspec.Meta(ge=0, le=1, description=(
        "Share of our linked accounts a complete listing may miss: past it (and past 10 accounts) the "
        "listing is not believed, nobody is disabled and operators are alerted (a wrong API key or "
        "workspace, an incident at Unipile)."))] = 0.10
    stale_cookie_s: Annotated[float, msgspec.Meta(description=(
        "Seconds since the last cookie after which a link counts as stale: its email asks the user to "
        "check the extension, and the support console flags it."))] = 86400.0
    scheduler: Annotated[Literal["on", "off"], msgspec.Meta(description=(
        "`on` or `off`: whether this instance takes part in the sweep."))] = "on"
    writer_process: Annotated[Literal["on", "off"], msgspec.Meta(description=(
        "`on` or `off`: new cookies' bulk writes in a child process of the server, "
        "or in the server's own process."))] = "on"
    trusted_proxies: Annotated[str, msgspec.Meta(description=(
        "Comma-separated addresses or CIDRs of proxies whose `X-Forwarded-For` is believed. "
        "Unset: the peer address is the client's."))] = ""
    default_country: Annotated[str, msgspec.Meta(pattern="^([A-Z]{2})?$", description=(
        "ISO 3166-1 alpha-2 country that a connect sends for a link whose sync addresses never named "
        "one (private or loopback addresses, an unlisted load balancer) and whose user has no integrator "
        "country or proxy. Unset: such a connect sends no location and Unipile places the session."))] = ""
    location_moves_after: Annotated[int, msgspec.Meta(ge=1, description=(
        "Syncs in a row from another country after which a link's location moves there (with "
        "`COOKIESYNC_LOCATION_MOVES_AFTER_S`); a sync from its own country starts the count again."))] = 5
    location_moves_after_s: Annotated[float, msgspec.Meta(ge=0, description=(
        "Seconds the syncs from another country must span, first to last, before the link's location "
        "moves there: a weekend abroad does not move the session, a move does."))] = 172800.0
    geoip_mmdb_path: Annotated[str, msgspec.Meta(description=(
        "A MaxMind-format country database (DB-IP IP to Country Lite, GeoLite2/GeoIP2 Country) asked "
        "first for a sync address's country; addresses it does not know fall back to the data shipped "
        "with `iptocc`. Unset: only that."))] = ""

    integrator_webhook_url: Annotated[str, msgspec.Meta(description=(
        "Where link changes (connected, needs_user, checkpoint, disabled) are POSTed, signed "
        "(Standard Webhooks). Unset: none are sent."))] = ""
    integrator_webhook_secret: Annotated[str, msgspec.Meta(description=(
        "Signing secret(s) `whsec_…` of those webhooks; several, space- or comma-separated, "
        "during a rotation."), extra=SECRET)] = ""
    notify_retry_base_s: Annotated[float, msgspec.Meta(description=(
        "Seconds before the first retry of a failed notification (×4 each time, at most 6 h, "
        "10 attempts)."))] = 5.0

    profile_retry_s: Annotated[float, msgspec.Meta(gt=0, description=(
        "Seconds before a failed read of a connected account's LinkedIn profile (name, public identifier, "
        "premium products, member check) is tried again: ×4 each time, at most 6 h; after 8 failures in a "
        "row it waits for the next connect. The connect itself never waits for the read."))] = 30.0
    member_check: Annotated[Literal["record", "enforce"], msgspec.Meta(description=(
        "What a member mismatch does (Unipile's `GET /users/me` names another LinkedIn member than the "
        "one the extension reported, so the cookie went with the wrong member): `record` writes it to the "
        "history, raises an operator alert and flags the link in the console; `enforce` also disables the "
        "link and deletes the Unipile account made with that cookie (a new connect needs staff to enable "
        "the link). Keep `record` until the equality is confirmed on a live account (contract §4)."))] = "record"

    retention_interval_s: Annotated[float, msgspec.Meta(description=(
        "Seconds between prunes of old rows. The sweep's leader runs them, one at a time across "
        "instances; each records when it ran and what it removed, for the console and `/metrics`."))] = 3600.0
    retention_batch_rows: Annotated[int, msgspec.Meta(description=(
        "Rows one prune statement removes at most, each in its own short transaction, so the sync path "
        "never waits behind a long one."))] = 2000
    retention_pause_s: Annotated[float, msgspec.Meta(description=(
        "Seconds a prune waits at least between two statements, leaving the database to the sync path; "
        "it waits three times as long as the statement took when that is longer."))] = 0.05
    retention_webhook_receipts_s: Annotated[float, msgspec.Meta(description=(
        "Seconds Unipile webhook receipts are kept: four times the 900 s window in which a repeated "
        "webhook is recognised (never less than that window). 0: kept forever."))] = 3600.0
    retention_cookie_days: Annotated[float, msgspec.Meta(description=(
        "Days the cookie history is kept (`cookie_received` rows and the unchanged-cookie repeat counters, "
        "`cookie_repeated`). Each link's newest `cookie_received` row is kept whatever its age. 0: kept "
        "forever."))] = 90.0
    retention_history_days: Annotated[float, msgspec.Meta(description=(
        "Days attempts and incidents are kept: closed incidents, the hourly attempt counters, and every "
        "other history row (attempts, webhooks, state changes, emails queued, staff actions). The history "
        "of an open incident is kept whatever its age. 0: kept forever."))] = 180.0
    retention_email_body_days: Annotated[float, msgspec.Meta(description=(
        "Days after sending that an email keeps its text and HTML bodies; then they are blanked, the row "
        "(address, subject, status, dates) stays. 0: bodies kept forever."))] = 30.0
    retention_notifications_days: Annotated[float, msgspec.Meta(description=(
        "Days delivered integrator notifications are kept (pending and failed ones stay). 0: kept "
        "forever."))] = 30.0

    max_accounts_per_user: Annotated[int, msgspec.Meta(description=(
        "LinkedIn members connected automatically per user; further members are stored, not connected."))] = 1
    sync_interval_s: Annotated[int, msgspec.Meta(description=(
        "Seconds the extension is told to wait between syncs (`next_sync_in_s`; at most 60 while a "
        "connect or reconnect is under way)."))] = 900
    cookie_repeat_window_s: Annotated[float, msgspec.Meta(description=(
        "Unchanged cookies are counted, and written to the history once per window of this many seconds."))] = 3600.0
    touch_flush_s: Annotated[float, msgspec.Meta(description=(
        "Last-seen times of unchanged syncs are written in one transaction at most this often, in seconds "
        "(a crash loses at most this much of them)."))] = 1.0
    pairing_code_ttl_s: Annotated[int, msgspec.Meta(description=(
        "Seconds a pairing code stays valid."))] = 900
    reconnect_link_ttl_s: Annotated[int, msgspec.Meta(description=(
        "Seconds the reconnect link in emails stays valid."))] = 7 * 86400
    token_cache_ttl_s: Annotated[float, msgspec.Meta(description=(
        "Seconds a device-token or API-key lookup is cached: a revocation takes effect within this on "
        "every instance."))] = 5.0
    link_cache_ttl_s: Annotated[float, msgspec.Meta(description=(
        "Seconds a sync's lookup of its link (state, cookie fingerprint) is cached per instance: a change "
        "made on another instance is seen within this."))] = 60.0
    max_body_bytes: Annotated[int, msgspec.Meta(description=(
        "Largest request body in bytes; larger ones are answered 413."))] = 16384
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024, description=(
        "Largest request head in bytes (request line and header fields); a larger one is answered 431 "
        "and its connection closed, without reading the rest."))] = 16384
    max_header_fields: Annotated[int, msgspec.Meta(ge=10, description=(
        "Most header fields in one request; more are answered 431."))] = 100
    header_timeout_s: Annotated[float, msgspec.Meta(gt=0, description=(
        "Seconds a request's head may take to arrive, from its first byte (for a new connection, from "
        "connecting); slower ones are answered 408 and closed."))] = 10.0
    body_timeout_s: Annotated[float, msgspec.Meta(gt=0, description=(
        "Seconds a request's body may take to arrive after its head; slower ones are answered 408 and "
        "closed."))] = 30.0
    encryption_keys: Annotated[str, msgspec.Meta(description=(
        "Cookie key ring, comma-separated `kid:base64(32 bytes)` entries, newest first "
        "(`cookiesync keys rotate` re-encrypts under the newest), checked when the settings are read. "
        "Local mode: generated."),
        extra=REQUIRED_SECRET)] = ""
    signing_secret: Annotated[str, msgspec.Meta(description=(
        "Signs reconnect links and staff CSRF tokens, keys cookie fingerprints. Production: at least 43 "
        "characters, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`. Local mode: generated."),
        extra=REQUIRED_SECRET)] = ""
    log_level: Annotated[str, msgspec.Meta(description=(
        "Log level of the `cookiesync` loggers: `DEBUG`, `INFO`, `WARNING` or `ERROR`."))] = "INFO"
    log_format: Annotated[Literal["auto", "text", "json"], msgspec.Meta(description=(
        "`text`, `json` (one object per line), or `auto`: JSON in production, text in local mode."))] = "auto"
    metrics_token: Annotated[str, msgspec.Meta(description=(
        "Bearer token Prometheus must send to read `/metrics` (`Authorization: Bearer <token>`; others get 401). "
        "Unset: production answers `/metrics` 404; local mode serves it to anyone who reaches it."),
        extra=SECRET)] = ""

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
        # What end users are shown, checked here so a bad value stops the start, naming its variable.
        _check_url("SUPPORT_CONTACT", self.support_contact, ("http", "https"), or_email=True)
        _check_url("LOGO_URL", self.logo_url, ("https",))  # http: mixed content, and mail clients block it
        _check_url("APP_URL", self.app_url, ("http", "https"))
        _check_email("EMAIL_FROM", self.email_from)
        if self.email_templates_dir and not Path(self.email_templates_dir).is_dir():
            raise SettingsError(f"{PREFIX}EMAIL_TEMPLATES_DIR: {self.email_templates_dir!r} is not a folder")
        if self.geoip_mmdb_path and not Path(self.geoip_mmdb_path).is_file():
            raise SettingsError(f"{PREFIX}GEOIP_MMDB_PATH: {self.geoip_mmdb_path!r} is not a file")
        if self.encryption_keys:
            try:
                parse_key_ring(self.encryption_keys)
            except KeyRingError as exc:
                raise SettingsError(f"{PREFIX}ENCRYPTION_KEYS: {exc}") from None
        if self.mode == "production":
            for name, least in MIN_SECRET_CHARS.items():
                if 0 < len(getattr(self, name)) < least:  # unset: reported with the other missing ones
                    raise SettingsError(f"{PREFIX}{name.upper()} is shorter than {least} characters; "
                                        f"make one with: python -c 'import secrets; "
                                        f"print(secrets.token_urlsafe({least * 3 // 4}))'")

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
            settings = msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            # "Expected `int`, got `str` - at `$.port`" -> name the variable
            message = str(exc)
            if "`$." in message:
                name = message.rsplit("`$.", 1)[1].rstrip("`")
                message = message.rsplit(" - at", 1)[0]
                raise SettingsError(f"{PREFIX}{name.upper()}: {message}") from None
            raise SettingsError(message) from None
        unknown = unknown_variables(env)
        if unknown:
            # a misspelled setting would otherwise leave its default in force without a word
            if settings.mode == "production":
                raise SettingsError(f"{unknown}; production mode refuses to start with them")
            log.warning("%s; ignored", unknown)
        return settings


def _check_url(name: str, value: str, schemes: tuple[str, ...], or_email: bool = False) -> None:
    """Unset, or a URL of one of `schemes` with a host (or, with `or_email`, an email address)."""
    if not value or (or_email and "://" not in value and _is_email(value)):
        return
    url = urllib.parse.urlsplit(value)
    if url.scheme not in schemes or not url.hostname or any(c.isspace() or c in '<>"' for c in value):
        wanted = " or ".join(f"`{s}://`" for s in schemes) + " URL" + (" or an email address" if or_email else "")
        raise SettingsError(f"{PREFIX}{name}: {value!r} is not an {wanted}")


def _check_email(name: str, value: str) -> None:
    if not _is_email(email.utils.parseaddr(value)[1]):
        raise SettingsError(f"{PREFIX}{name}: {value!r} is not an email address (`addr` or `Name <addr>`)")


def _is_email(addr: str) -> bool:
    local, _, domain = addr.rpartition("@")
    return bool(local and domain) and not any(c.isspace() or c in '<>",;:' for c in addr)


def unknown_variables(env: Mapping[str, str]) -> str:
    """The `COOKIESYNC_*` variables of `env` that name no setting, each with the closest setting, or
    "" if there are none. Names only: the value of a misspelled secret must not reach the log. An
    empty variable is left out, as `from_env` reads an empty value as unset."""
    names = [f.name for f in msgspec.structs.fields(Settings)]
    known = {PREFIX + name.upper() for name in names} | NOT_SETTINGS
    found = []
    for var in sorted(k for k, v in env.items() if k.startswith(PREFIX) and k not in known and v != ""):
        # compared without the prefix, which every name shares and would make anything look close
        close = difflib.get_close_matches(var[len(PREFIX):].lower(), names, n=1)
        found.append(f"{var} (did you mean {PREFIX}{close[0].upper()}?)" if close else f"{var} (no setting is close)")
    return "variables that name no setting: " + ", ".join(found) if found else ""


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
        if settings.smtp_enabled and not settings.product_name:
            # emails to real people in nobody's name read as phishing
            raise SettingsError(f"{PREFIX}PRODUCT_NAME: production mode emails your users ({PREFIX}SMTP_HOST "
                                "is set) and needs the name they know your product by")
        return settings

    wanted = {name: make for name, make in needed.items() if not getattr(settings, name)}
    if settings.unipile_simulated and not settings.unipile_api_key:
        # the bundled simulator's Unipile API key: one per data folder, not a constant all share
        wanted["unipile_api_key"] = lambda: secrets.token_urlsafe(24)
    if wanted:
        refuse_lost_secrets(settings)
    stored, created = local_secrets(settings.data_dir, wanted)
    if created:
        say(f"local mode: created secrets in {Path(settings.data_dir) / 'secrets.json'} (owner-only); "
            f"set {PREFIX}* variables in production")
    updates = {name: stored[name] for name in wanted}
    return msgspec.structs.replace(settings, **updates) if updates else settings


def refuse_lost_secrets(settings: Settings) -> None:
    """Local mode would make new secrets for a data folder whose SQLite database remains without its
    secrets.json: every stored cookie (encrypted under the lost key) and the demo API key would be
    lost, silently. Refused instead. A first start writes secrets.json before the database exists,
    so a database found first, then no secrets file, is a folder that lost it."""
    url = settings.database
    db = Path(url.split("///", 1)[-1]) if url.startswith("sqlite") and "///" in url else None
    if db is None or not db.is_file() or db.stat().st_size == 0:
        return
    path = Path(settings.data_dir) / "secrets.json"
    if not path.exists():
        raise SettingsError(
            f"{path} is missing, but the database {db} made with it is still there (its cookies are encrypted "
            f"with the lost keys): restore secrets.json from a backup, or move {db.name} away to start afresh")


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
