"""Fast stand-ins for the circuits and the memory, for unit tests of the brain's logic."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

from echo.brain.brain import Brain
from echo.brain.identity import IdentitySource
from echo.config import parse_config
from echo.llm.completion import Completion
from echo.memory.conversation import Exchange, title_of


class FakeCircuit:
    def __init__(self, name: str, text: str | None = None, delay: float = 0.0, error: Exception | None = None):
        self.name, self.text, self.delay, self.error = name, text, delay, error
        self.calls: list[tuple[list, dict]] = []

    async def generate(self, messages, **options) -> Completion:
        self.calls.append((messages, options))
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        text = self.text if self.text is not None else f"{self.name} says hi"
        return Completion(text=text, prompt_tokens=10, completion_tokens=3, latency_ms=self.delay * 1000, finish_reason="stop")

    async def stream(self, messages, **options):
        self.calls.append((messages, options))
        if self.error is not None:
            raise self.error
        text = self.text if self.text is not None else f"{self.name} says hi"
        for piece in text.split(" "):
            await asyncio.sleep(self.delay / 4)
            yield {"token": piece if piece == text.split(" ")[0] else f" {piece}"}
        yield {"done": Completion(text=text, prompt_tokens=10, completion_tokens=3, latency_ms=self.delay * 1000, finish_reason="stop")}

    async def state(self) -> dict:
        return {"state": "ready", "reason": None}


class FakeClock:
    """A clock that moves only when slept on."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def hit(text: str, score: float, path: str = "day0901/origin/part1.txt", line_start: int = 1, speaker: str = "user") -> dict:
    """One search result as the memory returns it: a turn of path's, user and day from the path."""
    day, user = path.split("/")[:2]
    return {"path": path, "line_start": line_start, "line_end": line_start + 1, "day": day, "user": user, "speaker": speaker, "text": text, "score": score}


NO_FACTS = {"profile": {"facts": [], "tokens": 0}, "list": {"total": 0, "offset": 0, "limit": 50, "facts": []}, "show": None, "edit": None}


class FakeMemory:
    def __init__(self, error: Exception | None = None, memories: list[dict] | None = None, insight: dict | None = None, desk=None):
        """desk: a real echo.memory.facts.FactDesk to answer the facts operations; without one, there are no facts."""
        self.desk = desk
        self.fact_calls: list[tuple[str, dict]] = []
        self.saved: list[tuple[str, str, str]] = []
        self.error = error
        self.memories = memories or []
        self.insight = insight
        self.searches: list[tuple[str, int, str | None, str]] = []
        self.conversations: dict[tuple[str, str | None], list[Exchange]] = {}
        self.clock: datetime | None = None  # when set, the time exchanges are saved at

    async def save(self, user: str, prompt: str, reply: str, conversation: str | None = None) -> dict:
        if self.error is not None:
            raise self.error
        self.saved.append((user, prompt, reply))
        line = 5 * len(self.saved) - 4  # a stamp, then four lines an exchange
        at = (self.clock or datetime.now(timezone.utc)).isoformat(timespec="seconds")
        self.conversations.setdefault((user, conversation), []).append(Exchange(prompt, reply, at, f"day0101/{user}/part1.txt", line + 1, line + 4))
        return {"path": f"day0101/{user}/part1.txt", "line_start": line + 1, "line_end": line + 4}

    async def conversation(self, user: str, key: str, last: int) -> list[Exchange]:
        if self.error is not None:
            raise self.error
        return self.conversations.get((user, key), [])[-last:]

    def _summary(self, user: str, key: str) -> dict:
        said = self.conversations[(user, key)]
        return {"id": key, "user": user, "title": title_of(said[0].prompt), "started": said[0].at, "last": said[-1].at, "exchanges": len(said)}

    async def conversation_list(self, user: str | None, limit: int, offset: int) -> dict | None:
        chosen = [self._summary(u, k) for (u, k) in self.conversations if k and (user is None or u == user)]
        chosen.sort(key=lambda c: c["last"], reverse=True)
        return {"total": len(chosen), "conversations": chosen[offset : offset + limit]}

    async def conversation_read(self, key: str, user: str | None) -> dict | None:
        found = [self._summary(u, k) for (u, k) in self.conversations if k == key and (user is None or u == user)]
        exchanges = [e.as_dict() for e in self.conversations[(found[0]["user"], key)]] if len(found) == 1 else []
        return {"found": found, "exchanges": exchanges}

    async def search(self, query: str, k: int, user: str | None, mode: str, since: str | None = None, before: str | None = None) -> list[dict]:
        if self.error is not None:
            raise self.error
        self.searches.append((query, k, user, mode) + ((since, before) if since or before else ()))
        return [m for m in self.memories if user is None or m["user"] == user][:k]

    async def insights(self) -> dict | None:
        return self.insight

    async def facts(self, operation: str, **arguments) -> dict:
        self.fact_calls.append((operation, arguments))
        if self.error is not None:
            raise self.error
        if self.desk is not None:
            return self.desk.run(operation, **arguments)
        return {"result": NO_FACTS.get(operation, [])}

    async def status(self) -> dict:
        if self.error is not None:
            raise self.error
        return {"state": "ready", "repaired_at_start": [], "replay": {"state": "ready"}}


CIRCUITS = ("emotion", "creation", "self")


def make_config(tmp: Path, **overrides):
    circuit = {"engine": "echo", "role_prompt": "role", "timeout_s": 5}
    data = {
        "circuits": {n: dict(circuit, role_prompt=f"You are the {n} circuit.") for n in CIRCUITS},
        "memory_dir": str(tmp / "memory"),
        "manifest_dir": str(tmp / "manifest"),
        "projects_dir": str(tmp / "origin" / "projects"),
        **overrides,
    }
    return parse_config(data)


def make_brain(
    tmp: Path,
    *,
    token: str | None,
    manifest: str | None = "I am Echo.",
    circuits: dict | None = None,
    memory: FakeMemory | None = None,
    **config,
) -> Brain:
    """A Brain over fakes in tmp: make_config(tmp, **config), a FakeCircuit per circuit and a
    FakeMemory unless given, and the origin token (None: the owner's doors are closed).

    The manifest folder is made if missing; manifest is written to manifest/echo.txt, and
    with None nothing is written there (the folder stays empty, or as the test left it)."""
    folder = tmp / "manifest"
    folder.mkdir(exist_ok=True)
    if manifest is not None:
        (folder / "echo.txt").write_text(manifest, encoding="utf-8")
    cfg = make_config(tmp, **config)
    circuits = {n: FakeCircuit(n) for n in CIRCUITS} if circuits is None else circuits
    memory = FakeMemory() if memory is None else memory
    return Brain(cfg, circuits, memory, IdentitySource(cfg.manifest_dir), token)
