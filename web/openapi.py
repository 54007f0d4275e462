"""Request validation and the OpenAPI document, from the same pydantic models.

``@spec(body=..., query=..., responses=...)`` validates the request and passes the parsed
models to the view as ``body`` / ``query``; it also records the models on the view so that
``build_openapi`` can describe every route from what actually validates it.
"""
from __future__ import annotations

import re
from functools import wraps
from http import HTTPStatus
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_from_directory
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from .bodies import json_with_long_numbers
from .errors import (PROBLEM, ApiError, BadRequest, UnsupportedMediaType, field_error, problem,
                     pydantic_errors)

JSON_TYPES = ("application/json", "application/problem+json")


def _parse_body(model: type[BaseModel], optional: bool = False) -> BaseModel:
    if optional and not request.content_length and not request.get_data(cache=True):
        return model()
    mimetype = request.mimetype or ""
    if not (mimetype in JSON_TYPES or mimetype.endswith("+json")):
        raise UnsupportedMediaType("send the body as application/json")
    raw = request.get_data(cache=True)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = pydantic_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            if "number out of range" in errors[0]["message"]:  # valid JSON, thousands of digits
                try:
                    data = json_with_long_numbers(raw)
                except ValueError:
                    pass
                else:
                    return model.model_validate(data)  # each such number: 422 naming its field
            raise BadRequest("malformed JSON body", errors=[
                {"field": "body", "message": errors[0]["message"]}]) from None
        if any(e["type"] == "model_type" and e["field"] == "body" for e in errors):
            raise field_error("body", "must be a JSON object") from None
        raise


