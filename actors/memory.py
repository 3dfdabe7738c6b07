"""MemoryActor: the single writer of memory/ (a named Ray actor shared by every brain replica)."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from pathlib import Path

import ray

from core.config import EchoConfig
from core.memory_store import append_exchange, exchange_lines, repair_torn_parts

log = logging.getLogger("echo.memory")

NAMESPACE = "echo"


@ray.remote(num_cpus=0, max_restarts=-1)
class MemoryActor:
    def __init__(self, config: dict):
        self.config = EchoConfig.model_validate(config)
        self.config.memory_dir.mkdir(parents=True, exist_ok=True)
        # A crash mid-write leaves a cut-off last line: end it, or set it aside, before writing.
        self.repairs = repair_torn_parts(self.config.memory_dir, self.config.quarantine_dir)
        for report in self.repairs:
            log.warning("memory repaired at start: %s", report)

    def save(self, user: str, prompt: str, reply: str) -> dict:
        c = self.config
        lines = exchange_lines(prompt, reply)
        receipt = append_exchange(c.memory_dir, user, lines, datetime.now(timezone.utc), c.timezone, c.part_lines, c.backup_dir)
        return receipt.as_dict()

    def status(self) -> dict:
        return {"state": "ready", "repaired_at_start": self.repairs}


def actor_name(memory_dir: Path) -> str:
    # One writer per memory folder, so two Echo apps on one cluster never share a writer.
    return f"MemoryActor-{hashlib.sha1(str(memory_dir).encode()).hexdigest()[:8]}"


def memory_actor(config: EchoConfig):
    """The memory folder's writer: created on first use, then found by name."""
    return MemoryActor.options(
        name=actor_name(config.memory_dir), namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(config.model_dump(mode="json"))
