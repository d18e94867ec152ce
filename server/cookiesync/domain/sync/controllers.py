"""The extension's API: pair, sync, signed-out, unpair."""
from __future__ import annotations

from litestar import Controller, Request, delete, post
from litestar.exceptions import NotAuthorizedException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from cookiesync.domain.sync import services
from cookiesync.domain.throttle import services as throttle
from cookiesync.domain.sync.fast_lane import sync_fast_lane
from cookiesync.domain.sync.models import Device
from cookiesync.domain.sync.schemas import PairIn, PairOut, SignedOutIn, SignedOutOut, SyncIn, SyncOut
from cookiesync.http import TooManyRequests, bearer_from, bearer_token, client_ip
from cookiesync.runtime import RT, Runtime


async def admitted(rt: Runtime, request: Request) -> tuple[Device, str | None]:
    """`services.admit` for a request that reached the handler (the fast lane declined it)."""
    return await services.admit(rt, bearer_from(request.headers.get("authorization", "")),
                                request.client.host if request.client else None,
                                lambda: request.headers.get("x-forwarded-for", ""))


class ExtensionController(Controller):
    path = "/v1/extension"
    tags = ["extension"]

    @post("/pair", status_code=HTTP_201_CREATED, summary="Trade a pairing code for a device token")
    async def pair(self, data: PairIn, request: Request, rt: RT) -> PairOut:
        ip = client_ip(request, rt.trusted_proxies)
        # reserved before the code is looked up, so concurrent guesses cannot all pass the limit
        try:
            slot = await throttle.reserve(rt.engine, f"pair:{ip or 'unknown'}", services.PAIRING_PER_ADDRESS)
        except throttle.Throttled as exc:
            raise TooManyRequests(exc.retry_after_s, "too many pairing attempts from this address; "
                                                     "try again later") from None
        try:
            token, user_id = await services.pair(rt, data.pairing_code, data.extension_version, ip)
        except services.PairingError as exc:
            raise ValidationException(detail=str(exc)) from None  # a failure keeps its slot
        await throttle.release(rt.engine, slot)  # only failures count towards the limit
        return PairOut(device_token=token, user_id=user_id, next_sync_in_s=rt.settings.sync_interval_s)

    @post("/sync", status_code=200, summary="Post the browser's LinkedIn cookies",
          middleware=[sync_fast_lane])
    async def sync(self, data: SyncIn, request: Request, rt: RT) -> SyncOut:
        device, ip = await admitted(rt, request)
        return await services.sync(rt, device, data, ip)

    @post("/signed-out", status_code=200, summary="Report that li_at is gone from this browser (signed out)")
    async def signed_out(self, data: SignedOutIn, request: Request, rt: RT) -> SignedOutOut:
        """Authenticated like the sync (device token, same rate limit). Names the cookie by its
        SHA-256, never its value. Idempotent: a repeat records nothing more."""
        device, ip = await admitted(rt, request)
        try:
            return await services.signed_out(rt, device, data, ip)
        except services.NoSuchMember:
            raise NotFoundException(detail="this device's user has no link for that LinkedIn member") from None

    @delete("/device", status_code=HTTP_204_NO_CONTENT, summary="Unpair: revoke this device's token")
    async def unpair(self, request: Request, rt: RT) -> None:
        device = await services.device_for_token(rt, bearer_token(request))
        if device is None:
            raise NotAuthorizedException(detail=services.UNKNOWN_DEVICE)
        await services.revoke_device(rt, device, actor=f"device:{device.id}")