def _parse_query(model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        errors = [dict(e, field=f"query.{e['field']}") for e in pydantic_errors(exc)]
        raise ApiError("invalid query parameters", errors=errors) from None


# What a response carries: a model (JSON), None (no body), or {media type: model | JSON schema}.
ResponseSpec = type[BaseModel] | None | dict[str, "type[BaseModel] | dict"]
JSON_BODY_ERRORS = (400, 413, 415, 422)  # malformed, too large, not JSON, invalid fields
# gunicorn answers a request line over its limit (4094 bytes) itself, before the app sees it.
URI_TOO_LONG = {"description": "URI Too Long (from the web server: the request line is over "
                "4094 bytes)", "content": {"text/html": {"schema": {"type": "string"}}}}
CURSOR_DOC = ("opaque: the next_cursor of the previous page of the same list; any other value "
              "is refused with 400")


def spec(*, body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
         responses: dict[int, ResponseSpec] | None = None, tags: list[str] | None = None,
         public: bool = False, optional_body: bool = False, headers: list[dict] | None = None,
         form: type[BaseModel] | None = None, files: tuple[str, ...] = (),
         errors: tuple[int, ...] = (), description: str | None = None):
    """Validate body/query with pydantic and record the route's schema for OpenAPI.

    ``form``/``files`` document a multipart/form-data body that the view parses itself (its
    text fields, and the parts that carry files); ``errors`` lists the error statuses the view
    itself raises beyond those every route of its kind can answer (see ``_error_statuses``);
    ``description`` is the operation's longer text (what a caller gets, and when).
    """

    def deco(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if body is not None:
                kwargs["body"] = _parse_body(body, optional_body)
            if query is not None:
                kwargs["query"] = _parse_query(query)
            return view(*args, **kwargs)

        wrapper.openapi = {"body": body, "query": query, "responses": responses or {200: None},
                           "tags": tags or [], "public": public,
                           "optional_body": optional_body, "headers": headers or [],
                           "form": form, "files": files, "errors": errors,
                           "description": description}
        return wrapper

    return deco


def _models_of(meta: dict) -> list[type[BaseModel]]:
    out = [meta["body"], meta["query"], meta["form"]]
    for resp in meta["responses"].values():
        out.extend(resp.values() if isinstance(resp, dict) else [resp])
    return [m for m in out if isinstance(m, type) and issubclass(m, BaseModel)]


def _collect_models(app: Flask) -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    for view in app.view_functions.values():
        meta = getattr(view, "openapi", None)
        if meta:
            for m in _models_of(meta):
                seen[m.__name__] = m
    return list(seen.values())


# pydantic leaves a constraint it cannot place (e.g. ``gt`` on ``float | int``) under its own
# name, which JSON Schema ignores: publish the standard keyword instead.
_PYDANTIC_KEYWORDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum",
                      "le": "maximum", "multiple_of": "multipleOf"}
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")


def _standard_keywords(schema):
    """The schema with pydantic's constraint names replaced by JSON Schema's (recursively)."""
    if isinstance(schema, list):
        return [_standard_keywords(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _standard_keywords(sub) for name, sub in value.items()}
        elif key in ("enum", "const", "default", "examples", "required"):
            out[key] = value
        else:
            out[_PYDANTIC_KEYWORDS.get(key, key)] = _standard_keywords(value)
    return out


def _media(model, ref: str) -> dict:
    if isinstance(model, dict):
        return {"schema": model}
    return {"schema": {"$ref": ref.format(model=model.__name__)}}


def _form_body(meta: dict, ref: str) -> dict:
    """multipart/form-data: the form model's text fields plus one binary part per file."""
    fields = _standard_keywords(meta["form"].model_json_schema(ref_template=ref))
    schema = {"type": "object", "additionalProperties": False,
              "required": [*fields.get("required", []), *meta["files"]],
              "properties": dict(fields.get("properties", {}), **{
                  name: {"type": "string", "format": "binary",
                         "contentMediaType": "application/octet-stream"}
                  for name in meta["files"]})}
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def _error_statuses(meta: dict, role: str | None, has_params: bool, path_params: bool) -> set[int]:
    """The error statuses a route can answer: those of its kind plus the ones it declares.

    Every secured route answers 401, and 403 when a role above operator is required; a route
    with a path parameter answers 404 for a record that does not exist; JSON and multipart
    bodies add 400/413/415/422; any input can hold text the database cannot store (400); every
    route but the liveness probe answers 503 while the database or broker is unreachable.
    """
    out = set(meta["errors"])
    if not meta["public"]:
        out.add(401)
        if role and role != "operator":
            out.add(403)
    if path_params:
        out.add(404)
    if meta["body"] is not None or meta["form"] is not None:
        out.update(JSON_BODY_ERRORS)
    if has_params or meta["body"] is not None:
        out.add(400)
    if not meta["public"] or meta["body"] is not None:
        out.add(503)
    return out


_PATH_ARG = re.compile(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>")


def _problem_schema() -> dict:
    """The RFC 9457 problem document every error response carries (a fresh dict per call)."""
    return {"type": "object", "required": ["type", "title", "status"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object"}},
        "request_id": {"type": "string"}}}


def _path_params(rule) -> tuple[str, list[dict]]:
    """The rule's path in OpenAPI form (``{arg}``) and its path parameters, in path order."""
    path = rule.rule
    params = []
    for arg in _PATH_ARG.findall(rule.rule):
        path = path.replace(f"<{arg}>", f"{{{arg}}}").replace(f"<int:{arg}>", f"{{{arg}}}") \
            .replace(f"<path:{arg}>", f"{{{arg}}}")
        params.append({"name": arg, "in": "path", "required": True,
                       "schema": {"type": "integer" if f"<int:{arg}>" in rule.rule else "string"}})
    return path, params


def _query_params(meta: dict, ref: str) -> list[dict]:
    """One query parameter per field of the route's query model (none without one)."""
    if meta["query"] is None:
        return []
    params = []
    qs = meta["query"].model_json_schema(ref_template=ref)
    for name, prop in qs.get("properties", {}).items():
        params.append({"name": name, "in": "query", "schema": _standard_keywords(prop),
                       "required": name in qs.get("required", [])})
        if name == "cursor":
            params[-1]["description"] = CURSOR_DOC
    return params


def _responses(meta: dict, ref: str, errors: set[int], has_params: bool) -> dict:
    """The declared responses, then a Problem for each error status not declared, then 414."""
    out = {}
    for status, resp_spec in meta["responses"].items():
        resp = {"description": HTTPStatus(status).phrase}
        if isinstance(resp_spec, dict):
            resp["content"] = {media: _media(m, ref) for media, m in resp_spec.items()}
        elif resp_spec is not None:
            resp["content"] = {"application/json": _media(resp_spec, ref)}
        out[str(status)] = resp
    for status in sorted(errors - set(meta["responses"])):
        out[str(status)] = {"description": HTTPStatus(status).phrase,
                            "content": {PROBLEM: {"schema": {
                                "$ref": ref.format(model="Problem")}}}}
    if has_params:
        out["414"] = URI_TOO_LONG
    return out


def _operation(rule, view, meta: dict, method: str, params: list[dict], ref: str) -> dict:
    """The OpenAPI operation of one method of one route."""
    role = getattr(view, "required_role", None)
    op = {"operationId": rule.endpoint.replace(".", "_") + "_" + method.lower(),
          "summary": (view.__doc__ or "").strip().splitlines()[0] if view.__doc__ else "",
          "tags": meta["tags"], "parameters": params, "responses": {}}
    if meta.get("description"):
        op["description"] = meta["description"]
    if not meta["public"]:
        op["security"] = [{"bearer": []}]
        if role:
            op["description"] = f"Requires role **{role}** or higher."
            op["x-required-role"] = role
    if meta["body"] is not None:
        op["requestBody"] = {"required": not meta["optional_body"], "content": {
            "application/json": _media(meta["body"], ref)}}
    elif meta["form"] is not None:
        op["requestBody"] = _form_body(meta, ref)
    errors = _error_statuses(meta, role, bool(params), bool(rule.arguments))
    op["responses"] = _responses(meta, ref, errors, bool(params))
    return op


def build_openapi(app: Flask) -> dict:
    """The OpenAPI 3.1 document of every route decorated with ``@spec``."""
    models = _collect_models(app)
    ref = "#/components/schemas/{model}"
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=ref)
    schemas = top.get("$defs", {})
    paths: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        meta = getattr(view, "openapi", None)
        if not meta:
            continue
        path, params = _path_params(rule)
        params += _query_params(meta, ref)
        params += [dict(h, **{"in": "header"}) for h in meta["headers"]]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule, view, meta, method,
                                                                    params, ref)
    schemas["Problem"] = _problem_schema()
    return {"openapi": "3.1.0",
            "info": {"title": "NeuroHub MES API", "version": "1"},
            "paths": dict(sorted(paths.items())),
            "components": {"schemas": {name: _standard_keywords(schema) for name, schema
                                       in schemas.items()}, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}}


docs_bp = Blueprint("docs", __name__)
# Swagger UI 5 (renders OpenAPI 3.1), vendored from npm's swagger-ui-dist: see its README.md.
SWAGGER_UI_DIR = Path(__file__).parent / "static" / "swagger-ui"
SWAGGER_UI_VERSION = "5.35.0"
_DOCS_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>NeuroHub MES API</title><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" sizes="32x32" href="{base}/favicon-32x32.png">
<link rel="stylesheet" href="{base}/swagger-ui.css"></head><body><div id="ui"></div>
<script src="{base}/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({{url: "/api/v1/openapi.json", dom_id: "#ui",
  deepLinking: true, displayOperationId: true}});</script></body></html>"""


@docs_bp.get("/api/v1/openapi.json")
def openapi_json():
    """The OpenAPI document, generated from the validating schemas."""
    doc = current_app.extensions.get("neurohub.openapi")
    if doc is None:
        doc = current_app.extensions["neurohub.openapi"] = build_openapi(current_app)
    return jsonify(doc)


@docs_bp.get("/api/docs")
def docs_ui():
    """Interactive API documentation (Swagger UI 5, served locally)."""
    return Response(_DOCS_PAGE.format(base="/api/docs/assets"), mimetype="text/html")


@docs_bp.get("/api/docs/assets/<path:name>")
def docs_assets(name):
    """Swagger UI's static files, vendored in the package (no CDN: works offline)."""
    return send_from_directory(SWAGGER_UI_DIR, name)


__all__ = ["spec", "build_openapi", "docs_bp", "problem"]
