"""The app's own OpenAPI schema, run by schemathesis against a live service: whatever the schema
allows a client to send (and the malformed values schemathesis derives from it), no answer is a
5xx. Each operation is called with the credentials its security scheme names (so the bodies reach
validation and the database), on SQLite and PostgreSQL (NUL in text and ids past 2^31-1 failed only
there). Bounded: a few examples an operation, well under a minute in all."""
from __future__ import annotations

import asyncio
import contextlib

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

from tests.support.console import make_link, start_console, stop
from tests.support.postgres import fresh_postgres_database

EXAMPLES = 12  # per operation: about 25 operations, two databases


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzzed(request, tmp_path_factory):
    """A service with a link (so ids and users exist), and the credential each scheme takes."""
    from cookiesync.domain.integrator.services import create_api_key

    tmp = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with (fresh_postgres_database() if request.param == "postgres" else contextlib.nullcontext()) as url:
        svc = start_console(tmp, **({"database_url": url} if url else {}))
        _, token = make_link(svc, "fuzz-user", "777000999", "AQEDAR-openapi-fuzz-cookie-1")
        svc.fuzz_auth = {
            "/v1/users": {"Authorization": f"Bearer {svc.api_key}"},
            "/v1/support": {"Authorization": "Bearer " + asyncio.run(
                create_api_key(svc.settings, "fuzz-support", scopes="support"))},
            "/v1/extension": {"Authorization": f"Bearer {token}"},
            "/v1/webhooks/unipile/account-status": {svc.settings.webhook_header: svc.settings.webhook_secret},
        }
        yield svc
        stop(svc)


def test_no_operation_answers_5xx(fuzzed) -> None:
    """Each operation in turn, a few generated cases each (hypothesis through schemathesis's
    strategies: its pytest plugin's lazy loader does not run on this pytest)."""
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 15, [op.label for op in operations]
    server_errors: list[str] = []
    answers: list[int] = []

    for operation in operations:
        path = operation.path
        headers = next((h for prefix, h in fuzzed.fuzz_auth.items() if path.startswith(prefix)), {})
        params = {"secret": fuzzed.settings.hosted_auth_secret} if path.endswith("/hosted-auth") else None

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def call(case) -> None:
            response = case.call(base_url=fuzzed.url, headers=headers, params=params, timeout=30)
            answers.append(response.status_code)
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except Exception as exc:  # the check's failure: note it and go on to the next operation
                server_errors.append(f"{operation.label}: {response.status_code} {str(exc)[:300]}")

        call()
    assert not server_errors, "\n".join(server_errors[:20])
    # the credentials worked: some cases got past authentication to a 2xx
    assert len(answers) > 5 * len(operations) and sum(200 <= a < 300 for a in answers) > len(operations), answers
