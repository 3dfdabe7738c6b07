"""The conversations one can come back to: listed newest first and read back whole from
memory/ (GET /api/conversations). The owner sees everyone's (or one user's), a user with
their key their own, a guest only the one whose id it holds, and cannot list.

A conversation is named by the id Echo handed out with its first answer or, for the owner
and a keyed user, by its key as the list shows it (the files keep only the key, so the list
can never hand out an id). Another's conversation is not found, as an unknown one: a 404,
so that ids say nothing to a stranger."""

from __future__ import annotations

import re

from echo.brain import users
from echo.brain.errors import AskError
from echo.brain.memories import MemorySink
from echo.memory.conversation import conversation_key, is_key

MAX_PAGE = 100
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # what an id Echo hands out can look like (URL-safe base64)
WHERE_IDS_ARE = "a conversation's id is the `conversation` of an answer, or the `id` GET /api/conversations lists"


def _reader(requested: str | None, authorization: str | None, token: str | None) -> tuple[users.Asker, str | None]:
    """(who asks, whose conversations they see: None for everyone's, the owner's view)."""
    asker = users.identify(requested, authorization, token)
    return asker, (requested if asker.origin else asker.user)


async def listing(memory: MemorySink, requested: str | None, authorization: str | None, token: str | None, limit: int, offset: int, retry_after_s: int) -> dict:
    asker, whose = _reader(requested, authorization, token)
    if not asker.may_recall:
        raise AskError(
            401,
            "key_required",
            "listing conversations needs your user name (user=...) and key as 'Authorization: Bearer <key>', or the owner's token; "
            f"as a guest, read one back by its id: GET /api/conversations/<id> ({WHERE_IDS_ARE})",
        )
    if limit < 1 or offset < 0:
        raise AskError(422, "invalid_page", "limit must be 1 or more and offset 0 or more")
    capped = min(limit, MAX_PAGE)
    page = await memory.conversation_list(whose, capped, offset)
    if page is None:
        raise _still_reading(retry_after_s)
    answer = {"user": whose, "limit": capped, "offset": offset, **page}
    if capped < limit:
        answer["note"] = f"limit {limit} is over the most one page holds: {MAX_PAGE} shown; page on with offset"
    return answer


async def read_back(memory: MemorySink, requested: str | None, authorization: str | None, token: str | None, reference: str, retry_after_s: int) -> dict:
    asker, whose = _reader(requested, authorization, token)
    if is_key(reference) and asker.may_recall:
        key = reference
    elif re.match(ID_PATTERN, reference):
        key = conversation_key(reference)
    else:
        raise _not_found(reference)
    found = await memory.conversation_read(key, whose)
    if found is None:
        raise _still_reading(retry_after_s)
    if not found["found"]:
        raise _not_found(reference)
    if len(found["found"]) > 1:
        several = ", ".join(sorted(c["user"] for c in found["found"]))
        raise AskError(409, "several_users", f"users {several} each have a conversation with this id: add user=<name> to choose one")
    return {"conversation": found["found"][0], "exchanges": found["exchanges"]}


def _not_found(reference: str) -> AskError:
    shown = reference if len(reference) <= 64 else reference[:61] + "..."
    return AskError(404, "conversation_not_found", f"no conversation {shown!r} among yours: {WHERE_IDS_ARE} (with your name and key, or the owner's token)")


def _still_reading(retry_after_s: int) -> AskError:
    return AskError(503, "conversations_loading", "the conversation list is still being read at start: try again in a few seconds", retry_after=retry_after_s)
