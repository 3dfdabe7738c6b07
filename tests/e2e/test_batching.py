"""Continuous batching through Ray Serve with the real SmolLM2: several asks at once are
generated together in each circuit's slots (n_parallel 4 in configs/default.yaml)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from bench.load import prompts, saved_prompts
from echo.brain.users import user_key
from tests.e2e.harness import Echo

pytestmark = pytest.mark.e2e


async def streamed_ask(client: httpx.AsyncClient, echo: Echo, prompt: str, user: str) -> dict:
    """One streamed /api/ask as user (with their key): when each circuit's tokens came, and the done event."""
    tokens: dict[str, list[float]] = {}
    done = None
    headers = {"Authorization": f"Bearer {user_key(echo.token, user)}"}
    async with client.stream("POST", f"{echo.url}/api/ask", json={"prompt": prompt, "user": user, "stream": True}, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        name = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
                if name == "token":
                    tokens.setdefault(data["circuit"], []).append(time.monotonic())
                elif name == "done":
                    done = data
    return {"prompt": prompt, "tokens": tokens, "done": done}


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most of these (start, end) spans that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_eight_asks_at_once_are_generated_together_and_each_is_saved_once(echo: Echo):
    health = httpx.get(f"{echo.url}/health", timeout=10).json()
    assert {n: c["load"]["slots"] for n, c in health["circuits"].items()} == {"emotion": 4, "creation": 4, "self": 4}

    busy_seen: dict[str, int] = {}
    queued_seen: dict[str, int] = {}
    statuses: set[str] = set()
    watching = threading.Event()

    def watch_health() -> None:  # what an operator sees while it runs
        while not watching.is_set():
            health = httpx.get(f"{echo.url}/health", timeout=10).json()
            statuses.add(health["status"])
            for name, circuit in health["circuits"].items():
                load = circuit.get("load") or {}
                busy_seen[name] = max(busy_seen.get(name, 0), load.get("busy", 0))
                queued_seen[name] = max(queued_seen.get(name, 0), load.get("queued", 0))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_health)
    watcher.start()

    async def all_at_once() -> list[dict]:
        async with httpx.AsyncClient(timeout=300) as client:
            return await asyncio.gather(*(streamed_ask(client, echo, p, "batch") for p in prompts("batch", 8)))

    try:
        results = asyncio.run(all_at_once())
    finally:
        watching.set()
        watcher.join()
    for result in results:
        done = result["done"]
        assert done is not None and done["failed"] == {} and done["saved"] is True, done
        assert set(done["circuits"]) == {"emotion", "creation", "self"}
    # The streams interleave: in every circuit, several asks were generating at the same time.
    for circuit in ("emotion", "creation", "self"):
        spans = [(min(r["tokens"][circuit]), max(r["tokens"][circuit])) for r in results]
        assert most_at_once(spans) >= 3, (circuit, spans)
    # /health answered all along, and showed the slots filling and the rest waiting for one.
    assert statuses == {"ready"} and max(busy_seen.values()) == 4 and max(queued_seen.values()) >= 1, (statuses, busy_seen, queued_seen)
    counts, problems = saved_prompts(echo.home / "memory", "batch")
    assert problems == [] and {p: counts[p] for p in (r["prompt"] for r in results)} == {r["prompt"]: 1 for r in results}
    after = httpx.get(f"{echo.url}/health", timeout=10).json()["circuits"]
    assert all(c["load"]["busy"] == 0 and c["load"]["prompt_tokens_reused"] > 0 for c in after.values())  # the system prompt was reused
