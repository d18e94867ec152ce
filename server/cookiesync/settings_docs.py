"""The README's configuration table and `deploy/cookiesync.env.example`, rendered from the `Settings`
fields' descriptions, so that the documentation of a setting lives next to the setting.

`cookiesync settings-docs` (`make docs`) writes both files; `--check`, and tests/test_settings_docs.py,
fail when either is out of date with the fields.
"""
from __future__ import annotations

import textwrap
import typing
from dataclasses import dataclass
from pathlib import Path

import msgspec

from cookiesync.settings import PREFIX, Settings

# server/cookiesync/settings_docs.py -> the repository (an installed package has no README: --root)
ROOT = Path(__file__).resolve().parents[2]
README = "README.md"
ENV_EXAMPLE = "deploy/cookiesync.env.example"
BEGIN = ("<!-- BEGIN settings table: generated from server/cookiesync/settings.py by `make docs`; "
         "edit the descriptions there -->")
END = "<!-- END settings table -->"

# The env example's sections, each opened by its first setting: the blank-line groups of `Settings`.
# A new field joins the section it is placed in.
SECTIONS = {
    "mode": "Service: mode, storage, where it listens",
    "unipile_dsn": "Unipile",
    "smtp_host": "Email",
    "retry_interval_s": "Reconnects and the scheduler",
    "integrator_webhook_url": "Notifications to the integrator",
    "retention_interval_s": "Retention: how long rows are kept",
    "max_accounts_per_user": "Sync, caches, limits, keys and logs",
}


@dataclass(frozen=True)
class SettingDoc:
    name: str           # the field's name
    variable: str       # COOKIESYNC_<NAME>
    default: str        # as the environment would spell it; "" when unset
    description: str
    secret: bool
    required: bool      # in production
    section: str


def setting_docs() -> list[SettingDoc]:
    """Every `Settings` field in declaration order, with its description and marks."""
    hints = typing.get_type_hints(Settings, include_extras=True)
    docs, section = [], ""
    for field in msgspec.structs.fields(Settings):
        metas = [m for m in getattr(hints[field.name], "__metadata__", ()) if isinstance(m, msgspec.Meta)]
        description = next((m.description for m in metas if m.description), "")
        extra = {k: v for m in metas for k, v in (m.extra or {}).items()}
        section = SECTIONS.get(field.name, section)
        docs.append(SettingDoc(
            name=field.name, variable=PREFIX + field.name.upper(), default=str(field.default),
            description=description, secret=bool(extra.get("secret")),
            required=bool(extra.get("required_in_production")), section=section))
    return docs


def _marks(doc: SettingDoc) -> str:
    return "; ".join(m for m in ("secret" if doc.secret else "",
                                 "REQUIRED in production" if doc.required else "") if m)


def render_table(docs: list[SettingDoc]) -> str:
    """The README's table, markers included."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for d in docs:
        marks = _marks(d)
        meaning = d.description + (f" **{marks[0].upper() + marks[1:]}.**" if marks else "")
        meaning = meaning.replace("|", r"\|")  # a bare | would end the cell
        default = f"`{d.default}`" if d.default else "—"
        rows.append(f"| `{d.variable}` | {default} | {meaning} |")
    return "\n".join([BEGIN, "", *rows, "", END])


def render_env_example(docs: list[SettingDoc]) -> str:
    """The whole of deploy/cookiesync.env.example."""
    out = [
        "# cookiesync settings: every variable, commented out at its default. Production refuses to start",
        "# without the ones marked REQUIRED. Keep the filled-in file owner-only (0600): the ones marked secret",
        "# must stay out of logs and version control. A COOKIESYNC_* variable that names no setting is",
        "# refused in production and warned about in local mode.",
        "# Generated from server/cookiesync/settings.py by `make docs` (`cookiesync settings-docs`):",
        "# edit the descriptions there, not here.",
    ]
    section = None
    for d in docs:
        if d.section != section:
            section = d.section
            out += ["", f"# --- {section} " + "-" * max(3, 96 - len(section))]
        marks = _marks(d)
        text = d.description + (f" ({marks})" if marks else "")
        out += textwrap.wrap(text, width=100, initial_indent="# ", subsequent_indent="# ",
                             break_long_words=False, break_on_hyphens=False)
        out.append(f"#{d.variable}={d.default}")
    return "\n".join(out) + "\n"


def readme_with_table(readme: str, table: str) -> str:
    """`readme` with the text from BEGIN to END replaced by `table`."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{README} has no settings table between the markers {BEGIN!r} and {END!r}")
    return readme[:start] + table + readme[end + len(END):]


def generated(root: Path = ROOT) -> dict[str, str]:
    """Each generated file (path relative to `root`) with the text it should have."""
    docs = setting_docs()
    return {README: readme_with_table((root / README).read_text(encoding="utf-8"), render_table(docs)),
            ENV_EXAMPLE: render_env_example(docs)}


def stale(root: Path = ROOT) -> list[str]:
    """The generated files whose text differs from what the fields give."""
    return [name for name, text in generated(root).items()
            if (root / name).read_text(encoding="utf-8") != text]


def write(root: Path = ROOT) -> list[str]:
    """Write the generated files that changed; their names."""
    changed = stale(root)
    for name, text in generated(root).items():
        if name in changed:
            (root / name).write_text(text, encoding="utf-8")
    return changed
