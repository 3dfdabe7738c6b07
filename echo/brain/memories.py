"""What the brain asks of the memory: recall for an answer, saving an exchange, and the
owner's search and insights. The memory itself (a Ray actor in Serve, a fake in unit tests)
is a MemorySink."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from echo.brain.errors import AskError, describe_failure
from echo.config import RecallConfig
from echo.memory.conversation import Exchange
from echo.memory.dates import parse_bound
from echo.memory.search import MODES, Memory, within_budget

log = logging.getLogger("echo.brain")

RECALL_TIMEOUT_S = 3.0


class MemorySink(Protocol):
    async def save(self, user: str, prompt: str, reply: str, conversation: str | None = None) -> dict: ...  # conversation: its key

    async def conversation(self, user: str, key: str, last: int) -> list[Exchange]: ...  # the last exchanges, oldest first

    # echo.memory.conversation.ConversationIndex; None while it is still read at start
    async def conversation_list(self, user: str | None, limit: int, offset: int) -> dict | None: ...  # {total, conversations}

    async def conversation_read(self, key: str, user: str | None) -> dict | None: ...  # {found: [summaries], exchanges}

    async def search(self, query: str, k: int, user: str | None, mode: str, since: str | None = None, before: str | None = None) -> list[dict]: ...

    async def insights(self) -> dict | None: ...

    async def status(self) -> dict: ...

    async def facts(self, operation: str, **arguments) -> dict: ...  # echo.memory.facts.FactDesk: {"result": ...} or {"problems": [...]}


async def recall(memory: MemorySink, config: RecallConfig, prompt: str, user: str | None, spare: int = 0) -> list[Memory]:
    """The best memories for prompt, best first: user's, or everyone's for None; config.k of
    them and spare more, to stand in for those fit() leaves out. Recall helps an answer but
    never blocks one: a slow or failed search gives none."""
    if config.k == 0 or config.budget_tokens == 0:
        return []
    try:
        found = await asyncio.wait_for(memory.search(prompt, config.k + spare, user, "hybrid"), RECALL_TIMEOUT_S)
    except Exception as exc:
        log.warning("recall skipped: %s", describe_failure(exc))
        return []
    return [Memory(**m) for m in found]


def fit(found: list[Memory], config: RecallConfig, leave_out: Callable[[list[Memory]], list[Memory]] = list) -> list[Memory]:
    """What of recall's memories goes into the prompt: leave_out drops those already in it
    (the conversation's own turns), then the best k within the token budget."""
    return within_budget(leave_out(found)[: config.k], config.budget_tokens)


async def save(memory: MemorySink, user: str, prompt: str, reply: str, conversation: str) -> dict:
    """The save's part of the answer: saved and where, or why not (the reply still goes out)."""
    try:
        receipt = await memory.save(user, prompt, reply, conversation)
    except Exception as exc:
        log.error("exchange not saved for user %s: %s", user, type(exc).__name__)
        return {"saved": False, "unsaved_reason": describe_failure(exc)}
    return {"saved": True, "memory": receipt}


async def search(memory: MemorySink, query: str, k: int, mode: str, since: str | None = None, before: str | None = None, timezone: str = "UTC") -> dict:
    """The owner's search over everyone's memories (the caller checked the token), bounded in
    time by since and before (dates or dates and times) when they are given."""
    if not query.strip():
        raise AskError(422, "empty_query", "q is empty: send what to look for, e.g. /api/memory/search?q=고양이")
    if not 1 <= k <= 100:
        raise AskError(422, "invalid_k", f"k = {k}: ask for 1 to 100 results")
    if mode not in MODES:
        raise AskError(422, "invalid_mode", f"mode = {mode!r}: use one of {', '.join(MODES)}")
    for name, value in (("since", since), ("before", before)):
        try:
            parse_bound(name, value, timezone)
        except ValueError as exc:
            raise AskError(422, f"invalid_{name}", str(exc)) from None
    bounds = {name: value for name, value in (("since", since), ("before", before)) if value}
    results = await memory.search(query, k, None, mode, **bounds)
    status = await memory.status()
    return {"query": query, "k": k, "mode": mode, **bounds, "results": results, "index": status.get("replay", {}).get("state")}


async def insights(memory: MemorySink, retry_after_s: int) -> dict:
    found = await memory.insights()
    if found is None:
        raise AskError(503, "not_replayed_yet", "the memory has not been replayed yet: see 'memory' in GET /health and try again", retry_after=retry_after_s)
    return found
