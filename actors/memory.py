"""MemoryActor: the single writer of memory/ and the keeper of its search index.

A named Ray actor shared by every brain replica. At start it repairs torn parts, then a
background thread replays memory/ (Ray Data at first boot, only changed parts after each
save) and embeds the turns that have no vector yet; search works from the first moment
an index exists and gets better as vectors arrive.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path

import ray

from core.config import EchoConfig
from core.dense import load_embedder
from core.memory_store import append_exchange, exchange_lines, repair_torn_parts
from core.recall import MemorySearch
from core.replay import replay
from pipelines.replay import boot_memory_loop

log = logging.getLogger("echo.memory")

NAMESPACE = "echo"


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=8)
class MemoryActor:
    def __init__(self, config: dict):
        self.config = EchoConfig.model_validate(config)
        self.config.memory_dir.mkdir(parents=True, exist_ok=True)
        # A crash mid-write leaves a cut-off last line: end it, or set it aside, before writing.
        self.repairs = repair_torn_parts(self.config.memory_dir, self.config.quarantine_dir)
        for report in self.repairs:
            log.warning("memory repaired at start: %s", report)
        self._write = threading.Lock()  # one exchange at a time into memory/
        self._changed = threading.Event()  # memory/ has lines the index has not seen
        self.search_engine: MemorySearch | None = None
        self.replay_state: dict = {"state": "starting"}
        self.boot_replay: dict | None = None
        self.embedding_state: dict = {"state": "off" if self.config.recall.embedding_model == "off" else "starting"}
        threading.Thread(target=self._index_loop, name="memory-index", daemon=True).start()

    # -- writing ---------------------------------------------------------------------

    def save(self, user: str, prompt: str, reply: str) -> dict:
        c = self.config
        lines = exchange_lines(prompt, reply, c.markers)
        with self._write:
            receipt = append_exchange(
                c.memory_dir, user, lines, datetime.now(timezone.utc), c.timezone, c.part_lines, c.backup_dir, c.markers
            )
        self._changed.set()  # the index thread takes the new lines in
        return receipt.as_dict()

    # -- the index ---------------------------------------------------------------------

    def _index_loop(self) -> None:
        c = self.config
        embedder = None
        if c.recall.embedding_model != "off":
            try:
                embedder = load_embedder(c.recall.embedding_model, c.recall.embedding_threads, c.recall.embedding_n_gpu_layers)
            except Exception as exc:  # search stays lexical; /health says why
                self.embedding_state = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                log.error("embedding model not loaded: %s", exc)
        first = True
        while True:
            try:
                self.replay_state = {**self.replay_state, "state": "replaying" if first else "updating"}
                if first:  # the whole memory through Ray Data (only what changed since the last boot)
                    insight = boot_memory_loop(c.memory_dir, c.index_dir, markers=c.markers)
                else:
                    insight = replay(c.memory_dir, c.index_dir, markers=c.markers)
                if self.search_engine is None:
                    self.search_engine = MemorySearch(c.index_dir, embedder)
                else:
                    self.search_engine.refresh()
                if first:
                    self.boot_replay = insight["last_replay"]
                self.replay_state = {
                    "state": "ready",
                    "boot": self.boot_replay,
                    "turns": insight["turns"],
                    "parts": insight["parts"],
                    "skipped": len(insight["skipped"]),
                    "last_replay": insight["last_replay"],
                }
            except Exception as exc:
                log.exception("memory replay failed")
                self.replay_state = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            first = False
            if embedder is not None and self.search_engine is not None:
                self._embed()
            self._changed.wait()
            self._changed.clear()

    def _embed(self) -> None:
        engine = self.search_engine
        total = len(engine.turns["hash"])
        self.embedding_state = {"state": "embedding", "embedded": engine.embedded(), "turns": total}
        try:
            engine.embed_pending(stop=self._changed)  # a save interrupts: its lines are indexed first
        except Exception as exc:
            log.exception("embedding failed")
            self.embedding_state = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            return
        done = engine.embedded()
        self.embedding_state = {"state": "ready" if done >= total else "paused", "embedded": done, "turns": total}

    # -- reading ---------------------------------------------------------------------

    def search(self, query: str, k: int = 10, user: str | None = None, mode: str = "hybrid") -> list[dict]:
        if self.search_engine is None:
            return []
        return [m.as_dict() for m in self.search_engine.search(query, k, user, mode)]

    def insights(self) -> dict | None:
        path = self.config.index_dir / "insight.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def status(self) -> dict:
        state = self.replay_state["state"]
        return {
            "state": "ready" if state in ("ready", "updating") else state,
            "repaired_at_start": self.repairs,
            "replay": self.replay_state,
            "embedding": self.embedding_state,
        }


def actor_name(memory_dir: Path) -> str:
    # One writer per memory folder, so two Echo apps on one cluster never share a writer.
    return f"MemoryActor-{hashlib.sha1(str(memory_dir).encode()).hexdigest()[:8]}"


def memory_actor(config: EchoConfig):
    """The memory folder's writer: created on first use, then found by name."""
    return MemoryActor.options(
        name=actor_name(config.memory_dir),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_gpus=config.recall.embedding_num_gpus,  # a GGUF embedding model on the GPU needs one in sight
    ).remote(config.model_dump(mode="json"))
