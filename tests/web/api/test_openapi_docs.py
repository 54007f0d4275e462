"""The OpenAPI document, the interactive docs page and its assets, and the health probes."""
from __future__ import annotations

import re

import pytest

API_PATHS = {
    "/api/v1/auth/token": {"post"},
    "/api/v1/products": {"get", "post"},
    "/api/v1/products/{code}": {"get"},
    "/api/v1/products/{code}/routing": {"post"},
    "/api/v1/stations": {"get", "post"},
    "/api/v1/stations/{code}/heartbeat": {"post"},
    "/api/v1/lots": {"get", "post"},
    "/api/v1/lots/{lot_no}": {"get"},
    "/api/v1/lots/{lot_no}/hold": {"post"},
    "/api/v1/lots/{lot_no}/release": {"post"},
    "/api/v1/lots/{lot_no}/scrap": {"post"},
    "/api/v1/lots/{lot_no}/dhr": {"get"},
    "/api/v1/completions": {"post"},
    "/api/v1/completions/{completion_id}": {"get"},
}

PUBLIC = {"/api/v1/auth/token", "/healthz", "/readyz", "/metrics"}  # /metrics: internal only


@pytest.fixture()
def doc(client):
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    return resp.get_json()


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_is_openapi_3_1_and_public(doc):
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]


def test_every_api_path_and_method_is_documented(doc):
    assert PUBLIC <= set(doc["paths"])
    for path, methods in API_PATHS.items():
        assert path in doc["paths"], f"{path} missing from the OpenAPI document"
        assert methods <= set(doc["paths"][path]), (path, set(doc["paths"][path]))


