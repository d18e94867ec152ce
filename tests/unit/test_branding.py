"""The integrator's brand settings and email templates: a bad value or a broken override is a
configuration error naming its variable or file, found when the settings and templates are read
(at start), never when an email is sent; the built-in templates never say "cookiesync"."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from cookiesync.domain.email.rendering import NEUTRAL_PRODUCT, VARIABLES, EmailTemplates
from cookiesync.domain.reconnect.policy import Email
from cookiesync.settings import Settings, SettingsError, ensure_local_secrets

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("variable, value", [
    ("COOKIESYNC_LOGO_URL", "http://cdn.acme.example/logo.png"),   # https only
    ("COOKIESYNC_LOGO_URL", "cdn.acme.example/logo.png"),
    ("COOKIESYNC_APP_URL", "javascript:alert(1)"),
    ("COOKIESYNC_APP_URL", "https://"),
    ("COOKIESYNC_SUPPORT_CONTACT", "help"),
    ("COOKIESYNC_SUPPORT_CONTACT", "ftp://acme.example/help"),
    ("COOKIESYNC_SUPPORT_CONTACT", "help desk@acme.example"),
    ("COOKIESYNC_EMAIL_FROM", "Acme"),
    ("COOKIESYNC_EMAIL_TEMPLATES_DIR", "/no/such/folder"),
])
def test_a_bad_value_is_refused_naming_its_variable(variable, value) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({variable: value})
    assert str(err.value).startswith(f"{variable}: ")


@pytest.mark.parametrize("variable, value", [
    ("COOKIESYNC_LOGO_URL", "https://cdn.acme.example/logo.png"),
    ("COOKIESYNC_APP_URL", "http://localhost:3000/app"),
    ("COOKIESYNC_SUPPORT_CONTACT", "help@acme.example"),
    ("COOKIESYNC_SUPPORT_CONTACT", "https://acme.example/help"),
    ("COOKIESYNC_EMAIL_FROM", "Acme Support <noreply@acme.example>"),
])
def test_good_values_are_taken(variable, value) -> None:
    assert getattr(Settings.from_env({variable: value}), variable.removeprefix("COOKIESYNC_").lower()) == value


def test_production_that_sends_email_needs_a_product_name(tmp_path) -> None:
    secrets = dict(mode="production", data_dir=str(tmp_path), encryption_keys="k1:" + "A" * 43,
                   signing_secret="s" * 43, webhook_secret="w" * 32, hosted_auth_secret="h" * 32,
                   unipile_dsn="https://api.unipile.example", unipile_api_key="key", database_url="sqlite://")
    ensure_local_secrets(Settings(**secrets))  # no SMTP: emails stay in the outbox, for staff
    with pytest.raises(SettingsError) as err:
        ensure_local_secrets(Settings(**secrets, smtp_host="smtp.acme.example"))
    assert str(err.value).startswith("COOKIESYNC_PRODUCT_NAME: ")
    ensure_local_secrets(Settings(**secrets, smtp_host="smtp.acme.example", product_name="Acme"))


def _folder(tmp_path: Path, **files: str) -> Settings:
    for name, text in files.items():
        (tmp_path / ".".join(name.rsplit("_", 1))).write_text(text)  # reconnect_txt: reconnect.txt
    return Settings(email_templates_dir=str(tmp_path))


@pytest.mark.parametrize("files, expected", [
    ({"reconnect_txt": "Hi {{ name }\n{{ reconnect_url }}"}, "reconnect.txt:1: unexpected '}'"),
    ({"reconnect_html": "<p>{{ reconnect_url }}</p>\n{% if stale %}{{ last_cookie|nosuchfilter }}{% endif %}"},
     "reconnect.html:2: TemplateRuntimeError: No filter named 'nosuchfilter' found."),
    ({"subject_txt": "{{ subject }}{% if kind == 'checkpoint' %} {{ subjekt }}{% endif %}"},
     "subject.txt:1: UndefinedError: 'subjekt' is undefined"),
    ({"reconnect_txt": "Open {{ app_url }} to reconnect."}, "reconnect.txt: does not show {{ reconnect_url }}"),
    ({"subject_txt": "{% if kind == 'gave_up' %}{{ subject }}{% endif %}"}, "subject.txt: renders an empty subject"),
    ({"gave_up_txt": "{{ reconnect_url }}"}, "gave_up.txt: names no template"),
])
def test_a_broken_override_is_refused_at_start_naming_its_file(tmp_path, files, expected) -> None:
    settings = _folder(tmp_path, **files)
    with pytest.raises(SettingsError) as err:
        EmailTemplates(settings)
    message = str(err.value)
    assert message.startswith(f"COOKIESYNC_EMAIL_TEMPLATES_DIR: {tmp_path}/") and expected in message
    assert "\n" not in message


def test_html_overrides_are_autoescaped_and_text_ones_are_not(tmp_path) -> None:
    settings = _folder(tmp_path, reconnect_html="<p>{{ name }} {{ reconnect_url }}</p>",
                       reconnect_txt="{{ name }} {{ reconnect_url }}")
    _, text, html = EmailTemplates(settings).render(
        Email.GAVE_UP, linkedin_name=None, plain_id="1", name="<b>Ann & Bo</b>", reconnect_url="https://x/r/[t]",
        link_ttl_s=86400, stale=False, last_cookie=None)
    assert html == "<p>&lt;b&gt;Ann &amp; Bo&lt;/b&gt; https://x/r/[t]</p>"
    assert text == "<b>Ann & Bo</b> https://x/r/[t]"


@pytest.mark.parametrize("kind", list(Email))
@pytest.mark.parametrize("stale", [True, False])
def test_the_built_in_emails_never_say_cookiesync(kind, stale) -> None:
    for settings in (Settings(), Settings(product_name="Acme", support_contact="https://acme.example/help",
                                          app_url="https://acme.example", logo_url="https://acme.example/l.png")):
        templates = EmailTemplates(settings)
        mail = templates.render(kind, linkedin_name=None, plain_id="1", name=None, reconnect_url="https://x/r",
                                link_ttl_s=7 * 86400, stale=stale, last_cookie=datetime(2026, 1, 1, tzinfo=timezone.utc))
        assert not [part for part in mail if "cookiesync" in part.lower()]
        assert f"disconnected from {templates.brand.product_name}" in mail[1]
        assert templates.brand.sender == ("noreply@localhost" if not settings.product_name
                                          else "Acme <noreply@localhost>")
    assert EmailTemplates(Settings()).brand.product_name == NEUTRAL_PRODUCT


def test_the_readme_lists_every_template_variable() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Emails to your users"):readme.index("## Deployment")]
    assert [v for v in VARIABLES if f"| `{v}` | {VARIABLES[v]} |" not in section] == []


def test_the_linkedin_name_is_the_identity_escaped_and_old_templates_still_work(tmp_path) -> None:
    """An override written before `linkedin_name` existed (it says `identity`) renders the name; a new
    one may use `linkedin_name` and `linkedin_member`; the HTML escapes the member's own text."""
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = _folder(tmp_path / "old", reconnect_html="<p>{{ identity }} {{ reconnect_url }}</p>",
                  reconnect_txt="{{ identity }} {{ reconnect_url }}")
    new = _folder(tmp_path / "new", reconnect_txt=(
        "{% if linkedin_name %}{{ linkedin_name }} ({{ linkedin_member }}){% else %}{{ linkedin_member }}{% endif %}"
        " {{ reconnect_url }}"))
    common = dict(name=None, reconnect_url="https://x/r", link_ttl_s=86400, stale=False, last_cookie=None)
    _, text, html = EmailTemplates(old).render(Email.GAVE_UP, linkedin_name="Jo <b>&</b>", plain_id="5151", **common)
    assert html == "<p>Jo &lt;b&gt;&amp;&lt;/b&gt; https://x/r</p>" and text == "Jo <b>&</b> https://x/r"
    _, text, _ = EmailTemplates(old).render(Email.GAVE_UP, linkedin_name=None, plain_id="5151", **common)
    assert text == "LinkedIn member 5151 https://x/r"
    templates = EmailTemplates(new)
    assert templates.render(Email.CHECKPOINT, linkedin_name="Jo Bo", plain_id="5151", **common)[1] == \
        "Jo Bo (LinkedIn member 5151) https://x/r"
    assert templates.render(Email.CHECKPOINT, linkedin_name=None, plain_id="5151", **common)[1] == \
        "LinkedIn member 5151 https://x/r"
    # the built-in ones: "Your LinkedIn account <name>"
    _, text, html = EmailTemplates(Settings()).render(Email.GAVE_UP, linkedin_name="Jane Doe", plain_id="5151",
                                                     **common)
    assert "Your LinkedIn account <strong>Jane Doe</strong>" in html and "Your LinkedIn account Jane Doe " in text
