"""The API's docs page: Swagger UI served from this package's own copy (assets/, see
assets/VENDORED.txt), so the docs work on a deploy without internet access and no third party
sees who browses them. Litestar's own render plugins load the UI from a public CDN; this one
replaces them all (`/schema` and `/schema/swagger` show it; `/schema/openapi.json` is the schema).

The page holds no inline script, so its Content-Security-Policy (a <meta>: Litestar's render
plugins answer a body only) allows scripts from this origin alone."""
from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from litestar import Request, Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.static_files import create_static_files_router

ASSETS = Path(__file__).parent / "assets"
ASSETS_PATH = "/assets"  # under the OpenAPI path: /schema/assets/…

CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'")

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="referrer" content="same-origin">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-spec="{spec}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-init.js"></script>
</body>
</html>
"""


class LocalSwaggerUI(OpenAPIRenderPlugin):
    """Swagger UI from `assets/`, which it also serves (`receive_router`)."""

    def __init__(self, path: str = "/swagger") -> None:
        super().__init__(path=path, favicon="", style="")

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        base = request.app.openapi_config.path.rstrip("/")
        return PAGE.format(csp=CSP, title=escape(f"{openapi_schema['info']['title']} API"),
                           assets=escape(base + ASSETS_PATH), spec=escape(self.get_openapi_json_route(request))
                           ).encode()

    def receive_router(self, router: Router) -> None:
        router.register(create_static_files_router(
            path=ASSETS_PATH, directories=[ASSETS], include_in_schema=False, send_as_attachment=False,
            cache_control=CacheControlHeader(public=True, max_age=86400)))
