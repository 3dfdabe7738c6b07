"""Sample memory parts, a fixed clock and a writer, shared by the unit tests of the memory."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

NOW = datetime(2026, 11, 24, 20, 0, tzinfo=timezone.utc)  # 05:00 on Nov 25 in Seoul

CAT = "나의 말:\n작년 봄에 보호소에서 고양이를 입양했는데 이름을 모카라고 지었어\nChatGPT의 말:\n모카라니 귀여운 이름이에요! 행복해 보여요.\n"
TRIP = "나의 말: I flew to Lisbon in May and the pastel de nata was amazing\nChatGPT의 말:\nThat sounds wonderful.\n"
CODE = "ChatGPT의 말:\n예시 코드예요:\npython\n복사\n편집\nprint('안녕')\n메모리 업데이트됨\n"


def write(root: Path, relative: str, text: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to root/relative, making its folders."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path
