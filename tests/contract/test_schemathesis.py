"""The API does what its OpenAPI document says: schemathesis against the real stack.

Every operation of /api/v1/openapi.json is exercised as an admin and as an operator (gunicorn,
a Celery worker and the outbox relay on PostgreSQL and Redis) with schemathesis's examples,
coverage (boundary values, each field made invalid in turn, unexpected HTTP methods) and fuzzing
phases. Every response is judged by all of schemathesis's checks: no 5xx; only documented
status codes, content types and headers; bodies that match their schemas; invalid data refused;
valid data accepted; authentication enforced; 405 with Allow for methods a path does not have.
The run is derandomized (fixed seed), so a failure reproduces.

Not run: schemathesis's stateful phase and the checks that need it (use_after_free,
ensure_resource_availability, object_level_authorization): the document has no OpenAPI links
between operations for it to follow.
"""
from __future__ import annotations

import copy
import time
from collections import Counter

import pytest
import requests
import schemathesis

MAX_EXAMPLES = 4  # fuzzing cases per operation; examples and coverage cases come on top
MIN_CASES = 1000  # across both roles (issue 12, item 23)
CASES: Counter = Counter()

# positive_data_acceptance: a request that matches the schema must not be refused. These
# operations refuse some with 422 by rules a JSON Schema cannot state (records the request names
# must exist; relations between fields); the check still fails on any other refusal there.
RULES_BEYOND_JSON_SCHEMA = {
    "POST /api/v1/completions": "the lot, station and step must exist and match the routing",
    "POST /api/v1/firmware": "the product must exist; the image must be valid and match sha256",
    "POST /api/v1/labels/preview": "the template must exist; data must fit its variables",
    "POST /api/v1/labels/templates": "variables must be ones a completion supplies",
    "POST /api/v1/lots": "the product must exist; serials must number `quantity`",
    "POST /api/v1/products": "measurement names unique per step; label templates must exist",
    "POST /api/v1/products/{code}/routing": "as for POST /api/v1/products",
    "POST /api/v1/stations": "printer_uri must be a usable URI (tcp://host[:port], ...)",
}
# A cursor is opaque: only a next_cursor this API produced continues a list (else 400).
CURSOR_LISTS = ("GET /api/v1/backups", "GET /api/v1/firmware", "GET /api/v1/labels/jobs",
                "GET /api/v1/lots", "GET /api/v1/products", "GET /api/v1/stations")
POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis's default
# schemathesis's list, plus 413 (body over the limit) and 414 (request line over the web
# server's limit): both refuse the invalid request, as the document declares.
NEGATIVE = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428",
            "429", "5xx"]


def _accepting(statuses: list[str]) -> dict:
    return {"positive_data_acceptance": {"expected-statuses": POSITIVE + statuses}}


def _config(role: str, document: dict) -> dict:
    """schemathesis's configuration for one role (what a schemathesis.toml would hold)."""
    operations = [{"include-name": name, "checks": _accepting(["422"])}
                  for name in RULES_BEYOND_JSON_SCHEMA]
    operations += [{"include-name": name, "checks": _accepting(["400"])} for name in CURSOR_LISTS]
    if role == "operator":
        # An operator is refused (403) before any validation on routes for higher roles: their
        # examples and fuzzing cases check that; boundary variants would only repeat it.
        higher = [f"{method.upper()} {path}" for path, item in document["paths"].items()
                  for method, op in item.items() if op.get("x-required-role", "operator")
                  != "operator"]
        operations.append({"include-name": higher, "phases": {"coverage": {"enabled": False}}})
    return {
        "seed": 12023,
        "request-timeout": 30,
        # the server shares 2 cores with the run: speed and size health checks are only noise
        "suppress-health-check": ["too_slow", "data_too_large", "large_base_example"],
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "checks": {"negative_data_rejection": {"expected-statuses": NEGATIVE}},
        # 405 + Allow does not depend on who asks: the admin run sends the unexpected methods
        "phases": {"coverage": {"unexpected-methods": ["get", "put", "post", "delete", "options",
                                                       "patch", "trace", "query"]
                                if role == "admin" else []}},
        "operations": operations,
    }


