"""MemoryActor: the single writer of memory/ (a named Ray actor shared by every brain replica)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import ray

from core.config import EchoConfig
from core.memory_store import append_exchange, exchange_lines

NAMESPACE = "echo"


@ray.remote(num_cpus=0, max_restarts=-1)
class MemoryActor:
    def __init__(self, memory_dir: str, timezone_name: str, part_lines: int):
        self.memory_dir = Path(memory_dir)
        self.timezone = timezone_name
        self.part_lines = part_lines
        self.memory_dir.mkdir(parents=True, exist_ok=True)

    def save(self, user: str, prompt: str, reply: str) -> dict:
        receipt = append_exchange(
            self.memory_dir, user, exchange_lines(prompt, reply), datetime.now(timezone.utc), self.timezone, self.part_lines
        )
        return receipt.as_dict()


def actor_name(memory_dir: Path) -> str:
    # One writer per memory folder, so two Echo apps on one cluster never share a writer.
    return f"MemoryActor-{hashlib.sha1(str(memory_dir).encode()).hexdigest()[:8]}"


def memory_actor(config: EchoConfig):
    """The memory folder's writer: created on first use, then found by name."""
    return MemoryActor.options(
        name=actor_name(config.memory_dir), namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(str(config.memory_dir), config.timezone, config.part_lines)
