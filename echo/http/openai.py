"""The OpenAI-compatible endpoints: /v1/models and /v1/chat/completions, whole or streamed.

Model `echo` is the whole brain (recall, three circuits, merge, saved to memory): the last
user message is the prompt, recalled and saved; the messages before it are the conversation
(system ones an extra instruction after Echo's identity). `echo-emotion`, `echo-creation` and `echo-self`
are one circuit each, given the conversation as it is (nothing saved). The origin's
bearer token works as on /api/ask (the openai client sends its api_key as one).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from echo.brain.brain import AskError, Brain
from echo.brain.merge import ConcatStream
from echo.brain.users import is_user_name
from echo.config import CIRCUIT_NAMES
from echo.http import errors
from echo.http.bodies import chat_body_limit, read_body
from echo.http.openapi import body_and_stream

BRAIN_MODEL = "echo"
CIRCUIT_MODELS = {f"echo-{name}": name for name in CIRCUIT_NAMES}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _text_parts_hold_text(cls, content: Any) -> Any:
        for index, part in enumerate(content if isinstance(content, list) else []):
            if part.get("type") == "text" and not isinstance(part.get("text"), str):
                raise ValueError(f"content part {index} is of type text, so its 'text' must be a string")
        return content

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # the many OpenAI options Echo does not use are accepted

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    user: str | None = None


def _chunk(cid: str, model: str, delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _usage(circuits: list[dict]) -> dict:
    prompt_tokens = sum(c["prompt_tokens"] for c in circuits)
    completion_tokens = sum(c["completion_tokens"] for c in circuits)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def _completion(cid: str, model: str, text: str, finish: str, usage: dict, **extra: Any) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": usage,
        **extra,
    }


def add_openai_routes(api: FastAPI, get_brain: Callable[[], Brain]) -> None:
    @api.get("/v1/models", summary="OpenAI: the models Echo serves")
    async def models() -> dict:
        names = [BRAIN_MODEL, *CIRCUIT_MODELS]
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "echo"} for n in names]}

    @api.post(
        "/v1/chat/completions",
        summary="OpenAI: a chat completion, whole or streamed",
        openapi_extra=body_and_stream(ChatRequest.model_json_schema(), "The completion, or with stream: server-sent events"),
    )
    async def chat(request: Request) -> Response:
        brain = get_brain()
        limit = chat_body_limit(brain.config)
        body = await read_body(request, limit)
        if body is None:
            return errors.openai_error(413, f"request body is over the limit of {limit} bytes: send a shorter conversation", code="body_too_large")
        try:
            req = ChatRequest.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return errors.openai_error(400, f"{where}: {first['msg']} (send model and messages, as the OpenAI API does)", param=where)
        authorization = request.headers.get("authorization")
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        try:
            if req.model == BRAIN_MODEL:
                return await _brain_completion(brain, req, authorization, cid)
            if req.model in CIRCUIT_MODELS:
                return await _circuit_completion(brain, req, CIRCUIT_MODELS[req.model], cid)
        except AskError as exc:
            return errors.openai_from_ask_error(exc)
        return errors.openai_error(
            404,
            f"the model {req.model!r} does not exist: use one of {', '.join([BRAIN_MODEL, *CIRCUIT_MODELS])} (GET /v1/models)",
            code="model_not_found",
            param="model",
        )


async def _brain_completion(brain: Brain, req: ChatRequest, authorization: str | None, cid: str) -> Response:
    last = max((i for i, m in enumerate(req.messages) if m.role == "user"), default=None)
    prompt = req.messages[last].text() if last is not None else ""
    # The client's own messages before the prompt are the conversation (system ones included).
    history = [{"role": m.role, "content": m.text()} for m in req.messages[: last or 0]]
    user = req.user if req.user and is_user_name(req.user) else None
    if not req.stream:
        body = await brain.ask(prompt, user, authorization, history=history)
        return JSONResponse(_completion(cid, BRAIN_MODEL, body["reply"], "stop", _usage(list(body["circuits"].values())), echo=_echo_details(body)))
    events = brain.stream_ask(prompt, user, authorization, history=history)
    start = await events.__anext__()  # an AskError here is answered whole, before the stream

    async def chunks() -> AsyncIterator[str]:
        yield _chunk(cid, BRAIN_MODEL, {"role": "assistant", "content": ""})
        order = ConcatStream(start["order"]) if start.get("merge") == "concat" else None
        sent = []
        try:
            async for event in events:
                kind = event["event"]
                piece = ""
                if order is not None and kind == "token":
                    piece = order.token(event["circuit"], event["text"])
                elif order is not None and kind in ("circuit_done", "circuit_failed"):
                    piece = order.finish(event["circuit"], kind == "circuit_done")
                elif kind == "done":
                    rest = event["reply"][len("".join(sent)) :] if event["reply"].startswith("".join(sent)) else ""
                    if rest:  # a synthesized reply (or an identity answer) arrives whole
                        yield _chunk(cid, BRAIN_MODEL, {"content": rest})
                    yield _chunk(cid, BRAIN_MODEL, {}, finish="stop", usage=_usage(list(event["circuits"].values())))
                if piece:
                    sent.append(piece)
                    yield _chunk(cid, BRAIN_MODEL, {"content": piece})
        except AskError as exc:
            yield errors.openai_event(exc.message, exc.code)
        yield "data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


async def _circuit_completion(brain: Brain, req: ChatRequest, circuit: str, cid: str) -> Response:
    messages = [{"role": m.role, "content": m.text()} for m in req.messages]
    if messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": brain.system_prompt(circuit)})
    options = {"max_tokens": req.max_completion_tokens or req.max_tokens} if (req.max_completion_tokens or req.max_tokens) else {}
    model = f"echo-{circuit}"
    if not req.stream:
        try:
            completion = await brain.call(circuit, messages, **options)
        except Exception as exc:
            raise AskError(
                503, "circuit_failed", f"the {circuit} circuit failed: {type(exc).__name__}: {exc}", retry_after=brain.config.retry_after_s
            ) from None
        finish = "length" if completion.finish_reason == "length" else "stop"
        usage = _usage([{"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}])
        return JSONResponse(_completion(cid, model, completion.text, finish, usage))

    async def chunks() -> AsyncIterator[str]:
        yield _chunk(cid, model, {"role": "assistant", "content": ""})
        try:
            async for item in brain.circuits[circuit].stream(messages, **options):
                if "token" in item:
                    yield _chunk(cid, model, {"content": item["token"]})
                else:
                    done = item["done"]
                    finish = "length" if done.finish_reason == "length" else "stop"
                    usage = _usage([{"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens}])
                    yield _chunk(cid, model, {}, finish=finish, usage=usage)
        except Exception as exc:
            yield errors.openai_event(f"the {circuit} circuit failed: {exc}", "circuit_failed")
        yield "data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


def _echo_details(body: dict) -> dict:
    """What Echo adds to an OpenAI answer: the route, the memories used, each circuit."""
    keys = ("route", "user", "conversation", "context", "merge", "degraded", "failed", "memories", "circuits", "memory")
    return {key: body.get(key) for key in keys}
