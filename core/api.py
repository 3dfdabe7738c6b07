"""Echo's HTTP API as a FastAPI app factory: Serve mounts it, the unit tests call it directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from core.brain import AskError, Brain
from core.config import EchoConfig
from core.openai_api import add_openai_routes

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
USER_PATTERN = r"^[A-Za-z0-9가-힣_][A-Za-z0-9가-힣_.-]{0,63}$"


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(description="What you want Echo to answer.")
    user: str | None = Field(
        None,
        pattern=USER_PATTERN,
        description="Whose conversation this is (a folder name under memory/dayMMDD/). "
        "Defaults to 'origin' with the owner's token, else 'guest'.",
    )
    stream: bool = Field(False, description="Answer as server-sent events: each circuit's start and tokens, then the reply.")


def error(status: int, code: str, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}, **extra}, status_code=status)


def describe_validation(exc: ValidationError | RequestValidationError) -> str:
    problems = []
    for item in exc.errors():
        where = ".".join(str(p) for p in item["loc"] if p != "body") or "body"
        if item["type"] == "missing":
            problems.append(f"{where} is required")
        elif item["type"] == "extra_forbidden":
            problems.append(f"{where} is not a known field (send only prompt, user and stream)")
        elif item["type"] == "string_pattern_mismatch":
            problems.append(f"{where} must be 1-64 letters, digits, '_', '-' or '.', not starting with '.' or '-'")
        else:
            problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


# A streamed answer, documented (OpenAPI before 3.2) as the shape of each server-sent event.
EVENT_STREAM = {"text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {"event": {"type": "string"}, "data": {"type": "string"}}}}}
# Every error Echo answers, whatever the route (the OpenAI routes add type and param).
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


def ask_body_limit(config: EchoConfig) -> int:
    return config.max_prompt_chars * 4 + 65_536  # 4 bytes a character at most, plus the JSON around it


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is over limit bytes: a huge upload is refused
    without being held in memory (by its Content-Length, else counted as it arrives)."""
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _document_errors(api: FastAPI) -> None:
    """The OpenAPI schema with Echo's error shape on every route, in place of FastAPI's default
    422 body (HTTPValidationError), which Echo never sends: clients and fuzzers read what is true."""
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


def create_api(get_brain: Callable[[], Brain]) -> FastAPI:
    """The app; get_brain returns the Brain of the process serving the request."""
    api = FastAPI(title="Echo", summary="A self-hosted persona server with three circuits and a memory.")

    @api.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        # 404, 405 and the like in the same shape as every other Echo error.
        code = str(exc.detail).lower().replace(" ", "_")
        return error(exc.status_code, code, f"{exc.detail}: see GET /docs for Echo's endpoints")

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "invalid_request", describe_validation(exc))

    # The chat page: static files, no build step.
    api.mount("/ui", StaticFiles(directory=WEB_DIR, html=True), name="ui")

    @api.head("/", include_in_schema=False)
    @api.get("/", summary="Echo is up")
    async def root() -> dict:
        # Answers as soon as the ingress runs, while the models may still be loading.
        return {"name": "Echo", "status": "up", "health": "/health", "ask": "POST /api/ask", "docs": "/docs", "chat": "/ui/",
                "memory_search": "GET /api/memory/search?q=...", "insights": "GET /api/insights",
                "openai": "/v1/models, /v1/chat/completions"}

    @api.get("/health", summary="What is ready, loading or failed")
    async def health() -> dict:
        return await get_brain().health()

    @api.get("/api/memory/search", summary="Search the memory (the owner only)")
    async def memory_search(request: Request, q: str = "", k: int = 10, mode: str = "hybrid") -> Response:
        try:
            result = await get_brain().search_memory(q, k, mode, request.headers.get("authorization"))
        except AskError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())
        return JSONResponse(result)

    @api.get("/api/insights", summary="What the memory holds (the owner only)")
    async def insights(request: Request) -> Response:
        try:
            result = await get_brain().insights(request.headers.get("authorization"))
        except AskError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())
        return JSONResponse(result)

    @api.post(
        "/api/ask",
        summary="Ask Echo",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": AskRequest.model_json_schema()}}},
            "responses": {"200": {"description": "The reply, or with stream: server-sent events", "content": EVENT_STREAM}},
        },
    )
    async def ask(request: Request) -> Response:
        brain = get_brain()
        limit = ask_body_limit(brain.config)
        body = await read_body(request, limit)
        if body is None:
            return error(413, "body_too_large", f"request body is over the limit of {limit} bytes (max_prompt_chars is {brain.config.max_prompt_chars}): shorten the prompt")
        try:
            data = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            return error(400, "invalid_utf8", "request body is not UTF-8: send JSON encoded as UTF-8")
        except (json.JSONDecodeError, RecursionError) as exc:
            where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else " (nested too deeply)"
            return error(400, "invalid_json", f'request body is not valid JSON{where}: send {{"prompt": "..."}}')
        try:
            req = AskRequest.model_validate(data)
        except ValidationError as exc:
            return error(422, "invalid_request", describe_validation(exc))
        authorization = request.headers.get("authorization")
        if req.stream:
            return await _stream(brain.stream_ask(req.prompt, user=req.user, authorization=authorization))
        try:
            result = await brain.ask(req.prompt, user=req.user, authorization=authorization)
        except AskError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())
        return JSONResponse(result)

    add_openai_routes(api, get_brain)
    _document_errors(api)
    return api


def _event(event: dict) -> str:
    name = event["event"]
    data = {k: v for k, v in event.items() if k != "event"}
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _stream(events) -> Response:
    """Server-sent events from Brain.stream_ask; bad input is still a plain 4xx JSON answer."""
    try:
        first = await events.__anext__()
    except AskError as exc:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())

    async def body():
        yield _event(first)
        try:
            async for event in events:
                yield _event(event)
        except AskError as exc:  # every circuit failed
            yield _event({"event": "error", **exc.body()})

    return StreamingResponse(body(), media_type="text/event-stream")
