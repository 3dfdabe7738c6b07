"""EchoBrain's logic without Ray: route a prompt, ask the circuits, merge, save.

The circuits and the memory are passed in as plain async objects, so the Serve ingress
wires in deployment handles and the unit tests wire in fakes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Mapping, Protocol

from core import auth
from core.config import CIRCUIT_NAMES, EchoConfig
from core.identity import IdentitySource
from core.intent import classify
from core.llm import Completion, Messages
from core.projects import PROJECT_INSTRUCTIONS, PROJECT_SCHEMA, ProjectError, parse_project, write_project
from core.recall import MODES, Memory, memory_block, within_budget

log = logging.getLogger("echo.brain")

ORIGIN_USER = "origin"
GUEST_USER = "guest"
CONCAT_ORDER = ("self", "emotion", "creation")
RECALL_TIMEOUT_S = 3.0


class Circuit(Protocol):
    async def generate(self, messages: Messages, **options: Any) -> Completion: ...

    def stream(self, messages: Messages, **options: Any) -> AsyncIterator[dict]: ...  # {"token"}..., {"done"}

    async def state(self) -> dict: ...


class MemorySink(Protocol):
    async def save(self, user: str, prompt: str, reply: str) -> dict: ...

    async def search(self, query: str, k: int, user: str | None, mode: str) -> list[dict]: ...

    async def insights(self) -> dict | None: ...

    async def status(self) -> dict: ...


class AskError(Exception):
    """A request Echo answers with an error: HTTP status, a stable code and a clear message."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra
        self.retry_after = retry_after  # seconds, for a 503 that may pass: sent as Retry-After

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}, **self.extra}

    def headers(self) -> dict[str, str]:
        if self.status == 401:
            return {"WWW-Authenticate": "Bearer"}
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


