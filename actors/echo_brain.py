"""EchoBrain: the Serve ingress. It wires deployment handles into echo.brain.brain.Brain and
serves echo.http.app's FastAPI app."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from actors import metrics
from actors.memory_actor import memory_actor
from actors.watchdog_actor import watchdog_actor
from echo.brain import users
from echo.brain.brain import Brain
from echo.brain.identity import IdentitySource
from echo.config import EchoConfig
from echo.http.app import create_api
from echo.llm.completion import Completion, Messages

log = logging.getLogger("ray.serve")


def _cause(exc: RayTaskError) -> Exception:
    # The remote code's own exception says what went wrong; Ray's wrapper only where.
    return exc.cause if isinstance(exc.cause, Exception) else RuntimeError(str(exc).splitlines()[-1])


class HandleCircuit:
    """echo.brain.fanout.Circuit over a Serve deployment handle."""

    def __init__(self, handle: DeploymentHandle):
        self.handle = handle

    async def generate(self, messages: Messages, **options: Any) -> Completion:
        response = self.handle.generate.remote(messages, **options)
        try:
            return await response
        except RayTaskError as exc:
            raise _cause(exc) from None
        except BaseException:
            response.cancel()  # a timed-out caller stops the replica's generation too
            raise

    async def stream(self, messages: Messages, **options: Any):
        tokens = self.handle.options(stream=True).stream.remote(messages, **options)
        try:
            async for item in tokens:
                yield item
        except RayTaskError as exc:
            raise _cause(exc) from None
        finally:
            tokens.cancel()  # stopped early (a timeout, a client gone): the replica stops generating

    async def state(self) -> dict:
        return await self.handle.state.remote()


class ActorMemory:
    """echo.brain.memories.MemorySink over the MemoryActor (and its watchdog, for /health)."""

    def __init__(self, actor, watchdog):
        self.actor, self.watchdog = actor, watchdog

    async def save(self, user: str, prompt: str, reply: str, conversation: str | None = None) -> dict:
        try:
            return await self.actor.save.remote(user, prompt, reply, conversation)
        except RayTaskError as exc:  # e.g. OSError: [Errno 28] No space left on device
            raise _cause(exc) from None

    async def conversation(self, user: str, key: str, last: int) -> list:
        return await self.actor.conversation.remote(user, key, last)

    async def conversation_list(self, user: str | None, limit: int, offset: int) -> dict | None:
        return await self.actor.conversation_list.remote(user, limit, offset)

    async def conversation_read(self, key: str, user: str | None) -> dict | None:
        return await self.actor.conversation_read.remote(key, user)

    async def search(self, query: str, k: int, user: str | None, mode: str, since: str | None = None, before: str | None = None) -> list[dict]:
        return await self.actor.search.remote(query, k, user, mode, since, before)

    async def insights(self) -> dict | None:
        return await self.actor.insights.remote()

    async def facts(self, operation: str, **arguments) -> dict:
        return await self.actor.facts.remote(operation, **arguments)

    async def status(self) -> dict:
        status = await self.actor.status.remote()
        try:
            status["watchdog"] = await asyncio.wait_for(self.watchdog.status.remote(), 2)
        except Exception as exc:  # restarting: Ray brings it back
            status["watchdog"] = {"state": "unreachable", "reason": f"{type(exc).__name__}: {exc}"}
        return status


def _measure(answer: dict) -> None:
    metrics.requests().inc(tags={"route": answer["route"]})
    if answer["degraded"]:
        metrics.requests_degraded().inc()


def _distill_target(config: EchoConfig, circuits: dict[str, DeploymentHandle]) -> tuple[str, str] | None:
    """(app, deployment) of the circuit the MemoryActor's distiller writes facts with."""
    if not config.distill.enabled:
        return None
    handle = circuits[config.distill.circuit]
    return serve.get_replica_context().app_name, handle.deployment_name


@serve.deployment(name="EchoBrain")
@serve.ingress()
class EchoBrain:
    def __init__(self, config: dict, circuits: dict[str, DeploymentHandle]):
        self.config = EchoConfig.model_validate(config)
        identity = IdentitySource(self.config.manifest_dir)
        if identity.error:
            log.error("manifest not loaded, using a minimal identity: %s", identity.error)
        self.brain = Brain(
            self.config,
            circuits={name: HandleCircuit(handle) for name, handle in circuits.items()},
            memory=ActorMemory(self._memory_actor(circuits), watchdog_actor(self.config)),
            identity=identity,
            token=users.origin_token(),
            on_answer=_measure,
        )

    def _memory_actor(self, circuits: dict[str, DeploymentHandle]):
        """The MemoryActor, told which circuit to distill with even when someone else created it."""
        target = _distill_target(self.config, circuits)
        actor = memory_actor(self.config, target)
        if target is not None:
            actor.distill_with.remote(target)  # not awaited: the ingress starts meanwhile
        return actor

    def __serve_build_asgi_app__(self):
        return create_api(lambda: self.brain, limits=self.config)
