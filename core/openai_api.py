"""The OpenAI-compatible endpoints: /v1/models and /v1/chat/completions, whole or streamed.

Model `echo` is the whole brain (recall, three circuits, merge, saved to memory); the
answer's last user message is the prompt. `echo-emotion`, `echo-creation` and `echo-self`
are one circuit each, given the conversation as it is (nothing saved). The origin's
bearer token works as on /api/ask (the openai client sends its api_key as one).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.brain import CONCAT_ORDER, AskError, Brain
from core.config import CIRCUIT_NAMES

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


def _inlined(schema: dict) -> dict:
    """A pydantic JSON schema with its $defs put in place: in OpenAPI, "#/$defs/..." would be
    looked up from the root of the whole document, where there is none."""
    defs = schema.pop("$defs", {})

    def put(node: Any) -> Any:
        if isinstance(node, dict):
            return put(defs[node["$ref"].rsplit("/", 1)[1]]) if "$ref" in node else {k: put(v) for k, v in node.items()}
        return [put(v) for v in node] if isinstance(node, list) else node

    return put(schema)


def openai_error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


def _chunk(cid: str, model: str, delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def _completion(cid: str, model: str, text: str, finish: str, usage: dict, **extra: Any) -> dict:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": usage, **extra}


class ConcatOrder:
    """The circuits' tokens, arriving interleaved, as the text of a concat reply: self's as
    they come, then emotion's and creation's (held until their turn), a blank line between."""

    def __init__(self) -> None:
        self.tokens: dict[str, list[str]] = {name: [] for name in CONCAT_ORDER}
        self.sent: dict[str, int] = {name: 0 for name in CONCAT_ORDER}
        self.finished: set[str] = set()
        self.turn = 0
        self.any_sent = False

    def token(self, circuit: str, text: str) -> str:
        self.tokens[circuit].append(text)
        return self._flush()

    def finish(self, circuit: str, answered: bool) -> str:
        self.finished.add(circuit)
        if not answered:
            self.tokens[circuit] = []
        return self._flush()

    def _flush(self) -> str:
        out = []
        while self.turn < len(CONCAT_ORDER):
            name = CONCAT_ORDER[self.turn]
            new = self.tokens[name][self.sent[name] :]
            if new:
                if self.sent[name] == 0 and self.any_sent:
                    out.append("\n\n")
                out.extend(new)
                self.sent[name] += len(new)
                self.any_sent = True
            if name not in self.finished:
                break
            self.turn += 1
        return "".join(out)


def add_openai_routes(api: FastAPI, get_brain: Callable[[], Brain]) -> None:
    from core.api import EVENT_STREAM, ask_body_limit, read_body  # core.api imports this module first

    @api.get("/v1/models", summary="OpenAI: the models Echo serves")
    async def models() -> dict:
        names = [BRAIN_MODEL, *CIRCUIT_MODELS]
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "echo"} for n in names]}

    @api.post(
        "/v1/chat/completions",
        summary="OpenAI: a chat completion, whole or streamed",
        # The body is read by hand (errors in OpenAI's shape), so the schema is documented here.
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": _inlined(ChatRequest.model_json_schema())}}},
            "responses": {"200": {"description": "The completion, or with stream: server-sent events", "content": EVENT_STREAM}},
        },
    )
    async def chat(request: Request) -> Response:
        brain = get_brain()
        # A prompt for the brain, or a whole conversation that fills a circuit's context (16 bytes a token is generous).
        limit = max(ask_body_limit(brain.config), 16 * max(c.n_ctx for c in brain.config.circuits.values()))
        body = await read_body(request, limit)
        if body is None:
            return openai_error(413, f"request body is over the limit of {limit} bytes: send a shorter conversation", code="body_too_large")
        try:
            req = ChatRequest.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return openai_error(400, f"{where}: {first['msg']} (send model and messages, as the OpenAI API does)", param=where)
        authorization = request.headers.get("authorization")
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        if req.model == BRAIN_MODEL:
            return await _brain_completion(brain, req, authorization, cid)
        if req.model in CIRCUIT_MODELS:
            return await _circuit_completion(brain, req, CIRCUIT_MODELS[req.model], cid)
        return openai_error(404, f"the model {req.model!r} does not exist: use one of {', '.join([BRAIN_MODEL, *CIRCUIT_MODELS])} (GET /v1/models)",
                            code="model_not_found", param="model")


def _from_ask_error(exc: AskError) -> JSONResponse:
    kind = "authentication_error" if exc.status in (401, 403) else ("server_error" if exc.status >= 500 else "invalid_request_error")
    response = openai_error(exc.status, exc.message, kind=kind, code=exc.code)
    response.headers.update(exc.headers())
    return response


async def _brain_completion(brain: Brain, req: ChatRequest, authorization: str | None, cid: str) -> Response:
    prompt = next((m.text() for m in reversed(req.messages) if m.role == "user"), "")
    user = req.user if req.user and _valid_user(req.user) else None
    if not req.stream:
        try:
            body = await brain.ask(prompt, user=user, authorization=authorization)
        except AskError as exc:
            return _from_ask_error(exc)
        usage = _usage(sum(c["prompt_tokens"] for c in body["circuits"].values()), sum(c["completion_tokens"] for c in body["circuits"].values()))
        return JSONResponse(_completion(cid, BRAIN_MODEL, body["reply"], "stop", usage, echo=_echo_details(body)))
    events = brain.stream_ask(prompt, user=user, authorization=authorization)
    try:
        first = await events.__anext__()
    except AskError as exc:
        return _from_ask_error(exc)

    async def chunks() -> AsyncIterator[str]:
        yield _chunk(cid, BRAIN_MODEL, {"role": "assistant", "content": ""})
        order = ConcatOrder() if brain.config.merge == "concat" else None
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
                    circuits = event["circuits"].values()
                    usage = _usage(sum(c["prompt_tokens"] for c in circuits), sum(c["completion_tokens"] for c in circuits))
                    rest = event["reply"][len("".join(sent)) :] if event["reply"].startswith("".join(sent)) else ""
                    if rest:  # a synthesized reply (or an identity answer) arrives whole
                        yield _chunk(cid, BRAIN_MODEL, {"content": rest})
                    yield _chunk(cid, BRAIN_MODEL, {}, finish="stop", usage=usage)
                if piece:
                    sent.append(piece)
                    yield _chunk(cid, BRAIN_MODEL, {"content": piece})
        except AskError as exc:
            yield f"data: {json.dumps({'error': {'message': exc.message, 'type': 'server_error', 'code': exc.code}}, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    del first  # the start event (route, memories) has no OpenAI counterpart
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
            return _from_ask_error(AskError(503, "circuit_failed", f"the {circuit} circuit failed: {type(exc).__name__}: {exc}",
                                            retry_after=brain.config.retry_after_s))
        finish = "length" if completion.finish_reason == "length" else "stop"
        return JSONResponse(_completion(cid, model, completion.text, finish, _usage(completion.prompt_tokens, completion.completion_tokens)))

    async def chunks() -> AsyncIterator[str]:
        yield _chunk(cid, model, {"role": "assistant", "content": ""})
        try:
            async for item in brain.circuits[circuit].stream(messages, **options):
                if "token" in item:
                    yield _chunk(cid, model, {"content": item["token"]})
                else:
                    done = item["done"]
                    finish = "length" if done["finish_reason"] == "length" else "stop"
                    yield _chunk(cid, model, {}, finish=finish, usage=_usage(done["prompt_tokens"], done["completion_tokens"]))
        except Exception as exc:
            yield f"data: {json.dumps({'error': {'message': f'the {circuit} circuit failed: {exc}', 'type': 'server_error', 'code': 'circuit_failed'}})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


def _valid_user(name: str) -> bool:
    import re

    from core.api import USER_PATTERN

    return re.match(USER_PATTERN, name) is not None


def _echo_details(body: dict) -> dict:
    """What Echo adds to an OpenAI answer: the route, the memories used, each circuit."""
    return {key: body.get(key) for key in ("route", "user", "merge", "degraded", "failed", "memories", "circuits", "memory")}
