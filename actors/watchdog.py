"""WatchdogActor: watches memory/ and manifest/ and keeps Echo up to date with them.

A named Ray actor that Ray restarts if it dies. A change under memory/ (a part created,
grown, rewritten, moved into place or deleted, a day folder dropped in) nudges the
MemoryActor, whose replay reconciles the index with the files on disk: at start the
watchdog nudges once, so whatever was written while nobody watched is taken in too.
A change under manifest/ is checked and logged; each EchoBrain replica takes the new
identity at its next request (core.identity.IdentitySource.refresh).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import ray
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from actors import metrics
from actors.memory import NAMESPACE, home_resources, memory_actor
from core.config import EchoConfig
from core.identity import IdentitySource
from core.watch import IGNORED_EVENTS, Coalescer, is_manifest_path, is_memory_path

log = logging.getLogger("echo.watchdog")


class _Handler(FileSystemEventHandler):
    def __init__(self, relevant, react):
        self.relevant, self.react = relevant, react

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in IGNORED_EVENTS:
            return
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        if any(p and self.relevant(p) for p in paths):
            self.react()


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class WatchdogActor:
    def __init__(self, config: dict):
        c = EchoConfig.model_validate(config)
        self.memory_dir, self.manifest_dir = c.memory_dir, c.manifest_dir
        self.memory_dir.mkdir(parents=True, exist_ok=True)
        self.memory = memory_actor(c)
        self.identity = IdentitySource(self.manifest_dir)
        self.events = {"memory": 0, "manifest": 0}
        self.nudge = Coalescer(self._nudge_memory, name="nudge-memory")
        self.observer = Observer()
        self.observer.schedule(_Handler(lambda p: is_memory_path(p, self.memory_dir), self._memory_changed), str(self.memory_dir), recursive=True)
        if self.manifest_dir.is_dir():
            self.observer.schedule(_Handler(lambda p: is_manifest_path(p, self.manifest_dir), self._manifest_changed), str(self.manifest_dir))
        self.observer.start()
        self.nudge.poke()  # catch up with whatever changed while nobody watched
        log.info("watching %s and %s", self.memory_dir, self.manifest_dir)

    def _nudge_memory(self) -> None:
        try:
            ray.get(self.memory.notify.remote())
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError):
            # Restarting: it reconciles with the disk when it is back, so no nudge is lost.
            log.warning("memory actor restarting; it catches up with memory/ when it is back")

    def _memory_changed(self) -> None:
        self.events["memory"] += 1
        metrics.watch_events().inc(tags={"folder": "memory"})
        self.nudge.poke()

    def _manifest_changed(self) -> None:
        self.events["manifest"] += 1
        metrics.watch_events().inc(tags={"folder": "manifest"})
        if self.identity.refresh():
            metrics.manifest_reloads().inc(tags={"outcome": "reloaded"})
            log.info("manifest changed: %s", ", ".join(self.identity.current.files))
        elif self.identity.error:
            metrics.manifest_reloads().inc(tags={"outcome": "kept_previous"})
            log.error("manifest changed but cannot be used, the previous identity stays: %s", self.identity.error)

    def status(self) -> dict:
        return {
            "state": "watching" if self.observer.is_alive() else "stopped",
            "events": dict(self.events),
            "memory_updates_requested": self.nudge.calls,
            "manifest": self.identity.status(),
        }


def watchdog_name(memory_dir: Path) -> str:
    return f"WatchdogActor-{hashlib.sha1(str(memory_dir).encode()).hexdigest()[:8]}"


def watchdog_actor(config: EchoConfig):
    """The memory folder's watchdog: created on first use, then found by name."""
    return WatchdogActor.options(
        name=watchdog_name(config.memory_dir), namespace=NAMESPACE, lifetime="detached", get_if_exists=True, resources=home_resources()
    ).remote(config.model_dump(mode="json"))
