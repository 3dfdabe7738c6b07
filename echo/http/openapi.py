"""The OpenAPI schema as Echo really answers: its error shape on every route, event streams
documented, request bodies that are read by hand described."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from echo.http.errors import ERROR_SCHEMA

# A streamed answer, documented (OpenAPI before 3.2) as the shape of each server-sent event.
EVENT_STREAM = {
    "text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {"event": {"type": "string"}, "data": {"type": "string"}}}}
}


def inlined(schema: dict) -> dict:
    """A pydantic JSON schema with its $defs put in place: in OpenAPI, "#/$defs/..." would be
    looked up from the root of the whole document, where there is none."""
    defs = schema.pop("$defs", {})

    def put(node: Any) -> Any:
        if isinstance(node, dict):
            return put(defs[node["$ref"].rsplit("/", 1)[1]]) if "$ref" in node else {k: put(v) for k, v in node.items()}
        return [put(v) for v in node] if isinstance(node, list) else node

    return put(schema)


def body_and_stream(schema: dict, description: str) -> dict:
    """openapi_extra for a route that reads its JSON body by hand and may answer with events."""
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": inlined(schema)}}},
        "responses": {"200": {"description": description, "content": EVENT_STREAM}},
    }


def document_errors(api: FastAPI) -> None:
    """Echo's error shape on every route, in place of FastAPI's default 422 body
    (HTTPValidationError), which Echo never sends: clients and fuzzers read what is true."""
    generate = api.openapi

    def openapi() -> dict:
        if api.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            components["Error"] = ERROR_SCHEMA
            error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            for operations in schema["paths"].values():
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    responses.pop("422", None)
                    responses["4XX"] = {"description": "Bad input or not allowed: the message says what to change", "content": error}
                    responses["5XX"] = {"description": "Echo could not answer (see GET /health); a 503 may carry Retry-After", "content": error}
        return api.openapi_schema

    api.openapi = openapi