def test_path_parameters_are_declared(doc):
    for path, item in doc["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in item.values():
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert declared == names, (path, declared)
    cid = doc["paths"]["/api/v1/completions/{completion_id}"]["get"]["parameters"]
    assert cid[0]["schema"]["type"] == "integer"


def test_completion_in_schema(doc):
    schema = doc["components"]["schemas"]["CompletionIn"]
    props = schema["properties"]
    for name in ("lot_no", "step", "station", "measurements", "unit_serial", "firmware_version",
                 "firmware_sha256", "qty_good", "qty_scrap"):
        assert name in props, name
    assert set(schema["required"]) == {"lot_no", "step", "station"}
    assert schema.get("additionalProperties") is False
    body = doc["paths"]["/api/v1/completions"]["post"]["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/CompletionIn")
    assert "202" in doc["paths"]["/api/v1/completions"]["post"]["responses"]


def test_completion_post_documents_the_idempotency_key_header(doc):
    params = doc["paths"]["/api/v1/completions"]["post"]["parameters"]
    headers = {p["name"].lower(): p for p in params if p["in"] == "header"}
    assert "idempotency-key" in headers, "the required Idempotency-Key header is not documented"
    assert headers["idempotency-key"]["required"] is True


def test_lot_list_documents_its_query_parameters(doc):
    params = {p["name"]: p for p in doc["paths"]["/api/v1/lots"]["get"]["parameters"]
              if p["in"] == "query"}
    assert {"status", "product", "step", "cursor", "limit"} <= set(params)


def test_bearer_security(doc):
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert scheme.get("bearerFormat") == "JWT"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path in PUBLIC:
                assert "security" not in op, path
            else:
                assert op.get("security") == [{"bearer": []}], (method, path)


def test_every_ref_resolves(doc):
    schemas = doc["components"]["schemas"]
    refs = set(_refs(doc))
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, f"dangling {ref}"


def test_errors_are_documented_as_problem_json(doc):
    assert "Problem" in doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, resp in op["responses"].items():
                if status[0] in "45" and status != "414" and path != "/readyz":
                    assert list(resp["content"]) == ["application/problem+json"], (path, status)


def _operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_each_operation_declares_the_errors_it_answers_and_no_catch_all(doc):
    """Status codes are checked against the document: no "default" that would allow any."""
    for path, method, op in _operations(doc):
        statuses = set(op["responses"])
        assert "default" not in statuses, (method, path)
        if "security" in op:
            assert {"401", "503"} <= statuses, (method, path)
        if op.get("x-required-role", "operator") != "operator":
            assert "403" in statuses, (method, path)
        if "{" in path:
            assert "404" in statuses, (method, path)
        if "requestBody" in op:
            assert {"400", "413", "415", "422"} <= statuses, (method, path)
    assert {"401", "429"} <= set(doc["paths"]["/api/v1/auth/token"]["post"]["responses"])
    for path in ("/api/v1/lots", "/api/v1/products", "/api/v1/stations", "/api/v1/completions"):
        assert "409" in doc["paths"][path]["post"]["responses"], path
    download = doc["paths"]["/api/v1/firmware/{firmware_id}/download"]["get"]["responses"]
    assert {"200", "206", "302", "304", "403", "404", "410", "416"} <= set(download)
    assert download["200"]["content"]["application/octet-stream"]["schema"]["format"] == "binary"


def test_firmware_upload_is_documented_as_multipart(doc):
    body = doc["paths"]["/api/v1/firmware"]["post"]["requestBody"]
    assert body["required"] is True and list(body["content"]) == ["multipart/form-data"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert set(schema["required"]) == {"file", "product", "version"}
    assert schema["properties"]["file"]["format"] == "binary"
    assert {"sha256", "notes"} <= set(schema["properties"])
    assert schema["properties"]["version"]["pattern"]  # semantic versions only


def test_dhr_is_documented_as_json_and_csv(doc):
    content = doc["paths"]["/api/v1/lots/{lot_no}/dhr"]["get"]["responses"]["200"]["content"]
    assert content["application/json"]["schema"]["$ref"].endswith("/DhrOut")
    assert content["text/csv"]["schema"] == {"type": "string"}
    png = doc["paths"]["/api/v1/labels/preview"]["post"]["responses"]["200"]["content"]
    assert list(png) == ["image/png"]


def _keys(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in ("properties", "$defs", "schemas", "paths", "responses"):
                yield k
            yield from _keys(v)
    elif isinstance(node, list):
        for v in node:
            yield from _keys(v)


def test_constraints_use_json_schema_keywords(doc):
    """pydantic's gt/ge/lt/le (left on float | int fields) are published as JSON Schema's."""
    assert not {"gt", "ge", "lt", "le", "multiple_of"} & set(_keys(doc))
    width = doc["components"]["schemas"]["TemplateIn"]["properties"]["width_mm"]
    assert width["exclusiveMinimum"] == 0 and width["maximum"] == 300


_PATH_ORDER = """
import json, re
from web import create_app
from web.openapi import build_openapi
doc = build_openapi(create_app())
print(json.dumps([[[p["name"] for p in op["parameters"] if p["in"] == "path"],
                   re.findall(r"{(\\w+)}", path)]
                  for path, item in doc["paths"].items() for op in item.values()]))
"""


def test_path_parameters_are_listed_in_path_order(tmp_path):
    """Every process publishes the same document: not in the order of a set of names, which
    changes with the interpreter's hash seed (gunicorn workers would disagree)."""
    import json
    import os
    import subprocess
    import sys

    import web
    root = os.path.dirname(os.path.dirname(web.__file__))
    for seed in ("0", "3"):  # 3 put assignment_id before code when names came from a set
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=root,
                   NEUROHUB_DATA_DIR=str(tmp_path / seed), LOG_LEVEL="WARNING")
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        out = subprocess.run([sys.executable, "-c", _PATH_ORDER], env=env, capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        for declared, in_path in json.loads(out.stdout.strip().splitlines()[-1]):
            assert declared == in_path, (seed, declared, in_path)


def test_document_is_stable(client, doc):
    assert client.get("/api/v1/openapi.json").get_json() == doc


# --- /api/docs --------------------------------------------------------------------------------

def test_docs_page_uses_local_assets_that_load(client):
    resp = client.get("/api/docs")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert "/api/v1/openapi.json" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    assert not [a for a in assets if re.match(r"^(https?:)?//", a)], assets
    for asset in assets:
        got = client.get(asset)
        assert got.status_code == 200, asset
        if asset.endswith(".png"):  # the favicon
            assert got.headers["Content-Type"] == "image/png", asset
            assert got.get_data().startswith(b"\x89PNG"), asset
            continue
        assert len(got.get_data()) > 1000, asset
        expected = "text/css" if asset.endswith(".css") else "javascript"
        assert expected in got.headers["Content-Type"], (asset, got.headers["Content-Type"])


def test_docs_page_serves_swagger_ui_5_which_renders_openapi_3_1(client):
    """Swagger UI 4 (swagger-ui-bundle 1.1.0) shows "Unable to render this definition" for 3.1."""
    html = client.get("/api/docs").get_data(as_text=True)
    bundle = [a for a in re.findall(r'src="([^"]+)"', html) if a.endswith("swagger-ui-bundle.js")]
    assert bundle, html
    version = re.search(rb'PACKAGE_VERSION:"(\d+)\.', client.get(bundle[0]).get_data())
    assert version and int(version.group(1)) >= 5, "Swagger UI 5 or newer renders OpenAPI 3.1"


def test_swagger_ui_files_ship_as_package_data():
    """Every vendored Swagger UI file is matched by setup.cfg's package_data (wheels carry it)."""
    import configparser
    import fnmatch
    from pathlib import Path

    import web
    cfg = configparser.ConfigParser()
    cfg.read(Path(web.__file__).parents[1] / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["web"].split(",")]
    folder = Path(web.__file__).parent / "static" / "swagger-ui"
    files = [f.relative_to(folder.parents[1]).as_posix() for f in folder.iterdir()]
    assert {"static/swagger-ui/swagger-ui-bundle.js", "static/swagger-ui/swagger-ui.css",
            "static/swagger-ui/LICENSE"} <= set(files)
    for name in files:
        assert any(fnmatch.fnmatch(name, p) for p in patterns), f"{name} is not package data"
    assert "swagger-ui-bundle" not in cfg["options"]["install_requires"]


def test_docs_asset_traversal_is_refused(client):
    for path in ("/api/docs/assets/../../../etc/passwd", "/api/docs/assets/%2e%2e/%2e%2e/setup.cfg",
                 "/api/docs/assets/nope.js"):
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert b"root:" not in resp.get_data()


# --- health -----------------------------------------------------------------------------------

def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_readyz_checks_database_and_broker(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
