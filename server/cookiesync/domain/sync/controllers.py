"""The extension's API: pair, sync, unpair."""
from __future__ import annotations

from litestar import Controller, Request, delete, post
from litestar.exceptions import NotAuthorizedException, ValidationException
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from cookiesync.domain.sync import services
from cookiesync.domain.sync.schemas import PairIn, PairOut, SyncIn, SyncOut
from cookiesync.http import TooManyRequests, bearer_token, client_ip
from cookiesync.runtime import Runtime


async def _device(rt: Runtime, request: Request) -> services.Device:
    device = await services.device_for_token(rt, bearer_token(request))
    if device is None:
        raise NotAuthorizedException(detail="unknown or revoked device token: pair the extension again")
    return device


class ExtensionController(Controller):
    path = "/v1/extension"
    tags = ["extension"]

    @post("/pair", status_code=HTTP_201_CREATED, summary="Trade a pairing code for a device token")
    async def pair(self, data: PairIn, request: Request, rt: Runtime) -> PairOut:
        ip = client_ip(request, rt.trusted_proxies)
        limiter = rt.cache("pair_limiter", lambda: services.RateLimiter(limit=10, window_s=600))
        wait = limiter.check(f"pair:{ip}", cost=0)
        if wait is not None:
            raise TooManyRequests(wait, "too many pairing attempts from this address; try again later")
        try:
            token, user_id = await services.pair(rt, data.pairing_code, data.extension_version, ip)
        except services.PairingError as exc:
            limiter.check(f"pair:{ip}")  # only failures count towards the limit
            raise ValidationException(detail=str(exc)) from None
        return PairOut(device_token=token, user_id=user_id, next_sync_in_s=rt.settings.sync_interval_s)

    @post("/sync", status_code=200, summary="Post the browser's LinkedIn cookies")
    async def sync(self, data: SyncIn, request: Request, rt: Runtime) -> SyncOut:
        device = await _device(rt, request)
        limiter = rt.cache("sync_limiter", lambda: services.RateLimiter(limit=120, window_s=60))
        wait = limiter.check(device.id)
        if wait is not None:
            raise TooManyRequests(wait)
        return await services.sync(rt, device, data, client_ip(request, rt.trusted_proxies))

    @delete("/device", status_code=HTTP_204_NO_CONTENT, summary="Unpair: revoke this device's token")
    async def unpair(self, request: Request, rt: Runtime) -> None:
        device = await _device(rt, request)
        await services.revoke_device(rt, device, actor=f"device:{device.id}")
