"""What the service takes as a row id and as text, declared once for every way in: JSON bodies
(msgspec), path and query parameters (Litestar, which validates them with msgspec too) and the
console's forms and cursors (by hand, with `row_id` and `refused_text`).

Row ids. Every id column is `sa.Integer` (db/schema.py), a 32-bit integer on PostgreSQL: a bigger
number fails in the driver (asyncpg's int32 check, sqlite3's OverflowError past 2^63), so it is
refused at the door. `row_id_in` makes the typed parameter (`PathRowId` for a path segment):
msgspec turns the text into an int from ASCII digits only (Python's `int()` also takes "١٢", " 1"
and "1\n"; msgspec does take "1e3" and "1.0", the same in-range integers), and the bounds refuse 0,
negatives and anything past the column. A route declares the segment `{name:str}` so that Litestar's router
does not run `int()` on it first. Out-of-range and malformed ids are 400 naming the parameter; an
in-range id that names no row is the handler's 404.

Text. No field takes control characters (Unicode Cc: C0, DEL and C1) or the bidirectional
formatting characters (embeddings, overrides, isolates, marks, U+061C): NUL fails on PostgreSQL
(text cannot hold it), and an override turns the rest of a console line around. Nor line or
paragraph separators (U+2028/9). Python's `$` matches before a final "\n", so every pattern here
ends in `\\Z`; msgspec applies a pattern with `re.search`, hence the leading `^`.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated
from urllib.parse import parse_qsl

import msgspec
from litestar.exceptions import ValidationException
from litestar.params import ParameterKwarg, PathParameter

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection

ROW_ID_MAX = 2 ** 31 - 1  # sa.Integer: PostgreSQL's integer (SQLite's would go to 2^63 - 1)


def row_id_in(where: type[ParameterKwarg], description: str = "a row id") -> ParameterKwarg:
    """A row id parameter: `Annotated[int, row_id_in(PathParameter)]`."""
    return where(ge=1, le=ROW_ID_MAX, description=f"{description} (ASCII digits, 1 to {ROW_ID_MAX})")


PathRowId = Annotated[int, row_id_in(PathParameter)]

_ROW_ID_TEXT = re.compile(r"[0-9]{1,10}")


def row_id(text: str) -> int:
    """An id written by hand (a cursor, a form field): ASCII digits naming a possible row, or ValueError."""
    if not _ROW_ID_TEXT.fullmatch(text) or not 1 <= (value := int(text)) <= ROW_ID_MAX:
        raise ValueError(f"not a row id: {text[:40]!r}")
    return value


# the refused characters, as the inside of a regex character class
REFUSED_CHARS = "\\x00-\\x1f\\x7f-\\x9f\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069"
PLAIN_TEXT = f"^[^{REFUSED_CHARS}]*\\Z"
TEXT_RULE = "no control, line-separator or bidirectional formatting characters"
_REFUSED = re.compile(f"[{REFUSED_CHARS}]")


def refused_text(value: str | None) -> bool:
    """Whether `value` holds a character no text field takes (for input read by hand: forms)."""
    return value is not None and _REFUSED.search(value) is not None


def text(max_length: int, min_length: int = 0, description: str = TEXT_RULE) -> msgspec.Meta:
    """A JSON body's text field: `Annotated[str, text(200)]`."""
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=PLAIN_TEXT, description=description)


def text_in(where: type[ParameterKwarg], max_length: int, name: str | None = None,
            description: str | None = None) -> ParameterKwarg:
    """A path or query parameter's text: `Annotated[str | None, text_in(QueryParameter, 200)]`."""
    return where(name=name, max_length=max_length, pattern=PLAIN_TEXT,
                 description=f"{description}; {TEXT_RULE}" if description else TEXT_RULE)


def one_value_each(connection: ASGIConnection) -> None:
    """A 400 for a query parameter given more than once. Litestar keeps the last value of a
    single-valued parameter, so `?user_id=a&user_id=b` would silently read as `b` (and a check
    in front of it could have seen `a`). Called by the API-key and staff-session dependencies,
    after the caller is known, so an anonymous caller still gets 401 first."""
    seen: set[str] = set()
    twice: list[str] = []
    for key, _ in parse_qsl(connection.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if key in seen and key not in twice:
            twice.append(key)
        seen.add(key)
    if twice:
        raise ValidationException(detail="query parameter given more than once: "
                                         + ", ".join(repr(k[:40]) for k in twice))


def clean_text(value: object, max_length: int) -> str | None:
    """Text another service sends us that people wrote (a LinkedIn name), made safe to keep and show:
    the refused characters above removed, runs of whitespace made one space, at most `max_length`
    characters; None for anything that is not text or is empty after that. Escaping is the page's
    and the email's job (their templates autoescape); this keeps what no field may hold out of
    the database and the logs."""
    if not isinstance(value, str):
        return None
    cleaned = " ".join(_REFUSED.sub(" ", value).split())[:max_length].rstrip()
    return cleaned or None
