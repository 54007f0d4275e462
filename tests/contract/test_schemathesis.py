"""The API does what its OpenAPI document says: schemathesis against the real stack.

Every operation of /api/v1/openapi.json is exercised as an admin and as an operator with
schemathesis's examples, coverage (boundary and negative values) and fuzzing phases, and every
response is judged by all of its built-in checks: no 5xx, only documented status codes, content
types and headers, bodies that match their schemas, invalid data refused, valid data accepted,
authentication enforced. The run is derandomized so a failure reproduces.
"""
from __future__ import annotations

import time
from collections import Counter

import pytest
import requests
import schemathesis

ROLES = ("admin", "operator")
MAX_EXAMPLES = 12  # fuzzing cases per operation and role; examples and coverage cases come on top
MIN_CASES = 1000  # across both roles (issue 12, item 23)
CASES: Counter = Counter()
STARTED: dict[str, float] = {}
CONFIG = {
    "seed": 12023,
    "request-timeout": 30,
    # the server shares 2 cores with the run: speed and size health checks would only be noise
    "suppress-health-check": ["too_slow", "data_too_large", "large_base_example"],
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
}


@pytest.fixture(scope="module")
def role(request, stack):
    """The role the whole run of one parametrization authenticates as."""
    STARTED[request.param] = time.monotonic()
    yield request.param
    took = time.monotonic() - STARTED[request.param]
    print(f"\nschemathesis as {request.param}: {CASES[request.param]} cases in {took:.1f} s")


def _load_schema():
    """The OpenAPI document of the app under test, built at collection (no server needed yet).

    schemathesis generates one test per operation at collection time; the server is started by
    the ``stack`` fixture, and test_the_server_publishes_this_document ties the two together.
    """
    from tests.conftest import REDIS_BASE, TEST_CONFIG
    from web import create_app
    from web.openapi import build_openapi
    app = create_app(dict(TEST_CONFIG, DATABASE_URL="postgresql+psycopg://127.0.0.1/unused",
                          REDIS_URL=REDIS_BASE))
    loaded = schemathesis.openapi.from_dict(build_openapi(app),
                                            config=schemathesis.Config.from_dict(CONFIG))
    return loaded


schema = _load_schema()


@pytest.mark.parametrize("role", ROLES, indirect=True)
@schema.parametrize()
def test_api_conforms_to_its_openapi_document(case, role, stack):
    CASES[role] += 1
    case.call_and_validate(base_url=stack.url, headers=stack.headers[role])


def test_the_server_publishes_this_document(stack):
    """The document the cases were generated from is the one the running server serves."""
    served = requests.get(f"{stack.url}/api/v1/openapi.json", timeout=10).json()
    assert served == schema.raw_schema


def test_the_contract_ran_enough_cases():
    """At least MIN_CASES cases ran, split across both roles (this test runs after the others)."""
    assert set(CASES) == set(ROLES), CASES
    assert sum(CASES.values()) >= MIN_CASES, CASES