def _document() -> dict:
    """The OpenAPI document of the app under test, built at collection (no server needed yet).

    schemathesis makes one test per operation at collection time; the server is started later
    by the ``stack`` fixture, and test_the_server_publishes_this_document ties the two together.
    """
    from tests.conftest import REDIS_BASE, TEST_CONFIG
    from web import create_app
    from web.openapi import build_openapi
    return build_openapi(create_app(dict(TEST_CONFIG, REDIS_URL=REDIS_BASE,
                                         DATABASE_URL="postgresql+psycopg://127.0.0.1/unused")))


DOCUMENT = _document()
as_admin = schemathesis.openapi.from_dict(
    copy.deepcopy(DOCUMENT), config=schemathesis.Config.from_dict(_config("admin", DOCUMENT)))
as_operator = schemathesis.openapi.from_dict(
    copy.deepcopy(DOCUMENT), config=schemathesis.Config.from_dict(_config("operator", DOCUMENT)))


@pytest.fixture(scope="module")
def clock():
    """Time spent per role, printed at the end of the module (run with -s to see it)."""
    spent: Counter = Counter()
    yield spent
    for role, seconds in spent.items():
        print(f"\nschemathesis as {role}: {CASES[role]} cases in {seconds:.1f} s")


def _run(case, stack, clock, role: str) -> None:
    CASES[role] += 1
    started = time.monotonic()
    try:
        case.call_and_validate(base_url=stack.url, headers=stack.headers[role])
    finally:
        clock[role] += time.monotonic() - started


@as_admin.parametrize()
def test_api_conforms_as_admin(case, stack, clock):
    _run(case, stack, clock, "admin")


@as_operator.parametrize()
def test_api_conforms_as_operator(case, stack, clock):
    _run(case, stack, clock, "operator")


def test_real_records_conform_to_the_document(stack):
    """Responses generated cases rarely reach (records must exist) match the document too:
    a multipart firmware upload, its download, a device history record as JSON, CSV and PDF,
    and a label preview."""
    from tests.support.firmwaredata import image

    def check(method, path, expected, **case):
        response = as_admin[path][method].Case(**case).call_and_validate(
            base_url=stack.url, headers=stack.headers["admin"])
        assert response.status_code == expected, (path, response.text[:500])
        return response

    upload = check("POST", "/api/v1/firmware", 201, media_type="multipart/form-data",
                   body={"product": stack.product, "version": "1.0.0", "file": image(4096)})
    check("GET", "/api/v1/firmware/{firmware_id}/download", 200,
          path_parameters={"firmware_id": upload.json()["id"]})
    for fmt, media in (("json", "application/json"), ("csv", "text/csv"),
                       ("pdf", "application/pdf")):
        dhr = check("GET", "/api/v1/lots/{lot_no}/dhr", 200,
                    path_parameters={"lot_no": stack.lot}, query={"format": fmt})
        assert dhr.headers["content-type"][0].startswith(media)  # schemathesis: lists
    check("POST", "/api/v1/labels/preview", 200, media_type="application/json",
          body={"template": "box", "data": {"product_code": stack.product, "product_name": "N",
                                            "lot_no": stack.lot, "quantity": 5,
                                            "date": "2026-12-05"}})


def test_the_server_publishes_this_document(stack):
    """The document the cases were generated from is the one the running server serves."""
    served = requests.get(f"{stack.url}/api/v1/openapi.json", timeout=10).json()
    assert served == DOCUMENT


def test_the_contract_ran_enough_cases():
    """At least MIN_CASES cases ran, in both roles (this test runs after the others)."""
    assert CASES["admin"] and CASES["operator"], CASES
    assert sum(CASES.values()) >= MIN_CASES, CASES
