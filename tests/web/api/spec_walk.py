"""Walk the served OpenAPI document: operations, their path / query parameters and every numeric
field of their request bodies, so input tests cover what the spec declares, not a hand list."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

SPEC_URL = "/api/v1/openapi.json"
METHODS = ("get", "post", "put", "patch", "delete")


@dataclass
class Operation:
    """One method on one path of the spec."""

    method: str
    path: str
    op: dict
    body_schema: dict | None = None
    params: list[dict] = field(default_factory=list)

    def url(self, **values) -> str:
        """The path with its parameters filled in (``values`` first, else a plausible default)."""
        out = self.path
        for p in self.params:
            if p["in"] == "path":
                default = 1 if p["schema"].get("type") == "integer" else "X"
                out = out.replace("{%s}" % p["name"], str(values.get(p["name"], default)))
        return out


def load_spec(client) -> dict:
    """The OpenAPI document as the server serves it."""
    resp = client.get(SPEC_URL)
    assert resp.status_code == 200, resp.status_code
    return resp.get_json()


def resolve(doc: dict, schema: dict) -> dict:
    """Follow a local ``$ref`` (repeatedly)."""
    while "$ref" in schema:
        node = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def operations(doc: dict) -> list[Operation]:
    """Every operation of the document, with its JSON body schema (if any) and parameters."""
    out = []
    for path, item in doc["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            content = (op.get("requestBody") or {}).get("content", {})
            body = content.get("application/json", {}).get("schema")
            out.append(Operation(method, path, op, resolve(doc, body) if body else None,
                                 list(op.get("parameters", []))))
    return out


def _variants(doc: dict, schema: dict) -> list[dict]:
    """The schema and, for anyOf/oneOf/allOf, each of its (resolved) branches."""
    schema = resolve(doc, schema)
    branches = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
    if not branches:
        return [schema]
    return [v for b in branches for v in _variants(doc, b)]


def numeric_fields(doc: dict, schema: dict, prefix: tuple = ()) -> list[tuple[tuple, dict]]:
    """Every (path, schema) of a number or integer inside ``schema``.

    A path is a tuple of keys: property names, 0 for an array item, "x" for a map value.
    """
    found: dict[tuple, dict] = {}
    for variant in _variants(doc, schema):
        kind = variant.get("type")
        if kind in ("number", "integer") and prefix:
            found.setdefault(prefix, variant)
        for name, sub in variant.get("properties", {}).items():
            for path, s in numeric_fields(doc, sub, prefix + (name,)):
                found.setdefault(path, s)
        if isinstance(variant.get("items"), dict):
            for path, s in numeric_fields(doc, variant["items"], prefix + (0,)):
                found.setdefault(path, s)
        if isinstance(variant.get("additionalProperties"), dict):
            for path, s in numeric_fields(doc, variant["additionalProperties"], prefix + ("x",)):
                found.setdefault(path, s)
    return list(found.items())


def put_at(body: dict, path: tuple, value) -> dict:
    """Set ``value`` at ``path`` in ``body``, creating the objects and arrays on the way."""
    node = body
    for key, nxt in zip(path, path[1:]):
        empty = [] if nxt == 0 else {}
        if key == 0:
            if not node:
                node.append(empty)
            node = node[0]
        else:
            node = node.setdefault(key, empty)
    if path[-1] == 0:
        node[:] = [value]
    else:
        node[path[-1]] = value
    return body


def dotted(path: tuple) -> str:
    """The field name the API's errors use for a body path (pydantic's loc, dotted)."""
    return ".".join(str(p) for p in path)


def example(doc: dict, schema: dict):
    """A small value valid for ``schema`` (required properties only), for the simple schemas of
    the request bodies; raises if a schema needs more than this knows."""
    schema = _variants(doc, schema)[0]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: example(doc, schema["properties"][name])
                for name in schema.get("required", [])}
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return max(1, schema.get("minimum", 1))
    if kind == "array":
        return [example(doc, schema["items"])] * schema.get("minItems", 0)
    if kind == "string":
        for candidate in ("x", "a" * 64, "1.0.0"):
            if len(candidate) >= schema.get("minLength", 0) and \
                    re.fullmatch(schema.get("pattern", ".*"), candidate):
                return candidate
    raise AssertionError(f"no example for schema {json.dumps(schema)[:200]}")
