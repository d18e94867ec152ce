"""`cookiesync` command line: serve, migrate, keys, API keys, staff, Unipile set-up, settings docs."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from typing import Callable

import msgspec
import sqlalchemy as sa

from cookiesync.settings import PREFIX, Settings, SettingsError, ensure_local_secrets, local_secrets


def _settings(check: Callable[[Settings], object] | None = None) -> Settings:
    """The settings from the environment, with local mode's secrets filled in. `check` runs first,
    so a configuration it refuses leaves the data folder untouched (no secrets.json made for it)."""
    try:
        settings = Settings.from_env()
        if check is not None:
            check(settings)
        return ensure_local_secrets(settings, say=lambda m: print(m, file=sys.stderr))
    except SettingsError as exc:
        raise SystemExit(f"configuration error: {exc}") from None


# --- migrate / serve -------------------------------------------------------
def cmd_migrate(args) -> None:
    from cookiesync.db.engine import migrate
    from cookiesync.readiness import start_faults

    s = _settings()
    with start_faults(s):
        migrate(s.database)
    print(f"database is at the newest schema ({_safe_url(s.database)})")


def _safe_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


async def _demo(s: Settings) -> tuple[str, str, str, str]:
    """Local mode only: a demo user, an integrator API key and a support operator (both kept in the
    data dir), and a fresh pairing code."""
    from cookiesync.domain.integrator.services import seed_demo
    from cookiesync.domain.support.staff import add_staff
    from cookiesync.security import new_token

    stored, _created = local_secrets(s.data_dir, {"demo_api_key": lambda: new_token("csk"),
                                                  "demo_staff_password": lambda: new_token("pw")[:20]})
    key, staff_password = stored["demo_api_key"], stored["demo_staff_password"]
    await add_staff(s, "admin@localhost.test", "operator", staff_password, migrate_first=False)
    user_id, code = await seed_demo(s, key)
    return user_id, key, code, staff_password


def cmd_serve(args) -> None:
    import uvicorn

    from cookiesync.app import create_app
    from cookiesync.db.engine import migrate
    from cookiesync.domain.email.rendering import EmailTemplates
    from cookiesync.readiness import check_at_start, start_faults
    from cookiesync.serving import uvicorn_options

    # an override's unknown variable or syntax error: refused now, not when an email is written
    s = _settings(check=EmailTemplates)
    if args.host:
        s = msgspec.structs.replace(s, host=args.host)
    if args.port:
        s = msgspec.structs.replace(s, port=args.port)
    if args.workers:
        s = msgspec.structs.replace(s, workers=args.workers)
    with start_faults(s):
        migrate(s.database)
        check_at_start(s)
        demo = asyncio.run(_demo(s)) if s.mode == "local" else None
    lines = [
        "",
        "cookiesync is starting",
        f"  API:              {s.base_url}/v1/",
        f"  OpenAPI:          {s.base_url}/schema  (Swagger UI: {s.base_url}/schema/swagger)",
        f"  health / metrics: {s.base_url}/healthz  {s.base_url}/readyz  {s.base_url}/metrics",
        f"  database:         {_safe_url(s.database)}",
        f"  Unipile:          {'SIMULATED at ' + s.base_url + '/unipile-sim' if s.unipile_simulated else s.unipile_dsn}",
        f"  email:            {'SMTP ' + s.smtp_host if s.smtp_enabled else 'kept in the outbox (no SMTP configured)'}",
    ]
    if demo is not None:
        user_id, key, code, staff_password = demo
        lines += [
            "  demo (local mode only):",
            f"    user id:        {user_id}",
            f"    API key:        {key}",
            f"    pairing code:   {code}   (type it in the extension's popup with backend {s.base_url})",
            f"    try:            curl -H 'Authorization: Bearer {key}' {s.base_url}/v1/users/{user_id}/accounts",
            f"    support console: {s.base_url}/support/  (admin@localhost.test / {staff_password})",
        ]
        if s.unipile_simulated:
            # printed, never logged: a local banner for the person who started it
            from cookiesync.runtime import SIM_CONTROL_TOKEN, SIM_MOUNT, sim_control_token

            lines.append(f"    simulator control: {s.base_url}{SIM_MOUNT}/_sim/  (header X-Sim-Token: "
                         f"{sim_control_token(s)}; {SIM_CONTROL_TOKEN} in {os.path.join(s.data_dir, 'secrets.json')})")
    else:
        lines.append(f"  support console:  {s.base_url}/support/")
    print("\n".join(lines) + "\n", flush=True)
    common = dict(host=s.host, port=s.port, timeout_graceful_shutdown=20, **uvicorn_options(s))  # every worker too
    if s.workers > 1:
        # each worker builds its app from the same environment (secrets were written above)
        os.environ[PREFIX + "PORT"] = str(s.port)
        os.environ[PREFIX + "HOST"] = s.host
        uvicorn.run("cookiesync.app:app_from_env", factory=True, workers=s.workers, **common)
    else:
        uvicorn.run(create_app(s), **common)


# --- api keys ---------------------------------------------------------------
def cmd_apikey_create(args) -> None:
    from cookiesync.domain.integrator.services import create_api_key

    s = _settings()
    allowed = {"integrator", "support", "support:read"}
    scopes = [x.strip() for x in args.scopes.split(",") if x.strip()]
    if not scopes or not set(scopes) <= allowed:
        raise SystemExit(f"--scopes takes a comma-separated list of: {', '.join(sorted(allowed))}")
    key = asyncio.run(create_api_key(s, args.name, ",".join(scopes)))
    print(f"API key {args.name!r} created. It is shown once; store it now:", file=sys.stderr)
    print(key)


def cmd_apikey_revoke(args) -> None:
    from cookiesync.domain.integrator.services import revoke_api_key

    n = asyncio.run(revoke_api_key(_settings(), args.name))
    print(f"revoked {n} key(s) named {args.name!r}")


# --- simulator ----------------------------------------------------------------
def cmd_simulate(args) -> None:
    from cookiesync.simulator.app import SimulatorConfig, run_simulator

    public = f"http://{args.host}:{args.port}"
    config = SimulatorConfig(
        public_url=public, webhook_url=args.webhook_url,
        webhook_header=os.environ.get(PREFIX + "WEBHOOK_HEADER", "Unipile-Auth"),
        webhook_secret=os.environ.get(PREFIX + "WEBHOOK_SECRET") or None)
    # random unless given: no two simulators share a key
    config.api_key = args.api_key or config.api_key
    config.control_token = args.control_token or config.control_token
    print(f"Unipile simulator (SIMULATED) on {public}  DSN for cookiesync: {public}  API key: {config.api_key}  "
          f"control API: {public}/_sim/ (header X-Sim-Token: {config.control_token})", flush=True)
    run_simulator(args.host, args.port, config)


# --- unipile webhook registration ----------------------------------------------
def cmd_register_webhook(args) -> None:
    from cookiesync.domain.webhooks.registration import register_webhook
    from cookiesync.runtime import unipile_target
    from cookiesync.unipile.client import UnipileClient, UnipileError

    s = _settings()
    dsn, key = unipile_target(s)

    async def run() -> str:
        client = UnipileClient(dsn, key, timeout_s=s.unipile_timeout_s)
        try:
            return await register_webhook(s, client)
        finally:
            await client.aclose()

    try:
        print(asyncio.run(run()))
    except UnipileError as exc:
        raise SystemExit(f"Unipile refused: {exc}") from None


# --- key rotation ---------------------------------------------------------------
def cmd_keys_rotate(args) -> None:
    from cookiesync.keys import rotate

    s = _settings()
    asyncio.run(rotate(s, new_key=args.new_key, batch=args.batch, say=print))


# --- staff ----------------------------------------------------------------------
def cmd_staff_add(args) -> None:
    from cookiesync.domain.support.staff import add_staff

    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("Password: ")
    if len(password) < 10:
        raise SystemExit("password must be at least 10 characters")
    try:
        asyncio.run(add_staff(_settings(), args.email, args.role, password))
    except ValueError as exc:
        raise SystemExit(f"cannot add staff member: {exc}") from None
    print(f"staff member {args.email} ({args.role}) is ready")


def cmd_staff_disable(args) -> None:
    from cookiesync.domain.support.staff import disable_staff

    n = asyncio.run(disable_staff(_settings(), args.email))
    print(f"disabled {n} staff account(s)")


def cmd_staff_unlock(args) -> None:
    from cookiesync.domain.support.staff import unlock_staff

    n = asyncio.run(unlock_staff(_settings(), args.email))
    print(f"cleared the sign-in delays of {args.email} from {n} address(es)")


# --- settings documentation ----------------------------------------------------
def cmd_settings_docs(args) -> None:
    from pathlib import Path

    from cookiesync import settings_docs

    root = Path(args.root) if args.root else settings_docs.ROOT
    if not (root / settings_docs.README).is_file():
        raise SystemExit(f"no {settings_docs.README} in {root}: give the repository with --root")
    if args.check:
        stale = settings_docs.stale(root)
        if stale:
            raise SystemExit(f"out of date with the Settings fields: {', '.join(stale)} (run `make docs`)")
        print(f"{settings_docs.README} and {settings_docs.ENV_EXAMPLE} match the Settings fields")
        return
    changed = settings_docs.write(root)
    print(f"wrote {', '.join(changed)}" if changed else "settings docs were up to date")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="cookiesync", description="Keep LinkedIn accounts connected to Unipile.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("serve", help="migrate, then serve the API")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.add_argument("--workers", type=int, help="worker processes (default COOKIESYNC_WORKERS or 1)")
    sp.set_defaults(fn=cmd_serve)
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(fn=cmd_migrate)

    ak = sub.add_parser("apikey", help="integrator API keys").add_subparsers(dest="sub", required=True)
    c = ak.add_parser("create", help="create a key; prints it alone on the last line")
    c.add_argument("--name", required=True)
    c.add_argument("--scopes", default="integrator", help="integrator (default), support, support:read")
    c.set_defaults(fn=cmd_apikey_create)
    r = ak.add_parser("revoke", help="revoke keys by name")
    r.add_argument("--name", required=True)
    r.set_defaults(fn=cmd_apikey_revoke)

    sim = sub.add_parser("simulate", help="run the bundled Unipile simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--api-key", help="its Unipile API key (default: random, printed)")
    sim.add_argument("--control-token", help="the token of its /_sim control API (default: random, printed)")
    sim.add_argument("--webhook-url")
    sim.set_defaults(fn=cmd_simulate)

    un = sub.add_parser("unipile", help="Unipile set-up").add_subparsers(dest="sub", required=True)
    un.add_parser("register-webhook", help="ensure one account-status webhook points here").set_defaults(
        fn=cmd_register_webhook)

    ks = sub.add_parser("keys", help="cookie encryption keys").add_subparsers(dest="sub", required=True)
    rot = ks.add_parser("rotate", help="re-encrypt every stored cookie under the newest key")
    rot.add_argument("--new-key", action="store_true",
                     help="local mode: generate a new key first (production: put it first in COOKIESYNC_ENCRYPTION_KEYS)")
    rot.add_argument("--batch", type=int, default=500)
    rot.set_defaults(fn=cmd_keys_rotate)

    st = sub.add_parser("staff", help="support staff accounts").add_subparsers(dest="sub", required=True)
    sa_ = st.add_parser("add", help="add or update a staff member; password on stdin")
    sa_.add_argument("email")
    sa_.add_argument("--role", choices=["viewer", "operator"], default="viewer")
    sa_.set_defaults(fn=cmd_staff_add)
    sd = st.add_parser("disable", help="disable a staff member")
    sd.add_argument("email")
    sd.set_defaults(fn=cmd_staff_disable)
    su = st.add_parser("unlock", help="clear a staff member's sign-in delays, from every address")
    su.add_argument("email")
    su.set_defaults(fn=cmd_staff_unlock)

    sdoc = sub.add_parser("settings-docs", help="write the README's settings table and the env example "
                          "from the Settings fields")
    sdoc.add_argument("--check", action="store_true", help="write nothing; fail naming each stale file")
    sdoc.add_argument("--root", help="the repository (default: the one this package is in)")
    sdoc.set_defaults(fn=cmd_settings_docs)

    args = p.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
