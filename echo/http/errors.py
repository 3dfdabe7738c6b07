"""Every error body Echo sends, in one place: Echo's shape on /api and the rest
({"error": {"code", "message"}}), OpenAI's on /v1 ({"error": {"message", "type", "param",
"code"}}), whole or as a server-sent event, and the 503 of a full ingress (echo.http.admission)."""

from __future__ import annotations

import json

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from echo.brain.errors import AskError
from echo.brain.users import USER_RULE

# Echo's error shape, documented on every route of the OpenAPI schema.
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": ["string", "null"]}, "message": {"type": "string"}},
        }
    },
}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    """An error in Echo's shape."""
    return JSONResponse({"error": {"code": code, "message": message}, **extra}, status_code=status, headers=headers)


def from_ask_error(exc: AskError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


def busy(retry_after_s: int) -> JSONResponse:
    """The ingress is full (echo.http.admission): Echo's shape, with its Retry-After."""
    return error(503, "busy", f"Echo is busy with other requests: try again in {retry_after_s} s", headers={"Retry-After": str(retry_after_s)})


def echo_event(exc: AskError) -> str:
    """An error after a stream's first event (every circuit failed), as its last event; its
    Retry-After, too late for a header, goes in the body as retry_after."""
    body = exc.body() | ({"retry_after": exc.retry_after} if exc.retry_after is not None else {})
    return f"event: error\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"


def _openai_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error(
    status: int, message: str, kind: str = "invalid_request_error", code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in OpenAI's shape."""
    return JSONResponse(_openai_body(message, kind, code, param), status_code=status, headers=headers)


def _openai_kind(status: int) -> str:
    return "authentication_error" if status in (401, 403) else ("server_error" if status >= 500 else "invalid_request_error")


def openai_from_ask_error(exc: AskError) -> JSONResponse:
    return openai_error(exc.status, exc.message, kind=_openai_kind(exc.status), code=exc.code, headers=exc.headers())


def openai_event(message: str, code: str) -> str:
    """An error in the middle of an OpenAI stream, as a data line."""
    return f"data: {json.dumps(_openai_body(message, 'server_error', code), ensure_ascii=False)}\n\n"


def describe_validation(exc: ValidationError | RequestValidationError, fields: str = "prompt, user, conversation and stream") -> str:
    """A request body's problems in one line a user can act on."""
    problems = []
    for item in exc.errors():
        where = ".".join(str(p) for p in item["loc"] if p != "body") or "body"
        if item["type"] == "missing":
            problems.append(f"{where} is required")
        elif item["type"] == "extra_forbidden":
            problems.append(f"{where} is not a known field (send only {fields})")
        elif item["type"] == "string_pattern_mismatch" and where == "conversation":
            problems.append("conversation must be the `conversation` of an earlier answer (1-64 letters, digits, '_' or '-'), or left out")
        elif item["type"] == "string_pattern_mismatch":
            problems.append(f"{where} must be {USER_RULE}")
        else:
            problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)
