"""Echo's HTTP API as a FastAPI app factory: Serve mounts it, the unit tests call it directly.

The routes of /api and the chat page are here; the OpenAI-compatible /v1 routes are in
echo.http.openai, every error body in echo.http.errors."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from echo.brain.brain import AskError, Brain
from echo.brain.history import ID_PATTERN
from echo.brain.users import USER_PATTERN, USER_RULE
from echo.config import EchoConfig
from echo.http import errors
from echo.http.admission import Admission
from echo.http.bodies import ask_body_limit, read_body
from echo.http.openai import add_openai_routes
from echo.http.openapi import body_and_stream, document_errors
from echo.memory.facts import MAX_TEXT_CHARS

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
FACTS_IMPORT_LIMIT = 32 * 1024 * 1024  # a JSON Lines file of facts: 30,000 facts are about 10 MB


class FactChanges(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT_CHARS, description="The fact, corrected.")
    about: str | None = Field(None, min_length=1, max_length=200, description="Whom it is about.")
    kind: str | None = Field(None, description="profile, preference, event, plan or other.")
    date: str | None = Field(None, description="ISO date, e.g. 2023-05-08.")


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(description="What you want Echo to answer.")
    user: str | None = Field(
        None,
        pattern=USER_PATTERN,
        description="Whose conversation this is (a folder name under memory/dayMMDD/). Defaults to 'origin' with the owner's token, else 'guest'.",
    )
    conversation: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="The conversation this prompt goes on with: the `conversation` of an earlier answer, or (with your key "
        "or the owner's token) the `id` GET /api/conversations lists, however long ago. Leave it out for a new "
        "conversation; one Echo does not know for this user also starts a new one.",
    )
    stream: bool = Field(False, description="Answer as server-sent events: each circuit's start and tokens, then the reply.")


def create_api(get_brain: Callable[[], Brain], limits: EchoConfig | None = None) -> FastAPI:
    """The app; get_brain returns the Brain of the process serving the request. With limits,
    requests past its brain_max_ongoing_requests + brain_max_queued_requests get a 503."""
    api = FastAPI(title="Echo", summary="A self-hosted persona server with three circuits and a memory.")
    if limits is not None:
        api.add_middleware(Admission, ongoing=limits.brain_max_ongoing_requests, queued=limits.brain_max_queued_requests, retry_after_s=limits.retry_after_s)

    @api.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        # 404, 405 and the like in the same shape as every other Echo error.
        code = str(exc.detail).lower().replace(" ", "_")
        return errors.error(exc.status_code, code, f"{exc.detail}: see GET /docs for Echo's endpoints")

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return errors.error(422, "invalid_request", errors.describe_validation(exc))

    @api.exception_handler(AskError)
    async def _refused(_request: Request, exc: AskError) -> JSONResponse:
        return errors.from_ask_error(exc)

    # The chat page: static files, no build step.
    api.mount("/ui", StaticFiles(directory=WEB_DIR, html=True), name="ui")

    @api.head("/", include_in_schema=False)
    @api.get("/", summary="Echo is up")
    async def root() -> dict:
        # Answers as soon as the ingress runs, while the models may still be loading.
        return {
            "name": "Echo",
            "status": "up",
            "health": "/health",
            "ask": "POST /api/ask",
            "docs": "/docs",
            "chat": "/ui/",
            "memory_search": "GET /api/memory/search?q=...",
            "insights": "GET /api/insights",
            "facts": "GET /api/memory/facts",
            "conversations": "GET /api/conversations",
            "openai": "/v1/models, /v1/chat/completions",
        }

    @api.get("/health", summary="What is ready, loading or failed")
    async def health() -> dict:
        return await get_brain().health()

    @api.get("/api/memory/search", summary="Search the memory (the owner only)")
    async def memory_search(request: Request, q: str = "", k: int = 10, mode: str = "hybrid", since: str | None = None, before: str | None = None) -> Response:
        return JSONResponse(await get_brain().search_memory(q, k, mode, request.headers.get("authorization"), since, before))

    @api.get("/api/insights", summary="What the memory holds (the owner only)")
    async def insights(request: Request) -> Response:
        return JSONResponse(await get_brain().insights(request.headers.get("authorization")))

    def user_param(user: str | None) -> str | None:
        if user is not None and not re.match(USER_PATTERN, user):
            raise AskError(422, "invalid_user", f"user = {user!r}: {USER_RULE}")
        return user

    @api.get("/api/conversations", summary="Your conversations, newest first: the owner sees everyone's, a user with their key their own")
    async def conversations(request: Request, user: str | None = None, limit: int = 50, offset: int = 0) -> Response:
        return JSONResponse(await get_brain().conversations(request.headers.get("authorization"), user_param(user), limit, offset))

    @api.get("/api/conversations/{conversation}", summary="One conversation's exchanges, oldest first, read back from memory/")
    async def conversation(request: Request, conversation: str, user: str | None = None) -> Response:
        return JSONResponse(await get_brain().conversation(request.headers.get("authorization"), user_param(user), conversation))

    @api.get("/api/memory/facts", summary="What Echo knows: the owner sees everyone's facts, a user with their key their own")
    async def facts_list(
        request: Request, user: str | None = None, q: str = "", kind: str | None = None, deleted: bool = False, limit: int = 50, offset: int = 0
    ) -> Response:
        brain = get_brain()
        return JSONResponse(await brain.facts_list(request.headers.get("authorization"), user_param(user), q, kind, deleted, limit, offset))

    @api.post("/api/memory/facts/import", summary="Import facts from JSON Lines (the owner only): all of the file or nothing")
    async def facts_import(request: Request) -> Response:
        body = await read_body(request, FACTS_IMPORT_LIMIT)
        if body is None:
            return errors.error(413, "body_too_large", f"over {FACTS_IMPORT_LIMIT} bytes of facts: split the file and import each piece")
        return JSONResponse(await get_brain().import_facts(request.headers.get("authorization"), body))

    @api.post("/api/memory/facts/undo", summary="Bring back the facts forgotten last (within the undo window)")
    async def facts_undo(request: Request, user: str | None = None) -> Response:
        return JSONResponse(await get_brain().undo_forget(request.headers.get("authorization"), user_param(user)))

    @api.get("/api/memory/facts/{fact_id}", summary="One fact, with the lines it cites")
    async def fact_show(request: Request, fact_id: str, user: str | None = None) -> Response:
        return JSONResponse(await get_brain().fact(request.headers.get("authorization"), user_param(user), fact_id))

    @api.patch("/api/memory/facts/{fact_id}", summary="Correct a fact: its text, about, kind or date")
    async def fact_edit(request: Request, fact_id: str, changes: FactChanges, user: str | None = None) -> Response:
        fields = changes.model_dump(exclude_none=True)
        if not fields:
            raise AskError(422, "nothing_to_change", 'send what to change, e.g. {"text": "Lives in Busan"}')
        return JSONResponse(await get_brain().edit_fact(request.headers.get("authorization"), user_param(user), fact_id, fields))

    @api.delete("/api/memory/facts/{fact_id}", summary="Forget a fact (undoable for a while); the lines stay in memory")
    async def fact_delete(request: Request, fact_id: str, user: str | None = None) -> Response:
        return JSONResponse(await get_brain().delete_fact(request.headers.get("authorization"), user_param(user), fact_id))

    @api.post("/api/ask", summary="Ask Echo", openapi_extra=body_and_stream(AskRequest.model_json_schema(), "The reply, or with stream: server-sent events"))
    async def ask(request: Request) -> Response:
        brain = get_brain()
        limit = ask_body_limit(brain.config)
        body = await read_body(request, limit)
        if body is None:
            return errors.error(
                413,
                "body_too_large",
                f"request body is over the limit of {limit} bytes (max_prompt_chars is {brain.config.max_prompt_chars}): shorten the prompt",
            )
        try:
            data = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            return errors.error(400, "invalid_utf8", "request body is not UTF-8: send JSON encoded as UTF-8")
        except (json.JSONDecodeError, RecursionError) as exc:
            where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else " (nested too deeply)"
            return errors.error(400, "invalid_json", f'request body is not valid JSON{where}: send {{"prompt": "..."}}')
        try:
            req = AskRequest.model_validate(data)
        except ValidationError as exc:
            return errors.error(422, "invalid_request", errors.describe_validation(exc))
        authorization = request.headers.get("authorization")
        if req.stream:
            return await _stream(brain.stream_ask(req.prompt, req.user, authorization, conversation=req.conversation))
        return JSONResponse(await brain.ask(req.prompt, req.user, authorization, conversation=req.conversation))

    add_openai_routes(api, get_brain)
    document_errors(api)
    return api


def _event(event: dict) -> str:
    name = event["event"]
    data = {k: v for k, v in event.items() if k != "event"}
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _stream(events: AsyncIterator[dict]) -> Response:
    """Server-sent events from Brain.stream_ask; bad input is still a plain 4xx JSON answer."""
    first = await events.__anext__()  # an AskError here is answered by the app's handler

    async def body():
        yield _event(first)
        try:
            async for event in events:
                yield _event(event)
        except AskError as exc:  # every circuit failed
            yield errors.echo_event(exc)

    return StreamingResponse(body(), media_type="text/event-stream")
