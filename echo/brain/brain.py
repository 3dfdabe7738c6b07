"""EchoBrain's logic without Ray: one prompt in, one answer out, whole or as events.

A request is checked and routed once (prepare), then answered (answer) by one of three
paths: identity, create_project, or the circuits. The circuits and the memory are passed
in as plain async objects, so the Serve ingress wires in deployment handles and the unit
tests wire in fakes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from echo.brain import history, knowledge, memories, users
from echo.brain.conversation import Thread, client_thread, find_thread, left_out
from echo.brain.errors import AskError, describe_failure
from echo.brain.fanout import Circuit, Emit, call, fan_out
from echo.brain.health import health
from echo.brain.identity import IdentitySource
from echo.brain.intent import Route, classify
from echo.brain.memories import MemorySink
from echo.brain.merge import CONCAT_ORDER, concat, synthesis_messages
from echo.brain.projects import PROJECT_INSTRUCTIONS, PROJECT_SCHEMA, ProjectError, parse_project, write_project
from echo.brain.users import Asker
from echo.config import EchoConfig
from echo.llm.completion import Completion, KVCacheFullError, Messages
from echo.memory.facts import KINDS, profile_text
from echo.memory.search import Memory, memory_block

log = logging.getLogger("echo.brain")

__all__ = ["AskError", "Brain"]

MAX_FACTS_PAGE = 500
FACT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _known_shape(fact_id: str) -> None:
    """A malformed id is a 404 like an unknown one, told only to someone who may see facts."""
    if not FACT_ID.match(fact_id):
        _found(None, fact_id)


def _found(fact: dict | None, fact_id: str) -> dict:
    if fact is None:
        shown = fact_id if len(fact_id) <= 64 else fact_id[:64] + "…"
        raise AskError(404, "no_such_fact", f"no fact {shown!r} of yours: list them with GET /api/memory/facts (or `echo-server facts list`)")
    return fact


@dataclass(frozen=True)
class Request:
    """A prompt that passed the checks, who asks it and the path it takes."""

    prompt: str
    asker: Asker
    route: Route
    conversation: str | None = None  # the id the client sent: its conversation goes on
    history: Messages | None = None  # /v1: the client's own conversation, sent with the prompt
    started: float = field(default_factory=time.perf_counter)


@dataclass
class Outcome:
    """One answered prompt before it is saved."""

    reply: str
    route: str
    answers: dict[str, Completion] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    merge: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Brain:
    def __init__(
        self,
        config: EchoConfig,
        circuits: Mapping[str, Circuit],
        memory: MemorySink,
        identity: IdentitySource,
        token: str | None,
        on_answer: Callable[[dict], None] | None = None,
    ):
        self.config = config
        self.on_answer = on_answer  # sees every answer (the ingress records metrics with it)
        self.circuits = circuits
        self.memory = memory
        self.identity = identity
        self.token = token
        if token is None:
            log.warning("no origin token: privileged commands (create_project) are disabled; %s", users.ENABLE_HINT)

    # -- a request, whole or streamed -------------------------------------------------

    def prepare(self, prompt: str, user: str | None, authorization: str | None, conversation: str | None = None, history: Messages | None = None) -> Request:
        """Check the prompt, identify the asker and route it; AskError for bad input."""
        self.identity.refresh()  # an edited manifest/ is who Echo is from this request on
        asker = users.identify(user, authorization, self.token)
        return Request(self.check_prompt(prompt), asker, classify(prompt), conversation, history)

    def check_prompt(self, prompt: str) -> str:
        if not prompt.strip():
            raise AskError(422, "empty_prompt", "prompt is empty: send the text you want Echo to answer")
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise AskError(422, "invalid_text", f"prompt has an unpaired surrogate at character {exc.start}: send valid Unicode text") from None
        if len(prompt) > self.config.max_prompt_chars:
            raise AskError(
                413,
                "prompt_too_long",
                f"prompt has {len(prompt)} characters; the limit is {self.config.max_prompt_chars} "
                "(max_prompt_chars in the config): shorten it or split it into several prompts",
            )
        return prompt

    async def ask(self, prompt: str, user: str | None = None, authorization: str | None = None, **thread: Any) -> dict:
        """The whole answer (the response body); AskError for what Echo refuses. thread:
        conversation (an id Echo handed out) or history (/v1's messages)."""
        return await self.answer(self.prepare(prompt, user, authorization, **thread))

    async def stream_ask(self, prompt: str, user: str | None = None, authorization: str | None = None, **thread: Any) -> AsyncIterator[dict]:
        """ask(), as events while it happens: "start" (route, user, conversation, context, merge,
        order, memories), then per circuit "circuit_start", "token"s and "circuit_done" or
        "circuit_failed", then "done" with everything ask() returns. Identity and project answers have no circuit
        events. AskError comes before the first event for bad input, and after the circuit
        events when every circuit failed."""
        request = self.prepare(prompt, user, authorization, **thread)
        events: asyncio.Queue = asyncio.Queue()
        work = asyncio.create_task(self.answer(request, events.put_nowait))
        work.add_done_callback(lambda _: events.put_nowait(None))
        try:
            while (event := await events.get()) is not None:
                yield event
            yield {"event": "done", **work.result()}
        finally:
            work.cancel()  # a client that went away stops the circuits too

    async def answer(self, request: Request, emit: Emit | None = None) -> dict:
        """Answer a prepared request, save the exchange; the response body. With emit, the
        events of stream_ask go to it as they happen."""
        if request.route == "circuits":
            # The conversation is read back while recall searches and the profile is read: three memory calls in the time of one.
            thread, candidates, standing = await asyncio.gather(self._thread(request), self._recall(request), self._profile(request))
            found = memories.fit(candidates, self.config.recall, lambda m: left_out(m, thread))  # no turn twice in a prompt
            outcome = await self._answer_with_circuits(request, thread, found, standing, emit)
        else:
            standing: list[dict] = []
            if request.route == "identity":
                thread, standing = await asyncio.gather(self._thread(request), self._profile(request))
                outcome = await self._reflect_identity(request, standing)
            elif request.route == "forget":
                thread = await self._thread(request)
                outcome = await self._forget(request)
            else:
                thread = await self._thread(request)
                outcome = await self._create_project(request.prompt, request.asker.origin)
            if emit is not None:
                emit(self._start(request, thread, None, [], standing))
        saved = await memories.save(self.memory, request.asker.user, request.prompt, outcome.reply, thread.key)
        body = {
            "reply": outcome.reply,
            "route": outcome.route,
            "user": request.asker.user,
            "conversation": thread.id,
            "context": list(thread.context),
            "merge": outcome.merge,
            "degraded": bool(outcome.failed),
            "failed": outcome.failed,
            "circuits": {name: c.as_dict() for name, c in outcome.answers.items()},
            **saved,
            **outcome.extra,
            "latency_ms": round((time.perf_counter() - request.started) * 1000, 2),
        }
        if self.on_answer is not None:
            self.on_answer(body)
        return body

    async def _thread(self, request: Request) -> Thread:
        if request.history is not None:
            return client_thread(request.history)
        return await find_thread(self.memory, request.asker.user, request.conversation, self.now(), self.config.conversation, request.asker.may_recall)

    async def _recall(self, request: Request) -> list[Memory]:
        if not request.asker.may_recall:
            return []
        whose = None if request.asker.origin else request.asker.user
        # A conversation's own exchanges are left out of what recall finds: as many more stand by.
        spare = 2 * self.config.conversation.max_exchanges if request.conversation else 0
        return await memories.recall(self.memory, self.config.recall, request.prompt, whose, spare)

    async def _profile(self, request: Request) -> list[dict]:
        """The asker's standing facts for every circuit's system prompt: for a user with a key
        and the owner only (a guest has none)."""
        if not request.asker.may_recall:
            return []
        return await knowledge.profile(self.memory, request.asker.user, self.config.facts.profile_budget_tokens)

    @staticmethod
    def _start(request: Request, thread: Thread, merge: str | None, found: list[Memory], standing: list[dict]) -> dict:
        return {
            "event": "start",
            "route": request.route,
            "user": request.asker.user,
            "conversation": thread.id,
            "context": list(thread.context),
            "merge": merge,
            "order": list(CONCAT_ORDER),
            "memories": [m.as_dict() for m in found],
            "facts": standing,
        }

    # -- what a circuit is sent --------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(ZoneInfo(self.config.timezone))

    def system_prompt(self, circuit: str) -> str:
        # The same text for every request to a circuit, so llama.cpp reuses its evaluated prefix.
        identity = self.identity.current.text[: self.config.identity_chars]
        return f"{self.config.circuits[circuit].role_prompt}\n\nWho you are:\n{identity}"

    def messages(self, circuit: str, content: str, thread: Thread | None = None, profile: str = "") -> Messages:
        """What a circuit is sent: its system prompt (and what Echo knows of the asker), the
        conversation so far, then content as the user's message."""
        system = self.system_prompt(circuit) + (f"\n\n{thread.instructions}" if thread and thread.instructions else "") + (f"\n\n{profile}" if profile else "")
        return [{"role": "system", "content": system}, *(thread.messages if thread else ()), {"role": "user", "content": content}]

    async def call(self, circuit: str, messages: Messages, **options: Any) -> Completion:
        """One circuit call bounded by the circuit's timeout."""
        return await call(self.circuits[circuit], circuit, messages, self.config.circuits[circuit].timeout_s, **options)

    # -- the three paths -----------------------------------------------------------------

    async def _answer_with_circuits(self, request: Request, thread: Thread, found: list[Memory], standing: list[dict], emit: Emit | None) -> Outcome:
        now = self.now()
        if emit is not None:
            emit(self._start(request, thread, self.config.merge, found, standing))
        # Memories go with the question, not the system prompt, whose evaluation llama.cpp reuses;
        # the profile changes only when a fact does, so it goes at the system prompt's end.
        content = f"{memory_block(found, now.date())}\n\nQuestion: {request.prompt}" if found else request.prompt
        profile = profile_text(request.asker.user, standing)
        messages = {name: self.messages(name, content, thread, profile) for name in self.circuits}
        timeouts = {name: self.config.circuits[name].timeout_s for name in self.circuits}
        answers, failed = await fan_out(self.circuits, messages, timeouts, emit)
        outcome = await self._merge(request.prompt, answers, failed, thread)
        outcome.extra["memories"] = [m.as_dict() for m in found]
        outcome.extra["facts"] = standing
        return outcome

    async def _merge(self, prompt: str, answers: dict[str, Completion], failed: dict[str, str], thread: Thread) -> Outcome:
        """One reply from the circuits' answers (concat or synthesize); 503 when none answered."""
        if not answers:
            wait = self.config.retry_after_s
            if all(reason.startswith("BackPressureError") for reason in failed.values()):
                raise AskError(503, "busy", f"every circuit is busy with other prompts: try again in {wait} s", retry_after=wait, failed=failed)
            if all(reason.startswith(KVCacheFullError.__name__) for reason in failed.values()):
                raise AskError(
                    503,
                    "context_full",
                    "the prompt leaves no room for an answer in the circuits' context (n_ctx): shorten it, see 'failed'",
                    retry_after=wait,
                    failed=failed,
                )
            raise AskError(
                503,
                "all_circuits_failed",
                "every circuit failed, so Echo has no answer: see 'failed' and GET /health; try again once the circuits are ready",
                retry_after=wait,
                failed=failed,
            )
        outcome = Outcome(reply=concat(answers), route="circuits", answers=answers, failed=failed, merge=self.config.merge)
        if self.config.merge == "synthesize" and len(answers) > 1:
            try:
                synthesis = await self.call("self", synthesis_messages(self.system_prompt("self"), prompt, answers, thread.messages))
                if not synthesis.text:
                    raise ValueError("the synthesis came back empty")
                outcome.reply = synthesis.text
                outcome.extra["synthesis"] = synthesis.as_dict()
            except Exception as exc:  # the drafts themselves stand
                outcome.failed["synthesize"] = describe_failure(exc)
                outcome.merge = "concat"
        return outcome

    async def _reflect_identity(self, request: Request, standing: list[dict]) -> Outcome:
        """The manifest's declaration, then the self circuit's reflection on the question."""
        identity = self.identity.current
        outcome = Outcome(reply=identity.declaration, route="identity", extra={"identity": {"files": list(identity.files)}, "facts": standing})
        profile = profile_text(request.asker.user, standing)
        try:
            answer = await self.call("self", self.messages("self", request.prompt, profile=profile))
        except Exception as exc:
            outcome.failed["self"] = describe_failure(exc)
            return outcome
        outcome.answers["self"] = answer
        if answer.text:
            outcome.reply = f"{identity.declaration}\n\n{answer.text}"
        return outcome

    async def _forget(self, request: Request) -> Outcome:
        """ "Forget that ...": the asker's facts that hold what was named are deleted (undoable),
        and the reply names each one; the lines stay in memory, the owner's log."""
        named = knowledge.forget_request(request.prompt) or ""
        korean = knowledge.is_korean(request.prompt)
        if not request.asker.may_recall:
            return Outcome(reply=knowledge.guest_forget_reply(korean), route="forget", extra={"forgotten": []})
        user = request.asker.user
        removed = await knowledge.call(self.memory, "forget", user=user, named=named, by=user)
        return Outcome(reply=knowledge.forget_reply(named, removed, korean), route="forget", extra={"forgotten": removed})

    async def _create_project(self, prompt: str, origin: bool) -> Outcome:
        if self.token is None:
            raise AskError(
                403,
                "privileged_disabled",
                f"making a project is the owner's command, and it is disabled because no origin token is configured: {users.ENABLE_HINT}",
            )
        if not origin:
            raise AskError(
                403,
                "origin_only",
                "Sorry, making a project is a command only Echo's owner can give. If you are the owner, send your token as 'Authorization: Bearer <token>'.",
                reply="죄송해요, 프로젝트 만들기는 에코의 주인만 내릴 수 있는 명령이에요. Sorry, only Echo's owner can ask me to make a project.",
            )
        messages = [
            {"role": "system", "content": f"{self.config.circuits['creation'].role_prompt}\n\n{PROJECT_INSTRUCTIONS}"},
            {"role": "user", "content": prompt},
        ]
        try:
            answer = await self.call(
                "creation",
                messages,
                max_tokens=self.config.projects.max_tokens,
                greedy=True,  # a file tree wants the likeliest structure, not a creative one
                response_format={"type": "json_object", "schema": PROJECT_SCHEMA},
            )
        except Exception as exc:
            raise AskError(503, "creation_failed", f"the creation circuit failed: {describe_failure(exc)}", retry_after=self.config.retry_after_s) from None
        try:
            spec = parse_project(answer.text)
            created = await asyncio.to_thread(write_project, spec, self.config.projects_dir, self.config.projects)
        except ProjectError as exc:
            raise AskError(exc.status, "project_refused", f"the project was not created: {exc}") from None
        reply = f"Created project '{created.name}' in {created.path}/ with {len(created.files)} files: " + ", ".join(created.files)
        project = {"name": created.name, "slug": created.slug, "path": str(created.path), "files": list(created.files)}
        return Outcome(reply=reply, route="create_project", answers={"creation": answer}, extra={"project": project})

    # -- the memory and the state, for the HTTP routes -----------------------------------

    async def search_memory(self, query: str, k: int, mode: str, authorization: str | None, since: str | None = None, before: str | None = None) -> dict:
        users.require_origin(authorization, self.token, "searching the memory")
        return await memories.search(self.memory, query, k, mode, since, before, self.config.timezone)

    async def insights(self, authorization: str | None) -> dict:
        users.require_origin(authorization, self.token, "the memory's insights")
        return await memories.insights(self.memory, self.config.retry_after_s)

    # -- conversations: listed and read back ---------------------------------------------

    async def conversations(self, authorization: str | None, user: str | None, limit: int = 50, offset: int = 0) -> dict:
        return await history.listing(self.memory, user, authorization, self.token, limit, offset, self.config.retry_after_s)

    async def conversation(self, authorization: str | None, user: str | None, reference: str) -> dict:
        return await history.read_back(self.memory, user, authorization, self.token, reference, self.config.retry_after_s)

    # -- facts: the owner sees everyone's, a user with their key their own ----------------

    async def facts_list(
        self, authorization: str | None, user: str | None, query: str = "", kind: str | None = None, deleted: bool = False, limit: int = 50, offset: int = 0
    ) -> dict:
        whose = users.whose_facts(user, authorization, self.token)
        if kind is not None and kind not in KINDS:
            raise AskError(422, "invalid_kind", f"kind = {kind!r}: use one of {', '.join(KINDS)}")
        if limit < 1 or offset < 0:
            raise AskError(422, "invalid_page", "limit must be 1 or more and offset 0 or more")
        capped = min(limit, MAX_FACTS_PAGE)
        page = await knowledge.call(self.memory, "list", whose=whose, query=query, kind=kind, deleted=deleted, limit=capped, offset=offset)
        if capped < limit:
            page["note"] = f"limit {limit} is over the most one page holds: {MAX_FACTS_PAGE} shown; page on with offset"
        return page

    async def fact(self, authorization: str | None, user: str | None, fact_id: str) -> dict:
        whose = users.whose_facts(user, authorization, self.token)  # who asks comes first: an id says nothing to a stranger
        _known_shape(fact_id)
        return _found(await knowledge.call(self.memory, "show", whose=whose, fact_id=fact_id), fact_id)

    async def edit_fact(self, authorization: str | None, user: str | None, fact_id: str, changes: dict) -> dict:
        whose = users.whose_facts(user, authorization, self.token)
        _known_shape(fact_id)
        by = users.ORIGIN_USER if whose is None or users.is_origin(authorization, self.token) else whose
        return _found(await knowledge.call(self.memory, "edit", whose=whose, fact_id=fact_id, changes=changes, by=by), fact_id)

    async def delete_fact(self, authorization: str | None, user: str | None, fact_id: str) -> dict:
        whose = users.whose_facts(user, authorization, self.token)
        _known_shape(fact_id)
        by = users.ORIGIN_USER if users.is_origin(authorization, self.token) else whose
        removed = await knowledge.call(self.memory, "delete", whose=whose, ids=[fact_id], by=by)
        if not removed:
            _found(None, fact_id)
        return {"deleted": removed, "undo": "POST /api/memory/facts/undo (or `echo-server facts undo`) brings it back"}

    async def undo_forget(self, authorization: str | None, user: str | None) -> dict:
        whose = users.whose_facts(user, authorization, self.token)
        return {"restored": await knowledge.call(self.memory, "undo", whose=whose)}

    async def import_facts(self, authorization: str | None, body: bytes) -> dict:
        users.require_origin(authorization, self.token, "importing facts")
        return await knowledge.call(self.memory, "import", lines=body.split(b"\n"))

    async def health(self) -> dict:
        """Each circuit's state (loading, ready, failed with the reason), asked concurrently."""
        self.identity.refresh()
        state = await health(self.circuits, self.memory)
        return {**state, "merge": self.config.merge, "manifest": self.identity.status(), "origin_token_configured": self.token is not None}
