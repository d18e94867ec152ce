"""The plain recipe, the seed's minimum (Unipile's Chrome-extension recipe read literally, contract
§8), written here only to be measured against: it keeps each browser's last cookie; connects on
the first one; on a CREDENTIALS webhook it reconnects once with the last cookie, then retries every
`interval_s` `retries` times, then emails. It has no reconciliation (a lost webhook is never
noticed), no attempt on a fresh cookie, no location (no `ip`, no `country`), and every failure is
the user's (an outage's 503 counts like an expired cookie)."""
from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass

import httpx
import uvicorn
from litestar import Litestar, Request, post


@dataclass
class _Link:
    li_at: str = ""
    user_agent: str = ""
    account_id: str | None = None
    connecting: bool = False
    incident: asyncio.Task | None = None


class PlainRecipe:
    def __init__(self, unipile_url: str, api_key: str, secret: str, interval_s: float, retries: int, now_h) -> None:
        self.api = httpx.AsyncClient(base_url=unipile_url + "/api/v1", headers={"X-API-KEY": api_key}, timeout=30)
        self.secret, self.interval_s, self.retries, self.now_h = secret, interval_s, retries, now_h
        self.links: dict[int, _Link] = {}
        self.by_account: dict[str, int] = {}
        self.emails: list[tuple[float, int]] = []
        self.server: uvicorn.Server | None = None

    # --- what the browsers call (the recipe's "push cookies regularly") ----------------------
    async def sync(self, link: int, li_at: str, user_agent: str) -> None:
        st = self.links.setdefault(link, _Link())
        st.li_at, st.user_agent = li_at, user_agent
        if st.account_id is None and not st.connecting:
            st.connecting = True
            try:
                r = await self.api.post("/accounts", json=self._body(st))
                if r.status_code in (200, 201) and r.json().get("object") == "AccountCreated":
                    st.account_id = r.json()["account_id"]
                    self.by_account[st.account_id] = link
            finally:
                st.connecting = False

    @staticmethod
    def _body(st: _Link) -> dict:
        return {"provider": "LINKEDIN", "access_token": st.li_at, "user_agent": st.user_agent}

    # --- Unipile's webhook ------------------------------------------------------------------
    def on_status(self, account_id: str, message: str) -> None:
        link = self.by_account.get(account_id)
        if link is None:
            return
        st = self.links[link]
        if message == "CREDENTIALS":
            if st.incident is None or st.incident.done():
                st.incident = asyncio.get_running_loop().create_task(self._incident(link, st))
        elif message in ("OK", "RECONNECTED", "SYNC_SUCCESS", "CREATION_SUCCESS") and st.incident:
            st.incident.cancel()
            st.incident = None

    async def _incident(self, link: int, st: _Link) -> None:
        for k in range(1 + self.retries):
            if k:
                await asyncio.sleep(self.interval_s)
            try:
                r = await self.api.post(f"/accounts/{st.account_id}", json=self._body(st))
                if r.status_code in (200, 201) and r.json().get("object") == "AccountReconnected":
                    return
            except httpx.HTTPError:
                pass
        self.emails.append((self.now_h(), link))

    def app(self) -> Litestar:
        @post("/hook", status_code=200)
        async def hook(request: Request) -> dict:
            if not hmac.compare_digest(request.headers.get("unipile-auth", ""), self.secret):
                return {"ok": False}
            body = await request.json()
            status = body.get("AccountStatus") or {}
            self.on_status(status.get("account_id", ""), status.get("message", ""))
            return {"ok": True}

        return Litestar([hook], logging_config=None)

    async def serve(self, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(self.app(), host="127.0.0.1", port=port, log_level="warning",
                                                    lifespan="off"))
        await self.server.serve()

    async def close(self) -> None:
        for st in self.links.values():
            if st.incident:
                st.incident.cancel()
        if self.server:
            self.server.should_exit = True
        await self.api.aclose()
