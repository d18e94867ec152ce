"""What the OpenAPI schema Litestar generates from the handlers cannot know by itself, added in
one place so that integrators who generate clients from `/schema/openapi.json` get the truth:

- the security schemes (integrator API key, device token, staff session, Unipile's webhook
  secrets) and, per operation, which of them admit a caller (`OPERATIONS`);
- the error answers each operation gives, every one in Litestar's JSON error shape
  (`{"status_code", "detail"}`): 400 where it takes parameters or a body, 401 where it needs
  credentials, 403 where a credential can lack the right (support scopes, CSRF, viewers),
  404 where a path names something that may not exist, 413 where a body is read, 429 where a
  rate limit applies. No operation of the JSON API answers 409;
- the bodies of the two webhooks, which their handlers read themselves (after the secret);
- `additionalProperties: false` on the request bodies whose Struct forbids unknown fields, and
  `required: false` on an optional body.

`complete(app, settings)` applies it to the app's schema object once, when the app is built
(Litestar builds it from the registered routes on first use and caches it and its JSON).
`tests/integration/test_openapi.py` holds the schema to these rules, and
`tests/integration/test_openapi_fuzz.py` holds the running service to the schema."""
from __future__ import annotations

import typing
from dataclasses import dataclass

import msgspec
from litestar import Litestar
from litestar.openapi.spec import Components, OpenAPIHeader, OpenAPIMediaType, OpenAPIType, Reference, RequestBody, \
    OpenAPIResponse, Schema, SecurityScheme

from cookiesync.settings import Settings

ERROR = "#/components/schemas/Error"

# Status -> (component name, description). Each is a component of its own, referenced by the operations.
ERRORS = {
    400: ("BadRequest", "A parameter or the body was refused: `detail` names the field and why"),
    401: ("Unauthorized", "Missing, unknown or revoked credentials"),
    403: ("Forbidden", "The credentials lack the right: an API key without the support scope, a viewer acting, "
                       "or a staff session's POST without its `X-CSRF-Token`"),
    404: ("NotFound", "No such user, link (or LinkedIn member of the device's user), email, notification or device"),
    413: ("PayloadTooLarge", "The body is larger than `COOKIESYNC_MAX_BODY_BYTES`"),
    429: ("TooManyRequests", "A rate limit: retry after `Retry-After` seconds"),
}


@dataclass(frozen=True)
class Rule:
    """Who an operation admits and the errors it gives beyond the derived ones (`_statuses`)."""
    security: tuple[dict[str, list[str]], ...] = ()  # alternatives, each {scheme: roles}
    extra: tuple[int, ...] = ()


_INTEGRATOR = ({"apiKey": ["integrator"]},)
_SUPPORT_READ = ({"staffSession": []}, {"apiKey": ["support:read"]}, {"apiKey": ["support"]})
_SUPPORT_ACT = ({"staffSession": ["operator"]}, {"apiKey": ["support"]})

# (method, path prefix) -> rule; the longest matching prefix wins.
OPERATIONS: dict[tuple[str, str], Rule] = {
    ("POST", "/v1/extension/pair"): Rule(extra=(429,)),
    ("POST", "/v1/extension/sync"): Rule(({"deviceToken": []},), extra=(429,)),
    ("POST", "/v1/extension/signed-out"): Rule(({"deviceToken": []},), extra=(404, 429)),
    ("DELETE", "/v1/extension/device"): Rule(({"deviceToken": []},)),
    ("*", "/v1/users/"): Rule(_INTEGRATOR),
    ("POST", "/v1/webhooks/unipile/account-status"): Rule(({"webhookSecret": []},)),
    ("POST", "/v1/webhooks/unipile/hosted-auth"): Rule(({"hostedAuthSecret": []},)),
    ("GET", "/v1/support/"): Rule(_SUPPORT_READ, extra=(403,)),
    ("POST", "/v1/support/"): Rule(_SUPPORT_ACT, extra=(403,)),
}


def _rule(method: str, path: str) -> Rule:
    found = [(len(prefix), rule) for (m, prefix), rule in OPERATIONS.items()
             if m in (method, "*") and path.startswith(prefix)]
    if not found:
        raise LookupError(f"{method} {path}: no rule in apidocs.schema.OPERATIONS (who may call it?)")
    return max(found, key=lambda item: item[0])[1]


