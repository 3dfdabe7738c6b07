"""Which path a prompt takes, in the order the owner designed: identity, create, circuits;
"forget that ..." before them all, since it names what to forget in any words."""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from echo.brain.knowledge import forget_request

Route = Literal["forget", "identity", "create_project", "circuits"]

# "너는 누구야?", "너 누구야", "넌 누구니", "who are you", questions about 자아 / self.
_IDENTITY = re.compile(
    r"(너는?|넌|당신은?)\s*(도대체\s*)?(누구|뭐|무엇)"
    r"|자아|정체성"
    r"|\bwho\s+(are|r)\s+(you|u)\b|\bwhat\s+are\s+you\b"
    r"|\b(your|you)\s*self\b|\btell\s+me\s+about\s+yourself\b|\byour\s+identity\b",
    re.IGNORECASE,
)

# "…만들어줘", "만들어 주세요", "make me …", "create a project …", "build me …".
_CREATE = re.compile(
    r"만들어\s*(줘|줄래|주세요|주라|봐|다오)|생성해\s*(줘|주세요)"
    r"|\b(make|build|create)\s+(me|us)\b|\bcreate\s+(a|an|the|new)\s+project\b",
    re.IGNORECASE,
)


def classify(prompt: str) -> Route:
    text = unicodedata.normalize("NFC", prompt)
    if forget_request(text) is not None:
        return "forget"
    if _IDENTITY.search(text):
        return "identity"
    if _CREATE.search(text):
        return "create_project"
    return "circuits"
