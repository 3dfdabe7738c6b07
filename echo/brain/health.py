"""What /health says: each circuit's state, the memory's, the manifest's, and one status."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from echo.brain.errors import describe_failure
from echo.brain.fanout import Circuit
from echo.brain.memories import MemorySink

STATE_TIMEOUT_S = 5


async def _state(ask) -> dict:
    try:
        return await asyncio.wait_for(ask(), STATE_TIMEOUT_S)
    except Exception as exc:
        return {"state": "unreachable", "reason": describe_failure(exc)}


async def health(circuits: Mapping[str, Circuit], memory: MemorySink) -> dict:
    """Every part's state, asked concurrently; the caller adds what it knows itself."""
    names = list(circuits)
    *states, memory_state = await asyncio.gather(*(_state(circuits[n].state) for n in names), _state(memory.status))
    states = dict(zip(names, states, strict=True))
    # Replies that cannot be saved are still answered, but Echo is not whole.
    ready = all(s.get("state") == "ready" for s in states.values()) and memory_state.get("saving", {}).get("state") != "failing"
    loading = [n for n, s in states.items() if s.get("state") == "loading"]
    return {
        "status": "ready" if ready else ("loading" if loading else "degraded"),
        "circuits": states,
        "loading": loading,
        "memory": memory_state,
    }