@dataclass
class Outcome:
    """One answered prompt, before and after saving."""

    reply: str
    route: str
    user: str
    answers: dict[str, Completion] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    merge: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def degraded(self) -> bool:
        return bool(self.failed)


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
            log.warning("no origin token: privileged commands (create_project) are disabled; %s", auth.ENABLE_HINT)

    # -- who is asking -------------------------------------------------------------

    def resolve_user(self, requested: str | None, authorization: str | None) -> tuple[str, bool]:
        origin = auth.is_origin(authorization, self.token)
        user = requested or (ORIGIN_USER if origin else GUEST_USER)
        if user == ORIGIN_USER and not origin:
            raise AskError(
                403,
                "reserved_user",
                f"the user name {ORIGIN_USER!r} belongs to Echo's owner: send the owner's token "
                "as 'Authorization: Bearer <token>', or choose another user name",
            )
        return user, origin

    def check_prompt(self, prompt: str) -> str:
        if not prompt.strip():
            raise AskError(422, "empty_prompt", "prompt is empty: send the text you want Echo to answer")
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise AskError(
                422, "invalid_text", f"prompt has an unpaired surrogate at character {exc.start}: send valid Unicode text"
            ) from None
        if len(prompt) > self.config.max_prompt_chars:
            raise AskError(
                413,
                "prompt_too_long",
                f"prompt has {len(prompt)} characters; the limit is {self.config.max_prompt_chars} "
                "(max_prompt_chars in the config): shorten it or split it into several prompts",
            )
        return prompt

    # -- the whole request ---------------------------------------------------------

    async def ask(self, prompt: str, user: str | None = None, authorization: str | None = None) -> dict:
        started = time.perf_counter()
        self.identity.refresh()  # an edited manifest/ is who Echo is from this request on
        prompt = self.check_prompt(prompt)
        user, origin = self.resolve_user(user, authorization)
        route = classify(prompt)
        if route == "identity":
            outcome = await self.reflect_identity(prompt, user)
        elif route == "create_project":
            outcome = await self.create_project(prompt, user, origin)
        else:
            outcome = await self.answer_with_circuits(prompt, user, origin, auth.is_user(authorization, self.token, user))
        return await self._finish(prompt, outcome, started)

    async def _finish(self, prompt: str, outcome: Outcome, started: float) -> dict:
        """Save the exchange; the response body."""
        saved = await self._save(outcome.user, prompt, outcome.reply)
        answer = {
            "reply": outcome.reply,
            "route": outcome.route,
            "user": outcome.user,
            "merge": outcome.merge,
            "degraded": outcome.degraded,
            "failed": outcome.failed,
            "circuits": {name: c.as_dict() for name, c in outcome.answers.items()},
            **saved,
            **outcome.extra,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if self.on_answer is not None:
            self.on_answer(answer)
        return answer

    async def stream_ask(self, prompt: str, user: str | None = None, authorization: str | None = None) -> AsyncIterator[dict]:
        """ask(), as events while it happens: {"event": "start"} (route, user, memories), then
        per circuit "circuit_start", "token" (text) and "circuit_done" or "circuit_failed",
        then "done" with everything ask() returns. Identity and project requests have no
        circuit events. AskError comes before the first event for bad input, and after the
        circuit events when every circuit failed."""
        started = time.perf_counter()
        self.identity.refresh()
        prompt = self.check_prompt(prompt)
        requested = user
        user, origin = self.resolve_user(user, authorization)
        if classify(prompt) != "circuits":
            body = await self.ask(prompt, requested, authorization)
            yield {"event": "start", "route": body["route"], "user": body["user"], "merge": None, "memories": []}
            yield {"event": "done", **body}
            return
        memories = await self.recall(prompt, user, origin, auth.is_user(authorization, self.token, user))
        yield {"event": "start", "route": "circuits", "user": user, "merge": self.config.merge, "memories": [m.as_dict() for m in memories]}
        queue: asyncio.Queue = asyncio.Queue()
        content = self._question(prompt, memories)

        async def run(name: str) -> None:
            await queue.put({"event": "circuit_start", "circuit": name})
            messages = self.messages(name, content)
            timeout = self.config.circuits[name].timeout_s
            completion = None
            try:
                async with asyncio.timeout(timeout):
                    async for item in self.circuits[name].stream(messages):
                        if "token" in item:
                            await queue.put({"event": "token", "circuit": name, "text": item["token"]})
                        else:
                            completion = Completion.from_dict(item["done"])
                if completion is None or not completion.text:
                    raise ValueError("answered with empty text")
                await queue.put({"event": "circuit_done", "circuit": name, "completion": completion})
            except TimeoutError:
                await queue.put({"event": "circuit_failed", "circuit": name, "reason": f"TimeoutError: no answer within {timeout:g}s (circuits.{name}.timeout_s)"})
            except Exception as exc:
                await queue.put({"event": "circuit_failed", "circuit": name, "reason": describe_failure(exc)})

        tasks = [asyncio.create_task(run(n)) for n in CIRCUIT_NAMES]
        answers: dict[str, Completion] = {}
        failed: dict[str, str] = {}
        try:
            while len(answers) + len(failed) < len(CIRCUIT_NAMES):
                event = await queue.get()
                if event["event"] == "circuit_done":
                    answers[event["circuit"]] = event["completion"]
                    event = {**event, "completion": event["completion"].as_dict()}
                elif event["event"] == "circuit_failed":
                    failed[event["circuit"]] = event["reason"]
                yield event
        finally:
            for task in tasks:
                task.cancel()  # a client that went away stops the circuits too
        outcome = await self.merge(prompt, user, answers, failed, memories)
        yield {"event": "done", **(await self._finish(prompt, outcome, started))}

    async def _save(self, user: str, prompt: str, reply: str) -> dict:
        try:
            receipt = await self.memory.save(user, prompt, reply)
        except Exception as exc:  # the reply still goes out, marked unsaved
            log.error("exchange not saved for user %s: %s", user, type(exc).__name__)
            return {"saved": False, "unsaved_reason": describe_failure(exc)}
        return {"saved": True, "memory": receipt}

    # -- the three paths -------------------------------------------------------------

    def system_prompt(self, circuit: str) -> str:
        # The same text for every request to a circuit, so llama.cpp reuses its evaluated prefix.
        identity = self.identity.current.text[: self.config.identity_chars]
        return f"{self.config.circuits[circuit].role_prompt}\n\nWho you are:\n{identity}"

    def messages(self, circuit: str, content: str) -> Messages:
        """What a circuit is sent: its system prompt, then content as the user's message."""
        return [{"role": "system", "content": self.system_prompt(circuit)}, {"role": "user", "content": content}]

    async def call(self, circuit: str, messages: Messages, **options: Any) -> Completion:
        """One circuit call bounded by the circuit's timeout."""
        timeout = self.config.circuits[circuit].timeout_s
        try:
            return await asyncio.wait_for(self.circuits[circuit].generate(messages, **options), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no answer within {timeout:g}s (circuits.{circuit}.timeout_s)") from None

    async def recall(self, prompt: str, user: str, origin: bool, keyed: bool = False) -> list[Memory]:
        """The asking user's best memories for prompt (the origin's: everyone's), within budget.

        A user name alone is only a claim, so a user's memories come back only to the holder of
        that user's key (keyed); anyone else is answered without memories. Recall helps an
        answer but never blocks one: a slow or failed search gives none.
        """
        r = self.config.recall
        if r.k == 0 or r.budget_tokens == 0 or not (origin or keyed):
            return []
        try:
            found = await asyncio.wait_for(self.memory.search(prompt, r.k, None if origin else user, "hybrid"), RECALL_TIMEOUT_S)
        except Exception as exc:
            log.warning("recall skipped: %s", describe_failure(exc))
            return []
        return within_budget([Memory(**m) for m in found], r.budget_tokens)

    @staticmethod
    def _question(prompt: str, memories: list[Memory]) -> str:
        # Memories go with the question, not the system prompt, whose evaluation llama.cpp reuses.
        return f"{memory_block(memories)}\n\nQuestion: {prompt}" if memories else prompt

    async def fan_out(self, prompt: str, memories: list[Memory] = ()) -> tuple[dict[str, Completion], dict[str, str]]:
        """Ask every circuit at once; a failure or timeout leaves the others standing."""
        content = self._question(prompt, memories)

        async def one(name: str) -> Completion:
            return await self.call(name, self.messages(name, content))

        results = await asyncio.gather(*(one(n) for n in CIRCUIT_NAMES), return_exceptions=True)
        answers: dict[str, Completion] = {}
        failed: dict[str, str] = {}
        for name, result in zip(CIRCUIT_NAMES, results, strict=True):
            if isinstance(result, Completion) and result.text:
                answers[name] = result
            elif isinstance(result, Completion):
                failed[name] = "answered with empty text"
            else:
                failed[name] = describe_failure(result)
        return answers, failed

    async def answer_with_circuits(self, prompt: str, user: str, origin: bool = False, keyed: bool = False) -> Outcome:
        memories = await self.recall(prompt, user, origin, keyed)
        answers, failed = await self.fan_out(prompt, memories)
        return await self.merge(prompt, user, answers, failed, memories)

    async def merge(self, prompt: str, user: str, answers: dict[str, Completion], failed: dict[str, str], memories: list[Memory]) -> Outcome:
        """One reply from the circuits' answers (concat or synthesize); 503 when none answered."""
        if not answers:
            wait = self.config.retry_after_s
            if all(reason.startswith("BackPressureError") for reason in failed.values()):
                raise AskError(503, "busy", f"every circuit is busy with other prompts: try again in {wait} s", retry_after=wait, failed=failed)
            raise AskError(
                503,
                "all_circuits_failed",
                "every circuit failed, so Echo has no answer: see 'failed' and GET /health; "
                "try again once the circuits are ready",
                retry_after=wait,
                failed=failed,
            )
        outcome = Outcome(reply="", route="circuits", user=user, answers=answers, failed=failed, merge=self.config.merge)
        outcome.extra["memories"] = [m.as_dict() for m in memories]
        if self.config.merge == "synthesize" and len(answers) > 1:
            try:
                synthesis = await self.call("self", synthesis_messages(self.system_prompt("self"), prompt, answers))
                if not synthesis.text:
                    raise ValueError("the synthesis came back empty")
                outcome.reply = synthesis.text
                outcome.extra["synthesis"] = synthesis.as_dict()
                return outcome
            except Exception as exc:  # fall back to the drafts themselves
                outcome.failed["synthesize"] = describe_failure(exc)
                outcome.merge = "concat"
        outcome.reply = concat(answers)
        return outcome

    async def reflect_identity(self, prompt: str, user: str) -> Outcome:
        """The manifest's declaration, then the self circuit's reflection on the question."""
        identity = self.identity.current
        outcome = Outcome(reply=identity.declaration, route="identity", user=user)
        outcome.extra["identity"] = {"files": list(identity.files)}
        messages = self.messages("self", prompt)
        try:
            answer = await self.call("self", messages)
        except Exception as exc:
            outcome.failed["self"] = describe_failure(exc)
            return outcome
        outcome.answers["self"] = answer
        if answer.text:
            outcome.reply = f"{identity.declaration}\n\n{answer.text}"
        return outcome

    async def create_project(self, prompt: str, user: str, origin: bool) -> Outcome:
        if self.token is None:
            raise AskError(
                403,
                "privileged_disabled",
                f"making a project is the owner's command, and it is disabled because no origin token "
                f"is configured: {auth.ENABLE_HINT}",
            )
        if not origin:
            raise AskError(
                403,
                "origin_only",
                "Sorry, making a project is a command only Echo's owner can give. "
                "If you are the owner, send your token as 'Authorization: Bearer <token>'.",
                reply="죄송해요, 프로젝트 만들기는 에코의 주인만 내릴 수 있는 명령이에요. "
                "Sorry, only Echo's owner can ask me to make a project.",
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
        reply = (
            f"Created project '{created.name}' in {created.path}/ with {len(created.files)} files: "
            + ", ".join(created.files)
        )
        outcome = Outcome(reply=reply, route="create_project", user=user, answers={"creation": answer})
        outcome.extra["project"] = {"name": created.name, "slug": created.slug, "path": str(created.path), "files": list(created.files)}
        return outcome

    # -- the memory, for the origin only -------------------------------------------------

    def require_origin(self, authorization: str | None, what: str) -> None:
        """Memories are private: only the owner's token reads them."""
        if self.token is None:
            raise AskError(403, "privileged_disabled", f"{what} is for Echo's owner only, and disabled because no origin token is configured: {auth.ENABLE_HINT}")
        if not authorization:
            raise AskError(401, "token_required", f"{what} is for Echo's owner only: send 'Authorization: Bearer <token>'")
        if not auth.is_origin(authorization, self.token):
            raise AskError(403, "origin_only", f"{what} is for Echo's owner only, and this token is not the owner's")

    async def search_memory(self, query: str, k: int, mode: str, authorization: str | None) -> dict:
        self.require_origin(authorization, "searching the memory")
        if not query.strip():
            raise AskError(422, "empty_query", "q is empty: send what to look for, e.g. /api/memory/search?q=고양이")
        if not 1 <= k <= 100:
            raise AskError(422, "invalid_k", f"k = {k}: ask for 1 to 100 results")
        if mode not in MODES:
            raise AskError(422, "invalid_mode", f"mode = {mode!r}: use one of {', '.join(MODES)}")
        results = await self.memory.search(query, k, None, mode)
        status = await self.memory.status()
        return {"query": query, "k": k, "mode": mode, "results": results, "index": status.get("replay", {}).get("state")}

    async def insights(self, authorization: str | None) -> dict:
        self.require_origin(authorization, "the memory's insights")
        found = await self.memory.insights()
        if found is None:
            raise AskError(503, "not_replayed_yet", "the memory has not been replayed yet: see 'memory' in GET /health and try again",
                           retry_after=self.config.retry_after_s)
        return found

    async def health(self) -> dict:
        """Each circuit's state (loading, ready, failed with the reason), asked concurrently."""
        self.identity.refresh()

        async def one(name: str) -> dict:
            try:
                return await asyncio.wait_for(self.circuits[name].state(), 5)
            except Exception as exc:
                return {"state": "unreachable", "reason": describe_failure(exc)}

        states = dict(zip(CIRCUIT_NAMES, await asyncio.gather(*(one(n) for n in CIRCUIT_NAMES)), strict=True))
        try:
            memory = await asyncio.wait_for(self.memory.status(), 5)
        except Exception as exc:
            memory = {"state": "unreachable", "reason": describe_failure(exc)}
        # Replies that cannot be saved are still answered, but Echo is not whole.
        ready = all(s.get("state") == "ready" for s in states.values()) and memory.get("saving", {}).get("state") != "failing"
        loading = [n for n, s in states.items() if s.get("state") == "loading"]
        return {
            "status": "ready" if ready else ("loading" if loading else "degraded"),
            "circuits": states,
            "loading": loading,
            "merge": self.config.merge,
            "manifest": self.identity.status(),
            "memory": memory,
            "origin_token_configured": self.token is not None,
        }


def concat(answers: Mapping[str, Completion]) -> str:
    """The drafts joined: self first, then emotion, then creation."""
    return "\n\n".join(answers[n].text for n in CONCAT_ORDER if n in answers)


def synthesis_messages(system: str, prompt: str, answers: Mapping[str, Completion]) -> Messages:
    drafts = "\n\n".join(f"[{name}]\n{answers[name].text}" for name in CONCAT_ORDER if name in answers)
    return [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": f"Question: {prompt}\n\nDrafts from your circuits:\n{drafts}\n\n"
            "Write one reply to the question that keeps the best of each draft. Do not mention the drafts.",
        },
    ]


def describe_failure(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
