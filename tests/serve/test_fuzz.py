"""Fuzz the API from its OpenAPI schema (schemathesis), over HTTP against a live server:
valid and invalid requests alike get no 5xx, and every answer conforms to the schema
(status codes, content types, bodies).

The operations are listed here, and a test checks the list against the published schema, so a
new endpoint cannot go unfuzzed. (schemathesis' lazy ``from_fixture`` loader does not run
under this pytest version, so each operation's strategy is driven with hypothesis directly.)
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

MAX_EXAMPLES = 30  # per operation and mode: bounded so the suite stays fast
OPERATIONS = [
    ("POST", "/v1/code"),
    ("POST", "/v1/code:batch"),
    ("POST", "/v1/fhir"),
    ("GET", "/v1/codes/{code}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


def test_every_operation_is_fuzzed(api_schema):
    published = {
        (result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()
    }
    assert published == set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=lambda x: x)
def test_operation_conforms_to_the_schema(api_schema, live, method, path, mode):
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    operation = api_schema[path][method]
    if mode == GenerationMode.NEGATIVE and path in ("/healthz", "/readyz"):
        pytest.skip("no parameters or body to make invalid")
    # Some schema-valid requests are rightly refused: a DocumentReference whose attachment is
    # not base64 UTF-8 text, an export of codes that are in no code set. JSON Schema cannot
    # say that, so those two skip the check that schema-valid data is accepted.
    excluded = [positive_data_acceptance] if path in ("/v1/code", "/v1/fhir") else []

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case):
        case.call_and_validate(base_url=live.url, excluded_checks=excluded)

    fuzz()
