"""Request validation and the OpenAPI document, from the same pydantic models.

``@spec(body=..., query=..., responses=...)`` validates the request and passes the parsed
models to the view as ``body`` / ``query``; it also records the models on the view so that
``build_openapi`` can describe every route from what actually validates it.
"""
from __future__ import annotations

from functools import wraps
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_from_directory
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from .errors import ApiError, BadRequest, field_error, problem, pydantic_errors

JSON_TYPES = ("application/json", "application/problem+json")


class UnsupportedMediaType(ApiError):
    """The body is not JSON."""

    status, title = 415, "Unsupported media type"


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


def spec(*, body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
         responses: dict[int, type[BaseModel] | None] | None = None, tags: list[str] | None = None,
         public: bool = False, optional_body: bool = False, headers: list[dict] | None = None):
    """Validate body/query with pydantic and record the route's schema for OpenAPI."""

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
                           "optional_body": optional_body, "headers": headers or []}
        return wrapper

    return deco


def _collect_models(app: Flask) -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    for view in app.view_functions.values():
        meta = getattr(view, "openapi", None)
        if not meta:
            continue
        for m in [meta["body"], meta["query"], *meta["responses"].values()]:
            if m is not None:
                seen[m.__name__] = m
    return list(seen.values())


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
        path = rule.rule
        params = []
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", f"{{{arg}}}").replace(f"<int:{arg}>", f"{{{arg}}}") \
                .replace(f"<path:{arg}>", f"{{{arg}}}")
            params.append({"name": arg, "in": "path", "required": True,
                           "schema": {"type": "integer" if f"<int:{arg}>" in rule.rule else "string"}})
        if meta["query"] is not None:
            qs = meta["query"].model_json_schema(ref_template=ref)
            for name, prop in qs.get("properties", {}).items():
                params.append({"name": name, "in": "query", "schema": prop,
                               "required": name in qs.get("required", [])})
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            op = {"operationId": rule.endpoint.replace(".", "_") + "_" + method.lower(),
                  "summary": (view.__doc__ or "").strip().splitlines()[0] if view.__doc__ else "",
                  "tags": meta["tags"], "parameters": params + [
                      dict(h, **{"in": "header"}) for h in meta["headers"]], "responses": {}}
            role = getattr(view, "required_role", None)
            if not meta["public"]:
                op["security"] = [{"bearer": []}]
                if role:
                    op["description"] = f"Requires role **{role}** or higher."
            if meta["body"] is not None:
                op["requestBody"] = {"required": not meta["optional_body"], "content": {"application/json": {
                    "schema": {"$ref": ref.format(model=meta["body"].__name__)}}}}
            for status, model in meta["responses"].items():
                resp = {"description": str(status)}
                if model is not None:
                    resp["content"] = {"application/json": {
                        "schema": {"$ref": ref.format(model=model.__name__)}}}
                op["responses"][str(status)] = resp
            op["responses"]["default"] = {"description": "error", "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            paths.setdefault(path, {})[method.lower()] = op
    schemas["Problem"] = {"type": "object", "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object"}}}}
    return {"openapi": "3.1.0",
            "info": {"title": "NeuroHub MES API", "version": "1"},
            "paths": dict(sorted(paths.items())),
            "components": {"schemas": schemas, "securitySchemes": {
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
