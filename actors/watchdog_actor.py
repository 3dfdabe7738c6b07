"""WatchdogActor: watches memory/ and manifest/ and keeps Echo up to date with them.

A named Ray actor that Ray restarts if it dies. A change under memory/ (a part created,
grown, rewritten, moved into place or deleted, a day folder dropped in) nudges the
MemoryActor, whose replay reconciles the index with the files on disk: at start the
watchdog nudges once, so whatever was written while nobody watched is taken in too.
Echo's own saves, which the MemoryActor tells it of (expect), nudge nobody.
A change under manifest/ is checked and logged; each EchoBrain replica takes the new
identity at its next request (echo.brain.identity.IdentitySource.refresh).
"""

from __future__ import annotations

import logging
import threading

import ray
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from actors import metrics
from actors.memory_actor import NAMESPACE, actor_name, home_resources, watchdog_name
from echo.brain.identity import IdentitySource
from echo.config import EchoConfig
from echo.memory.watch import IGNORED_EVENTS, Coalescer, OwnWrites, is_manifest_path, is_memory_path

log = logging.getLogger("echo.watchdog")

OWN_WRITE_DELAY_S = 0.1


class _Handler(FileSystemEventHandler):
    def __init__(self, relevant, react):
        self.relevant, self.react = relevant, react

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in IGNORED_EVENTS:
            return
        paths = {p for p in (event.src_path, getattr(event, "dest_path", "") or "") if p and self.relevant(p)}
        if paths:
            self.react(paths)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class WatchdogActor:
    def __init__(self, config: dict):
        c = EchoConfig.model_validate(config)
        self.memory_dir, self.manifest_dir = c.memory_dir, c.manifest_dir
        self.memory_dir.mkdir(parents=True, exist_ok=True)
        self._memory = None  # the MemoryActor, found by name when first needed (see memory)
        self.identity = IdentitySource(self.manifest_dir)
        self.events = {"memory": 0, "manifest": 0}
        # Echo's own saves are told (expect) right after they are written; a moment's delay lets
        # that word arrive before the events are judged.
        self.own_writes = OwnWrites(self.memory_dir)
        self.changed: set[str] = set()
        self._changed_lock = threading.Lock()
        self.catch_up = True
        self.own_saves_seen = 0
        self.nudge = Coalescer(self._nudge_memory, name="nudge-memory", delay=OWN_WRITE_DELAY_S)
        self.observer = Observer()
        self.observer.schedule(_Handler(lambda p: is_memory_path(p, self.memory_dir), self._memory_changed), str(self.memory_dir), recursive=True)
        if self.manifest_dir.is_dir():
            self.observer.schedule(_Handler(lambda p: is_manifest_path(p, self.manifest_dir), self._manifest_changed), str(self.manifest_dir))
        self.observer.start()
        self.nudge.poke()  # catch up with whatever changed while nobody watched
        log.info("watching %s and %s", self.memory_dir, self.manifest_dir)

    @property
    def memory(self):
        """The folder's MemoryActor. Found, never created: the brain creates it with what only
        the brain knows (the distiller's circuit), and a creation racing that one could win."""
        if self._memory is None:
            self._memory = ray.get_actor(actor_name(self.memory_dir), namespace=NAMESPACE)
        return self._memory

    def expect(self, path: str, size: int, mtime_ns: int) -> None:
        """The MemoryActor just saved path, leaving it at this size and mtime."""
        self.own_writes.expect(path, size, mtime_ns)

    def _nudge_memory(self) -> None:
        with self._changed_lock:
            paths, self.changed = self.changed, set()
        if not self.catch_up and not self._changed_by_others(paths):
            self.own_saves_seen += 1  # only Echo's own saves: the MemoryActor knows them already
            return
        where = None if self.catch_up else sorted(paths)  # at start, anything may have changed
        self.catch_up = False
        try:
            ray.get(self.memory.notify.remote(where))
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError, ValueError):
            # Restarting or not yet created: it reconciles with the disk when it is up, so no nudge is lost.
            log.warning("memory actor not up; it catches up with memory/ when it is")

    def _changed_by_others(self, paths: set[str]) -> bool:
        if not self.own_writes.foreign(paths):
            return False
        # A busy moment can delay a save's word (expect) past this check: ask the writer itself.
        try:
            return not ray.get(self.memory.written_by_me.remote(sorted(paths)), timeout=5)
        except Exception:  # unreachable or restarting: nudging is only redundant
            return True

    def _memory_changed(self, paths: set[str]) -> None:
        with self._changed_lock:
            self.changed |= paths
        self.events["memory"] += 1
        metrics.watch_events().inc(tags={"folder": "memory"})
        self.nudge.poke()

    def _manifest_changed(self, _paths: set[str]) -> None:
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
            "memory_updates_requested": self.nudge.calls - self.own_saves_seen,
            "own_saves_seen": self.own_saves_seen,
            "manifest": self.identity.status(),
        }


def watchdog_actor(config: EchoConfig):
    """The memory folder's watchdog: created on first use, then found by name."""
    return WatchdogActor.options(
        name=watchdog_name(config.memory_dir), namespace=NAMESPACE, lifetime="detached", get_if_exists=True, resources=home_resources()
    ).remote(config.model_dump(mode="json"))