def security_schemes(settings: Settings) -> dict[str, SecurityScheme]:
    from cookiesync.domain.support.auth import session_cookie_name_for

    return {
        "apiKey": SecurityScheme(type="http", scheme="bearer", bearer_format="csk_…", description=(
            "An integrator API key, `cookiesync apikey create --name NAME [--scopes …]`. Its scopes are the roles "
            "of each requirement: `integrator` (the users API), `support:read` or `support` (the support API; "
            "`support` also acts).")),
        "deviceToken": SecurityScheme(type="http", scheme="bearer", description=(
            "The browser extension's device token, from `POST /v1/extension/pair`.")),
        "staffSession": SecurityScheme(type="apiKey", security_scheme_in="cookie",
                                       name=session_cookie_name_for(settings.mode), description=(
            "A support staff session, from signing in at `/support/login`. POSTs also need the session's CSRF "
            "token in `X-CSRF-Token` (`GET /v1/support/me`); the role `operator` may act, `viewer` only reads.")),
        "webhookSecret": SecurityScheme(type="apiKey", security_scheme_in="header", name=settings.webhook_header,
                                        description="`COOKIESYNC_WEBHOOK_SECRET`, sent by Unipile on its webhooks."),
        "hostedAuthSecret": SecurityScheme(type="apiKey", security_scheme_in="query", name="secret", description=(
            "`COOKIESYNC_HOSTED_AUTH_SECRET`, in the `notify_url` this service gives Unipile's hosted auth.")),
    }


ERROR_SCHEMA = Schema(type=OpenAPIType.OBJECT, title="Error", required=["status_code", "detail"], properties={
    "status_code": Schema(type=OpenAPIType.INTEGER),
    "detail": Schema(type=OpenAPIType.STRING),
    "extra": Schema(description="the refused fields, on some 400s"),
}, description="Every error answer: Litestar's JSON error shape")


def components(settings: Settings) -> Components:
    """The config's components: Litestar keeps these responses and schemes, and replaces the
    schemas with the ones it generates (`complete` adds ours to those)."""
    responses = {}
    for status, (name, description) in ERRORS.items():
        headers = {"Retry-After": OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER, minimum=1), required=True,
                                         description="seconds")} if status == 429 else None
        responses[name] = OpenAPIResponse(description=description, headers=headers,
                                   content={"application/json": OpenAPIMediaType(schema=Reference(ref=ERROR))})
    return Components(responses=responses, security_schemes=security_schemes(settings))


def _structs(annotation) -> list[type[msgspec.Struct]]:
    """The Struct classes in a body's annotation (through Optional, unions and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return [annotation]
    return [s for arg in typing.get_args(annotation) for s in _structs(arg)]


def _webhook_bodies() -> dict[str, type[msgspec.Struct]]:
    from cookiesync.domain.webhooks.controllers import AccountStatusIn, HostedAuthIn

    return {"/v1/webhooks/unipile/account-status": AccountStatusIn, "/v1/webhooks/unipile/hosted-auth": HostedAuthIn}


def _statuses(op, rule: Rule, path: str, method: str) -> set[int]:
    codes = set(rule.extra)
    if op.parameters or op.request_body is not None:
        codes.add(400)
    if rule.security:
        codes.add(401)
    if op.request_body is not None:
        codes.add(413)
    if "{" in path and method != "PUT":  # PUT /v1/users/{user_id} creates the user
        codes.add(404)
    return codes


def complete(app: Litestar, settings: Settings) -> None:
    openapi = app.openapi_schema
    schemas = openapi.components.schemas
    schemas["Error"] = ERROR_SCHEMA
    # the webhooks' bodies, as msgspec describes the Structs their handlers decode
    bodies = _webhook_bodies()
    _, defs = msgspec.json.schema_components(list(bodies.values()), ref_template="#/components/schemas/{name}")
    for name, definition in defs.items():
        schemas.setdefault(name, definition)  # a plain dict: Litestar's to_schema() passes dicts through
    strict: dict[str, bool] = {}  # component title -> forbids unknown fields
    optional_body: set[tuple[str, str]] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is None:
                continue
            for struct in _structs(data.annotation):
                strict[struct.__name__] = bool(struct.__struct_config__.forbid_unknown_fields)
            if data.has_default:
                optional_body.update((m, route.path_format) for m in handler.http_methods)
    for struct in bodies.values():
        strict[struct.__name__] = bool(struct.__struct_config__.forbid_unknown_fields)
    for schema in schemas.values():
        title = schema.title if isinstance(schema, Schema) else schema.get("title")
        if strict.get(title):
            if isinstance(schema, Schema):
                schema.additional_properties = False
            else:
                schema["additionalProperties"] = False

    for path, item in openapi.paths.items():
        for method in ("get", "put", "post", "delete", "patch"):
            op = getattr(item, method)
            if op is None:
                continue
            if path in bodies:
                op.request_body = RequestBody(required=True, content={"application/json": OpenAPIMediaType(
                    schema=Reference(ref=f"#/components/schemas/{bodies[path].__name__}"))})
            if op.request_body is not None and (method.upper(), path) in optional_body:
                op.request_body.required = False
            rule = _rule(method.upper(), path)
            op.security = [dict(alt) for alt in rule.security] or None
            op.responses = {code: answer for code, answer in (op.responses or {}).items()
                            if not code.startswith("4")}  # Litestar's generic 400 gives way to ours
            for status in sorted(_statuses(op, rule, path, method.upper())):
                op.responses[str(status)] = Reference(ref=f"#/components/responses/{ERRORS[status][0]}")
