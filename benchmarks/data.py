"""Getting the database into shape: paired devices through the real API, links
set to 'connected' by SQL, synthetic rows in bulk, due incidents for the sweep."""
from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta, timezone

import httpx
import sqlalchemy as sa

from benchmarks.load import USER_AGENT, base_cookie, sync_body

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_USER = "bench-u"      # users paired through the API (the hammered devices)
BULK_USER = "bulk-u"        # synthetic rows inserted by SQL
SWEEP_USER = "sweep-u"      # links in due incidents


# --- PostgreSQL databases -------------------------------------------------------------
async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_create_database() -> tuple[str, str]:
    name = f"cs_bench_{secrets.token_hex(5)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    return name, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def pg_drop_database(name: str) -> None:
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def pg_backend_pids(dbname: str) -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", dbname)
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


# --- devices through the real API --------------------------------------------------------
def plain_id_for(i: int) -> str:
    return str(500_000_000 + i)


async def pair_devices(base_url: str, api_key: str, n: int, concurrency: int = 8) -> list[tuple[str, str, str]]:
    """n users, each: PUT user, mint a pairing code, pair, first sync. Returns (token, plain_id, li_at)."""
    out: list[tuple[str, str, str] | None] = [None] * n
    sem = asyncio.Semaphore(concurrency)
    auth = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        async def one(i: int) -> None:
            async with sem:
                uid = f"{BENCH_USER}{i}"
                r = await http.put(f"/v1/users/{uid}", json={"email": f"{uid}@example.com", "display_name": uid},
                                   headers=auth)
                r.raise_for_status()
                r = await http.post(f"/v1/users/{uid}/pairing-codes", headers=auth)
                r.raise_for_status()
                r = await http.post("/v1/extension/pair", json={"pairing_code": r.json()["code"],
                                                                "extension_version": "1.4.2"})
                r.raise_for_status()
                token = r.json()["device_token"]
                li_at = base_cookie(i)
                r = await http.post("/v1/extension/sync", content=sync_body(li_at, plain_id_for(i)),
                                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                r.raise_for_status()
                out[i] = (token, plain_id_for(i), li_at)

        await asyncio.gather(*(one(i) for i in range(n)))
    return [d for d in out if d is not None]


async def resend_cookies(base_url: str, devices: list[tuple[str, str, str]], concurrency: int = 16) -> int:
    """Send each device's base cookie once (after a changed-cookie run) so later
    'unchanged' runs really are unchanged. Returns non-200 count."""
    sem = asyncio.Semaphore(concurrency)
    bad = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        async def one(dev) -> None:
            nonlocal bad
            token, pid, li_at = dev
            async with sem:
                r = await http.post("/v1/extension/sync", content=sync_body(li_at, pid),
                                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                bad += r.status_code != 200

        await asyncio.gather(*(one(d) for d in devices))
    return bad


# --- SQL -----------------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(timezone.utc)


def _ts(engine, when: datetime):
    """A timestamp bind value as UTCDateTime would store it."""
    if engine.dialect.name == "sqlite":
        return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return when


def _ts_sql(engine, name: str) -> str:
    return f"CAST(:{name} AS timestamptz)" if engine.dialect.name == "postgresql" else f":{name}"


async def wait_attempts_settled(engine, user_prefix: str, timeout_s: float = 60) -> None:
    """Wait until the first connects of the paired links are no longer leased/running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        async with engine.connect() as conn:
            busy = (await conn.execute(sa.text(
                "SELECT count(*) FROM links WHERE user_id LIKE :p AND lease_owner IS NOT NULL"),
                {"p": user_prefix + "%"})).scalar()
        if not busy:
            return
        await asyncio.sleep(0.2)


async def mark_connected(engine, user_prefix: str = BENCH_USER) -> int:
    """Links of the paired devices: 'connected' with a fake Unipile account id, no incident,
    so a changed cookie is stored for the next reconnect and triggers no call."""
    now = _now()
    await wait_attempts_settled(engine, user_prefix)
    async with engine.begin() as conn:
        await conn.execute(sa.text(
            f"UPDATE incidents SET closed_at = {_ts_sql(engine, 'now')}, outcome = 'connected' "
            "WHERE closed_at IS NULL AND link_id IN (SELECT id FROM links WHERE user_id LIKE :p)"),
            {"now": _ts(engine, now), "p": user_prefix + "%"})
        res = await conn.execute(sa.text(
            "UPDATE links SET state = 'connected', unipile_account_id = 'bench-acc-' || id, incident_id = NULL, "
            "incident_started_at = NULL, next_slot = 0, next_attempt_at = NULL, attempt_trigger = NULL, "
            "lease_owner = NULL, lease_until = NULL, last_error = NULL WHERE user_id LIKE :p"),
            {"p": user_prefix + "%"})
        return res.rowcount


async def count_links(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(sa.text("SELECT count(*) FROM links"))).scalar()


async def bulk_links(engine, start: int, count: int) -> None:
    """`count` synthetic users, each with one link (random 256-byte 'ciphertext', a
    fingerprint, mostly connected; reconnecting ones are due in a day, so no sweep
    picks them up). Generated inside the database in one statement per table."""
    if count <= 0:
        return
    now = _now()
    end = start + count - 1
    pg = engine.dialect.name == "postgresql"
    if pg:
        seq = "generate_series(CAST(:start AS integer), CAST(:end AS integer)) AS s(x)"
        blob = "decode(md5(x::text) || md5((x+1)::text) || repeat(md5((x+2)::text), 14), 'hex')"
        fp = "md5(x::text) || md5((x*7)::text)"
        true, xs = "true", "x::text"
        state = ("CASE WHEN x % 100 < 90 THEN 'connected' WHEN x % 100 < 95 THEN 'needs_user' "
                 "WHEN x % 100 < 98 THEN 'reconnecting' ELSE 'disabled' END")
        due = (f"CASE WHEN x % 100 BETWEEN 95 AND 97 THEN {_ts_sql(engine, 'later')} "
               "+ make_interval(secs => x % 86400) END")
        with_ = ""
        src = f"FROM {seq}"
    else:
        with_ = "WITH RECURSIVE s(x) AS (SELECT :start UNION ALL SELECT x + 1 FROM s WHERE x < :end) "
        blob, fp, true, xs = "randomblob(256)", "hex(randomblob(32))", "1", "CAST(x AS TEXT)"
        state = ("CASE WHEN x % 100 < 90 THEN 'connected' WHEN x % 100 < 95 THEN 'needs_user' "
                 "WHEN x % 100 < 98 THEN 'reconnecting' ELSE 'disabled' END")
        due = "CASE WHEN x % 100 BETWEEN 95 AND 97 THEN :later END"
        src = "FROM s"
    params = {"start": start, "end": end, "now": _ts(engine, now), "later": _ts(engine, now + timedelta(days=1)),
              "ua": USER_AGENT}
    n = _ts_sql(engine, "now")
    async with engine.begin() as conn:
        await conn.execute(sa.text(
            f"{with_}INSERT INTO users (user_id, email, display_name, created_at, updated_at) "
            f"SELECT '{BULK_USER}' || {xs}, '{BULK_USER}' || {xs} || '@example.com', 'Bulk ' || {xs}, {n}, {n} {src}"),
            params)
        await conn.execute(sa.text(
            f"{with_}INSERT INTO links (user_id, plain_id, state, auto_connect, unipile_account_id, cookie_ciphertext, "
            "cookie_key_id, cookie_fingerprint, user_agent, client_ip, date_last_cookie, next_slot, next_attempt_at, "
            "attempts_in_incident, created_at, updated_at) "
            f"SELECT '{BULK_USER}' || {xs}, CAST(700000000 + x AS TEXT), {state}, {true}, 'bulk-acc-' || {xs}, {blob}, "
            f"'k1', {fp}, :ua, '127.0.0.1', {n}, 0, {due}, 0, {n}, {n} {src}"), params)
    if pg:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("ANALYZE links"))
            await conn.execute(sa.text("ANALYZE users"))


async def create_unipile_accounts(unipile_url: str, api_key: str, cookies: list[str],
                                  concurrency: int = 16) -> list[str]:
    """Create one account per cookie in the simulator (POST /api/v1/accounts), so the
    reconnects of the sweep find them. Returns the account ids, in order."""
    out: list[str] = [""] * len(cookies)
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=unipile_url + "/api/v1", timeout=60,
                                 headers={"X-API-KEY": api_key}) as http:
        async def one(i: int) -> None:
            async with sem:
                r = await http.post("/accounts", json={"provider": "LINKEDIN", "access_token": cookies[i],
                                                       "user_agent": USER_AGENT})
                r.raise_for_status()
                out[i] = r.json()["account_id"]

        await asyncio.gather(*(one(i) for i in range(len(cookies))))
    return out


def sweep_cookie(i: int) -> str:
    return base_cookie(10_000_000 + i)


async def insert_sweep_links(engine, keyring, signing_secret: str, n: int, account_ids: list[str] | None = None,
                             due_ago_s: float = 60.0, start: int = 0) -> None:
    """n users, each with a 'reconnecting' link in an open incident whose attempt is due,
    holding a real encrypted cookie (so the attempt decrypts and calls Unipile)."""
    from cookiesync.db.schema import incidents, links, users
    from cookiesync.security import CookieBundle, cookie_fingerprint, encrypt_cookies

    now = _now()
    t0 = now - timedelta(seconds=due_ago_s)
    user_rows, link_rows = [], []
    for k in range(n):
        i = start + k
        uid, pid = f"{SWEEP_USER}{i}", str(900_000_000 + i)
        li_at = sweep_cookie(i)
        kid, blob = encrypt_cookies(keyring, CookieBundle(li_at, None, USER_AGENT), uid, pid)
        user_rows.append(dict(user_id=uid, email=f"{uid}@example.com", display_name=uid, created_at=now,
                              updated_at=now))
        link_rows.append(dict(
            user_id=uid, plain_id=pid, state="reconnecting", auto_connect=True, unipile_account_id=account_ids[k] if account_ids else f"acc-sweep-{i}",
            cookie_ciphertext=blob, cookie_key_id=kid,
            cookie_fingerprint=cookie_fingerprint(signing_secret, li_at, None, USER_AGENT),
            user_agent=USER_AGENT, client_ip="127.0.0.1", date_last_cookie=t0, incident_started_at=t0,
            next_slot=0, next_attempt_at=t0 + timedelta(microseconds=i), attempt_trigger="scheduler",
            attempts_in_incident=0, created_at=t0, updated_at=t0))
    async with engine.begin() as conn:
        for k in range(0, n, 2000):
            await conn.execute(users.insert(), user_rows[k:k + 2000])
            await conn.execute(links.insert(), link_rows[k:k + 2000])
        ids = (await conn.execute(sa.select(links.c.id).where(links.c.user_id.like(SWEEP_USER + "%"),
                                                              links.c.incident_id.is_(None)))).scalars().all()
        inc_rows = [dict(link_id=i, kind="reconnect", opened_at=t0, attempts=0) for i in ids]
        for k in range(0, len(inc_rows), 2000):
            await conn.execute(incidents.insert(), inc_rows[k:k + 2000])
        await conn.execute(sa.text(
            "UPDATE links SET incident_id = (SELECT max(i.id) FROM incidents i WHERE i.link_id = links.id) "
            "WHERE user_id LIKE :p AND incident_id IS NULL"), {"p": SWEEP_USER + "%"})


async def sweep_outcome(engine) -> dict:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT state, count(*) FROM links WHERE user_id LIKE :p GROUP BY state"), {"p": SWEEP_USER + "%"})).all()
    return {r[0]: r[1] for r in rows}
