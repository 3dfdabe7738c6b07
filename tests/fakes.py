"""Fast stand-ins for the circuits and the memory, for unit tests of the brain's logic."""

from __future__ import annotations

import asyncio
from pathlib import Path

from echo.config import parse_config
from echo.llm.engine import Completion


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


class FakeMemory:
    def __init__(self, error: Exception | None = None, memories: list[dict] | None = None, insight: dict | None = None):
        self.saved: list[tuple[str, str, str]] = []
        self.error = error
        self.memories = memories or []
        self.insight = insight
        self.searches: list[tuple[str, int, str | None, str]] = []

    async def save(self, user: str, prompt: str, reply: str) -> dict:
        if self.error is not None:
            raise self.error
        self.saved.append((user, prompt, reply))
        return {"path": f"day0101/{user}/part1.txt", "line_start": 1, "line_end": 4}

    async def search(self, query: str, k: int, user: str | None, mode: str) -> list[dict]:
        if self.error is not None:
            raise self.error
        self.searches.append((query, k, user, mode))
        return [m for m in self.memories if user is None or m["user"] == user][:k]

    async def insights(self) -> dict | None:
        return self.insight

    async def status(self) -> dict:
        if self.error is not None:
            raise self.error
        return {"state": "ready", "repaired_at_start": [], "replay": {"state": "ready"}}


def make_config(tmp: Path, **overrides):
    circuit = {"engine": "echo", "role_prompt": "role", "timeout_s": 5}
    data = {
        "circuits": {n: dict(circuit, role_prompt=f"You are the {n} circuit.") for n in ("emotion", "creation", "self")},
        "memory_dir": str(tmp / "memory"),
        "manifest_dir": str(tmp / "manifest"),
        "projects_dir": str(tmp / "origin" / "projects"),
        **overrides,
    }
    return parse_config(data)
