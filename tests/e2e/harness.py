"""What the end-to-end tests share: the Echo under test, its sample memory and config, and
waiting for it. The fixtures that start it are in conftest.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from bench.common import wait_until
from echo.brain.users import user_key
from echo.config import DEFAULT_CONFIG

TOKEN = "e2e-origin-token-7f3a"


@dataclass
class Echo:
    url: str
    home: Path
    token: str
    metrics_port: int

    def ask(self, payload: dict, token: str | None = None, timeout: float = 180) -> httpx.Response:
        """POST /api/ask; a payload with a user name goes with that user's key unless token is given."""
        token = token or (self.key(payload["user"]) if payload.get("user") else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{self.url}/api/ask", json=payload, headers=headers, timeout=timeout)

    def key(self, user: str) -> str:
        """The key the owner makes for user (echo-server user-key)."""
        return user_key(self.token, user)


# Facts that only the sample memory knows, and where they are written.
CAT_FACT = ("day0910/origin/part3.txt", "작년 봄에 보호소에서 고양이를 입양했는데 이름을 모카라고 지었어")
SISTER_FACT = ("day0911/origin/part2.txt", "My sister Hana moved to Vancouver last year and works as a marine biologist")
GUEST_FACT = ("day0911/minji/part1.txt", "요즘 양양에서 서핑을 배우고 있어")
BAD_PART = "day0912/origin/part1.txt"
FILLER = [
    ("오늘 점심은 김치찌개 먹었어", "맛있었겠네요! 오후도 힘내세요."),
    ("회의 자료 정리하는 거 도와줄래?", "네, 목차부터 같이 잡아볼까요?\n1. 배경\n2. 결과\n3. 다음 단계"),
    ("Can you explain what a closure is?", "A closure is a function that keeps the variables of the scope it was made in."),
    ("주말에 비 온대", "그럼 실내에서 할 만한 걸 찾아볼까요?"),
    ("도와줘서 정말 고마워, 행복해", "저도 기뻐요!"),
]


def plant_sample_memory(root: Path) -> None:
    """Twelve parts over three days (enough for the Ray Data reader), three facts, one bad part."""
    facts = dict([CAT_FACT, SISTER_FACT, GUEST_FACT])
    paths = [f"day0910/origin/part{n}.txt" for n in range(1, 7)] + [f"day0911/origin/part{n}.txt" for n in range(1, 6)]
    for n, relative in enumerate([*paths, GUEST_FACT[0]]):
        lines = []
        for i in range(5):
            prompt, reply = FILLER[(n + i) % len(FILLER)]
            lines += ["나의 말:", prompt, "ChatGPT의 말:", reply]
        if relative in facts:
            lines += ["나의 말:", facts[relative], "ChatGPT의 말:", "기억해 둘게요."]
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / BAD_PART).parent.mkdir(parents=True, exist_ok=True)
    (root / BAD_PART).write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00 not a conversation")


def folders(home: Path) -> dict[str, str]:
    """An Echo's memory, its backup, quarantine and index, manifest and projects, all under home."""
    return {
        "memory_dir": str(home / "memory"),
        "backup_dir": str(home / "memory_backup"),
        "quarantine_dir": str(home / "memory_quarantine"),
        "index_dir": str(home / "memory_index"),
        "manifest_dir": str(home / "manifest"),
        "projects_dir": str(home / "origin" / "projects"),
    }


def write_config(home: Path, port: int, **overrides) -> Path:
    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    for circuit in data["circuits"].values():
        circuit["max_tokens"] = 32  # short answers keep the suite quick on two cores
    data.update(port=port, **folders(home), **overrides)
    path = home / "echo.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def wait_for(check, timeout: float, what: str):
    """check()'s first truthy result, looked for every 0.1 s; the test fails after timeout."""
    try:
        return wait_until(check, timeout, what)
    except TimeoutError as exc:
        pytest.fail(str(exc))


def sse_events(response) -> Iterator[tuple[str, dict]]:
    """(event, data) of every server-sent event of a streamed /api/ask, as they arrive."""
    name = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            yield name, json.loads(line[len("data: ") :])


def wait_ready(url: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{url}/health", timeout=10).json()
            # Every circuit has settled, ready or failed: one Serve is still placing is "unreachable".
            if not any(c["state"] in ("loading", "unreachable") for c in health["circuits"].values()):
                return health
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Echo at {url} was not ready within {timeout}s")


def owner(echo: Echo) -> dict:
    return {"Authorization": f"Bearer {echo.token}"}


def memory_ready(echo: Echo, embedded: bool = False, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        memory = httpx.get(f"{echo.url}/health", timeout=10).json()["memory"]
        if memory["replay"]["state"] == "ready" and (not embedded or memory["embedding"]["state"] == "ready"):
            return memory
        time.sleep(0.5)
    raise TimeoutError(f"memory not ready within {timeout}s: {memory}")


def search(echo: Echo, q: str, **params) -> list[dict]:
    response = httpx.get(f"{echo.url}/api/memory/search", params={"q": q, **params}, headers=owner(echo), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["results"]
