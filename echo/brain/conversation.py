"""The conversation around a prompt: whether it goes on, which of its exchanges fit the
prompt (newest kept, oldest dropped first), and how the circuits read them: as chat
messages with their real roles, dated when they are old."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from echo.brain.errors import describe_failure
from echo.brain.memories import MemorySink
from echo.config import ConversationConfig
from echo.llm.completion import Messages
from echo.memory.conversation import Exchange, conversation_key, is_key, new_conversation_id
from echo.memory.dates import said_at
from echo.memory.search import Memory, estimate_tokens

log = logging.getLogger("echo.brain")

CONTEXT_TIMEOUT_S = 3.0

EXCHANGE_OVERHEAD_TOKENS = 8  # the chat template's role markers around two messages


def window(exchanges: list[Exchange], config: ConversationConfig) -> list[Exchange]:
    """The latest exchanges within max_exchanges and budget_tokens, oldest first."""
    chosen: list[Exchange] = []
    used = 0
    for exchange in reversed(exchanges[-config.max_exchanges :] if config.max_exchanges else []):
        cost = estimate_tokens(exchange.prompt) + estimate_tokens(exchange.reply) + EXCHANGE_OVERHEAD_TOKENS
        if used + cost > config.budget_tokens:
            break
        chosen.append(exchange)
        used += cost
    return chosen[::-1]


def as_messages(exchanges: list[Exchange], now: datetime, config: ConversationConfig) -> Messages:
    """The exchanges as user and assistant messages; an old one says when it was said."""
    messages: Messages = []
    for exchange in exchanges:
        at = datetime.fromisoformat(exchange.at)
        old = now - at > timedelta(minutes=config.show_time_after_minutes)
        prompt = f"({said_at(at, now)}) {exchange.prompt}" if old else exchange.prompt
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": exchange.reply}]
    return messages


@dataclass(frozen=True)
class Thread:
    """The conversation a prompt belongs to, as the circuits get it and the answer cites it."""

    id: str  # handed back to the client, which sends it with its next prompt: the key itself for the owner and keyed users
    key: str  # what the memory files keep of the id
    messages: Messages = ()  # the conversation so far, between the system prompt and the prompt
    instructions: str = ""  # the client's own system messages (/v1), after Echo's identity
    context: tuple[dict, ...] = ()  # what the answer cites: the exchanges, or the client's messages
    exchanges: tuple[Exchange, ...] = ()  # read back from memory/: recall leaves their turns out


async def find_thread(memory: MemorySink, user: str, conversation: str | None, now: datetime, config: ConversationConfig, keyed: bool = False) -> Thread:
    """The conversation of user that conversation names, however long ago it last went on;
    else a new one. A guest names it by the id Echo handed out; the owner and a keyed user
    (keyed) by its key, as the conversation list shows it (what Echo hands them: their
    conversations are theirs by their token, not by holding an id), or by an id. One Echo
    did not hand out to this user starts a new conversation: a guessed or foreign id finds
    nothing of anyone else's."""
    if conversation:
        key = conversation if keyed and is_key(conversation) else conversation_key(conversation)
        try:
            # Only the exchanges the window may take.
            exchanges = await asyncio.wait_for(memory.conversation(user, key, max(config.max_exchanges, 1)), CONTEXT_TIMEOUT_S)
        except Exception as exc:  # a conversation that cannot be read back goes on without its past
            log.warning("conversation not read back: %s", describe_failure(exc))
            exchanges = []
        if exchanges:
            chosen = window(exchanges, config)
            return Thread(key if keyed else conversation, key, as_messages(chosen, now, config), "", tuple(e.as_dict() for e in chosen), tuple(chosen))
    fresh = new_conversation_id()
    key = conversation_key(fresh)
    return Thread(key if keyed else fresh, key)


def client_thread(history: Messages) -> Thread:
    """/v1's conversation: the client's own messages are the context, its system messages an
    extra instruction; nothing of it is read back (the client holds it)."""
    fresh = new_conversation_id()
    instructions = "\n\n".join(m["content"] for m in history if m["role"] == "system" and m["content"])
    messages = [m for m in history if m["role"] in ("user", "assistant") and m["content"]]
    return Thread(fresh, conversation_key(fresh), messages, instructions, tuple(m for m in history if m["content"]))


def left_out(found: list[Memory], thread: Thread) -> list[Memory]:
    """Memories that are not already in the prompt as part of the conversation."""
    return [m for m in found if not any(m.path == e.path and e.line_start <= m.line_start <= e.line_end for e in thread.exchanges)]
