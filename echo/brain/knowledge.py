"""What the brain does with facts: the asker's profile in every prompt, "forget that ...", and
the commands that show, correct and forget facts (the owner's over everyone's, a user's over
their own). The facts themselves are kept by the memory (echo.memory.facts)."""

from __future__ import annotations

import asyncio
import logging
import re

from echo.brain.errors import AskError, describe_failure
from echo.brain.memories import MemorySink

log = logging.getLogger("echo.brain")

PROFILE_TIMEOUT_S = 2.0
UNDO_HINT = "to bring it back, say so on the page (Undo) or run `echo-server facts undo`"

# "forget that I ...", "please forget about my ...", "...잊어줘", "... 잊어 주세요", "...잊어버려".
# Only at the start (English) or the end (Korean) of the message: "I always forget my keys" is not a command.
_FORGET_EN = re.compile(
    r"^\W*(?:please\s+|echo,?\s+)*forget\s+(?:that|about|what|the\s+fact\s+that|everything\s+about|my)\b\s*(.*)$", re.IGNORECASE | re.DOTALL
)
_FORGET_KO = re.compile(r"^(.*?)\s*(?:[은는을를이가]\s*)?(?:잊어\s*(?:줘|주세요|줄래|버려|버려줘|버려\s*줘)|잊어버려(?:\s*줘)?)\W*$", re.DOTALL)
_KO_TAIL = re.compile(r"\s*(?:거|것|얘기|이야기|사실)\s*$")


def forget_request(prompt: str) -> str | None:
    """What a "forget that ..." message names, or None when the message is not one."""
    text = prompt.strip()
    found = _FORGET_EN.match(text)
    if found:
        return found.group(1).strip(" .!?") or None
    found = _FORGET_KO.match(text)
    if found:
        named = _KO_TAIL.sub("", found.group(1)).strip(" .!?,")
        return named or None
    return None


async def call(memory: MemorySink, operation: str, **arguments) -> object:
    """One facts operation; AskError 422 with every problem when facts were refused."""
    answer = await memory.facts(operation, **arguments)
    if "problems" in answer:
        problems = answer["problems"]
        raise AskError(422, "facts_refused", f"nothing was changed: {'; '.join(problems[:20])}", problems=problems)
    return answer["result"]


async def profile(memory: MemorySink, user: str, budget_tokens: int) -> list[dict]:
    """The asker's standing facts within the budget; none when the memory is slow or failing."""
    if budget_tokens <= 0:
        return []
    try:
        found = await asyncio.wait_for(call(memory, "profile", user=user, budget_tokens=budget_tokens), PROFILE_TIMEOUT_S)
    except Exception as exc:
        log.warning("profile skipped: %s", describe_failure(exc))
        return []
    return found["facts"]


def forget_reply(named: str, removed: list[dict], korean: bool) -> str:
    if not removed:
        if korean:
            return f"'{named}'에 해당하는 사실을 찾지 못해서 아무것도 잊지 않았어요. 제가 아는 것은 '내가 아는 나' 화면에서 볼 수 있어요."
        return f'I found no fact of yours matching "{named}", so I forgot nothing. You can see what I know about you on the page ("What Echo knows").'
    listed = "\n".join(f"- {f['text']}" for f in removed)
    if korean:
        return f"이제 잊었어요 ({len(removed)}개):\n{listed}\n대화 기록은 그대로 남아 있어요. 되돌리려면 화면의 '되돌리기'나 `echo-server facts undo`를 쓰세요."
    return f"I've forgotten {len(removed)} {'fact' if len(removed) == 1 else 'facts'}:\n{listed}\nThe conversation lines stay in memory; {UNDO_HINT}."


def guest_forget_reply(korean: bool) -> str:
    if korean:
        return "손님에 대해서는 아무것도 기억해 두지 않아요. 잊을 것이 없어요."
    return "I keep no facts about guests, so there is nothing to forget. With your user key, I remember you and forget on request."


def is_korean(text: str) -> bool:
    return bool(re.search(r"[가-힣]", text))
