"""The hosted-auth pages the simulator shows in place of account.unipile.com."""
from __future__ import annotations

from html import escape

TITLE = "Unipile simulator — hosted auth"

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1d2330}
.badge{display:inline-block;background:#b3261e;color:#fff;font-size:.75rem;font-weight:700;padding:.15rem .5rem;
border-radius:.25rem;letter-spacing:.05em}
.card{border:1px solid #d0d5dd;border-radius:.5rem;padding:1.25rem;margin-top:1rem}
dt{font-weight:600;margin-top:.5rem}dd{margin:0}
button{font-size:1rem;padding:.6rem 1.2rem;border-radius:.4rem;border:0;cursor:pointer}
#sim-hosted-submit{background:#0a66c2;color:#fff}#sim-hosted-fail{background:#eee;margin-left:.5rem}
"""


def _page(heading: str, inner: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{escape(TITLE)}</title><style>{_STYLE}</style></head><body>"
            f"<p><span class=\"badge\">SIMULATED</span></p><h1>{escape(TITLE)}</h1>"
            f"<h2>{escape(heading)}</h2>{inner}</body></html>")


def hosted_form(link_type: str, account_name: str | None, link_name: str | None, expires_on: str) -> str:
    action = "Reconnect" if link_type == "reconnect" else "Connect"
    rows = [("Link type", link_type), ("LinkedIn account", account_name or "(new account)"),
            ("Link name", link_name or "—"), ("Expires", expires_on)]
    details = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    inner = (f"<div class=\"card\"><p>This page stands in for Unipile's hosted authentication. "
             f"No LinkedIn login happens here.</p><dl>{details}</dl>"
             f"<form method=\"post\">"
             f"<button id=\"sim-hosted-submit\" type=\"submit\" name=\"action\" value=\"ok\">{action}</button>"
             f"<button id=\"sim-hosted-fail\" type=\"submit\" name=\"action\" value=\"fail\">Fail</button>"
             f"</form></div>")
    return _page(f"{action} your LinkedIn account", inner)


def hosted_message(heading: str, text: str) -> str:
    return _page(heading, f"<div class=\"card\"><p id=\"sim-hosted-message\">{escape(text)}</p></div>")
