"""The OpenAPI schema tells integrators the truth (security schemes, who may call each
operation, the errors each gives, strict bodies), and its docs page loads nothing from
another origin. Against a real service over HTTP."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SUPPORT_READ = [{"staffSession": []}, {"apiKey": ["support:read"]}, {"apiKey": ["support"]}]
SUPPORT_ACT = [{"staffSession": ["operator"]}, {"apiKey": ["support"]}]
INTEGRATOR = [{"apiKey": ["integrator"]}]
DEVICE = [{"deviceToken": []}]

# (method, path) -> (security, the error statuses it answers)
EXPECTED = {
    ("post", "/v1/extension/pair"): (None, {400, 413, 429}),
    ("post", "/v1/extension/sync"): (DEVICE, {400, 401, 413, 429}),
    ("post", "/v1/extension/signed-out"): (DEVICE, {400, 401, 404, 413, 429}),
    ("delete", "/v1/extension/device"): (DEVICE, {401}),
    ("put", "/v1/users/{user_id}"): (INTEGRATOR, {400, 401, 413}),
    ("delete", "/v1/users/{user_id}"): (INTEGRATOR, {400, 401, 404}),
    ("get", "/v1/users/{user_id}/accounts"): (INTEGRATOR, {400, 401, 404}),
    ("get", "/v1/users/{user_id}/export"): (INTEGRATOR, {400, 401, 404}),
    ("post", "/v1/users/{user_id}/pairing-codes"): (INTEGRATOR, {400, 401, 404}),
    ("post", "/v1/webhooks/unipile/account-status"): ([{"webhookSecret": []}], {400, 401, 413}),
    ("post", "/v1/webhooks/unipile/hosted-auth"): ([{"hostedAuthSecret": []}], {400, 401, 413}),
    ("get", "/v1/support/me"): (SUPPORT_READ, {401, 403}),
    ("get", "/v1/support/overview"): (SUPPORT_READ, {401, 403}),
    ("get", "/v1/support/links"): (SUPPORT_READ, {400, 401, 403}),
    ("get", "/v1/support/links/{link_id}"): (SUPPORT_READ, {400, 401, 403, 404}),
    ("post", "/v1/support/links/{link_id}/actions/{action}"): (SUPPORT_ACT, {400, 401, 403, 404, 413}),
    ("post", "/v1/support/devices/{device_id}/revoke"): (SUPPORT_ACT, {400, 401, 403, 404}),
    ("get", "/v1/support/outbox"): (SUPPORT_READ, {400, 401, 403}),
    ("get", "/v1/support/outbox/{outbox_id}"): (SUPPORT_READ, {400, 401, 403, 404}),
    ("post", "/v1/support/outbox/{outbox_id}/resend"): (SUPPORT_ACT, {400, 401, 403, 404, 413}),
    ("get", "/v1/support/notifications"): (SUPPORT_READ, {400, 401, 403}),
    ("get", "/v1/support/notifications/{notification_id}"): (SUPPORT_READ, {400, 401, 403, 404}),
}


# response component -> fields it must describe (what integrators read)
RESPONSE_FIELDS = {
    "AccountOut": {"plain_id", "status", "unipile_account_id", "date_last_cookie", "auto_connect", "hold_reason",
                   "last_error", "checkpoint_type", "next_attempt_at", "created_at", "linkedin", "location"},
    "LinkedInOut": {"name", "public_identifier", "premium", "read_at", "member_check", "member_seen"},
    "LocationOut": {"country", "source"},
    "UserOut": {"user_id", "email", "display_name", "created_at", "updated_at", "country", "proxy"},
    "ProxyOut": {"host", "port", "protocol", "username", "password_set"},  # never the password
}


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        *_, kind, name = node["$ref"].split("/")
        node = schema["components"][kind][name]
    return node


def test_the_schema_names_its_security_errors_and_strict_bodies(service) -> None:
    schema = service.http.get("/schema/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"] == schemes["apiKey"] | {"type": "http", "scheme": "bearer"}
    assert schemes["deviceToken"] == schemes["deviceToken"] | {"type": "http", "scheme": "bearer"}
    assert schemes["staffSession"] == schemes["staffSession"] | {"type": "apiKey", "in": "cookie",
                                                                 "name": "cookiesync_staff"}
    assert schemes["webhookSecret"] == schemes["webhookSecret"] | {
        "type": "apiKey", "in": "header", "name": service.settings.webhook_header}
    assert schemes["hostedAuthSecret"] == schemes["hostedAuthSecret"] | {"type": "apiKey", "in": "query",
                                                                         "name": "secret"}
    operations = {(m, p): op for p, item in schema["paths"].items() for m, op in item.items()}
    assert set(operations) == set(EXPECTED)
    for key, (security, errors) in EXPECTED.items():
        op = operations[key]
        assert op.get("security") == security, key
        assert {int(c) for c in op["responses"] if c.startswith("4")} == errors, key
        assert not [c for c in op["responses"] if c.startswith("5")], key
        for code in errors:
            answer = resolve(schema, op["responses"][str(code)])
            body = resolve(schema, answer["content"]["application/json"]["schema"])
            assert {"status_code", "detail"} <= set(body["required"]), (key, code)
            if code == 429:
                assert answer["headers"]["Retry-After"]["required"] is True
    # the bodies the handlers decode with forbid_unknown_fields=True, and the webhooks' bodies
    components = schema["components"]["schemas"]
    for name in ("SyncIn", "PairIn", "UserIn", "ActionIn"):
        assert components[name]["additionalProperties"] is False, name
    for name in ("AccountStatusIn", "HostedAuthIn"):
        assert "additionalProperties" not in components[name], name  # Unipile may add fields
    webhook = operations[("post", "/v1/webhooks/unipile/account-status")]["requestBody"]
    assert resolve(schema, webhook["content"]["application/json"]["schema"])["required"] == ["AccountStatus"]
    # the actions' body is optional ({"reason": …} for the audit trail)
    assert operations[("post", "/v1/support/links/{link_id}/actions/{action}")]["requestBody"]["required"] is False
    assert operations[("put", "/v1/users/{user_id}")]["requestBody"]["required"] is True
    for name, fields in RESPONSE_FIELDS.items():
        assert set(components[name]["properties"]) == fields and set(components[name]["required"]) == fields, name
    linkedin = components["LinkedInOut"]["properties"]
    assert "control characters" in str(linkedin["name"]) and "mismatch" in str(linkedin["member_check"])
    user_in = components["UserIn"]["properties"]
    assert {"country", "proxy"} <= set(user_in) and "password" in components["ProxyIn"]["properties"]
    assert set(components["ProxyIn"]["required"]) == {"host", "port"}
    account_linkedin = components["AccountOut"]["properties"]["linkedin"]
    assert resolve(schema, account_linkedin) is components["LinkedInOut"]
    # every reference in the schema resolves
    text = service.http.get("/schema/openapi.json").text
    for ref in set(re.findall(r'"\$ref":\s*"([^"]+)"', text)):
        resolve(schema, {"$ref": ref})


def test_a_production_schema_names_the_production_session_cookie(service_factory) -> None:
    import secrets

    svc = service_factory(mode="production", signing_secret=secrets.token_urlsafe(48),
                          webhook_secret=secrets.token_urlsafe(32), hosted_auth_secret=secrets.token_urlsafe(32),
                          encryption_keys="k1:" + secrets.token_urlsafe(32), webhook_header="X-Hook-Secret")
    schemes = svc.http.get("/schema/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["staffSession"]["name"] == "__Host-cookiesync_staff"
    assert schemes["webhookSecret"]["name"] == "X-Hook-Secret"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.csp: str | None = None

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        self.urls += [attrs[a] for a in ("src", "href", "data-spec", "action") if attrs.get(a)]
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = attrs["content"]


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
def test_the_docs_page_loads_everything_from_this_service(service, path) -> None:
    page = service.http.get(path)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    links = _Links()
    links.feed(page.text)
    assert len(links.urls) >= 5
    assert not [u for u in links.urls if not u.startswith("/") or u.startswith("//")], links.urls
    assert "http" not in page.text.replace('http-equiv', '')  # no absolute URL anywhere in the page
    assert "<script>" not in page.text  # no inline script: the policy allows 'self' only
    assert links.csp and "script-src 'self';" in links.csp and "connect-src 'self'" in links.csp
    for url in links.urls:
        asset = service.http.get(url)
        assert asset.status_code == 200, url
    bundle = service.http.get("/schema/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text and bundle.headers["content-type"].startswith("text/javascript")
    assert "max-age=86400" in bundle.headers["cache-control"]


def test_the_cdn_backed_viewers_are_gone(service) -> None:
    for path in ("/schema/redoc", "/schema/rapidoc", "/schema/elements", "/schema/scalar"):
        assert service.http.get(path).status_code == 404, path
    assert service.http.get("/schema/assets/../../app.py").status_code == 404
