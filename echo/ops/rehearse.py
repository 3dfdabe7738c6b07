"""`rehearse`: a deployment's config booted on this machine before paying for its hardware.

The config is kept as it is (its merge, slots, contexts, embedder, distiller, resources)
except for what this machine cannot have, and each change is a note the command prints:
every GGUF that is missing is replaced by the embedded SmolLM2, GPU shares and layers go to
zero, it listens on 127.0.0.1 at a free port, answers are capped at a few tokens (SmolLM2 on
a CPU), and its memory, projects and facts are a fresh folder (the owner's are never
touched). Then one question for each route, and what worked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from echo.config import EMBEDDED_MODEL, MEMORY_HOME, EchoConfig, fit_to_hardware

SHORT_ANSWERS = 48  # tokens: a rehearsal checks that every route answers, not what it says


@dataclass(frozen=True)
class Check:
    route: str
    ok: bool
    detail: str


def rehearsal_config(config: EchoConfig, home: Path, port: int, max_tokens: int = SHORT_ANSWERS) -> tuple[EchoConfig, list[str]]:
    """The config as this machine can boot it, and a note for each thing changed."""
    notes = []
    circuits = {}
    for name, circuit in config.circuits.items():
        changes: dict = {"max_tokens": min(circuit.max_tokens, max_tokens)}
        if circuit.engine == "llama" and circuit.model != EMBEDDED_MODEL and not Path(circuit.model).is_file():
            changes["model"] = EMBEDDED_MODEL
            notes.append(f"circuit {name}: {circuit.model} is not here: the embedded SmolLM2 stands in for it")
        circuits[name] = circuit.model_copy(update=changes)
    recall = config.recall
    if recall.embedding_model.endswith(".gguf") and not Path(recall.embedding_model).is_file():
        notes.append(f"recall: {recall.embedding_model} is not here: Echo's own fallback, the bundled e5-small on the CPU, embeds (as on a pod without it)")
    rehearsed = config.model_copy(
        update={
            "circuits": circuits,
            "host": "127.0.0.1",
            "port": port,
            "memory_dir": home / "memory",
            "backup_dir": home / "memory_backup",
            "quarantine_dir": home / "memory_quarantine",
            "index_dir": home / "memory_index",
            "facts_dir": home / "memory_facts",
            "projects_dir": home / "projects",
        }
    )
    rehearsed, hardware = fit_to_hardware(rehearsed, 0)
    notes += hardware
    notes.append(f"answers capped at {max_tokens} tokens (the stand-in runs on the CPU); a project's JSON keeps projects.max_tokens")
    notes.append(f"listening on 127.0.0.1:{port}, not {config.host}:{config.port}; memory, facts and projects in {home}, not the config's")
    return rehearsed, notes


def ray_resources(config: EchoConfig) -> dict[str, float]:
    """The custom resources a single node must offer for every replica the config places on a
    cluster's nodes (cluster.yaml's circuits need `echo_circuits`, its brain `memory_home`)."""
    needed: dict[str, float] = {}
    for circuit in config.circuits.values():
        replicas = circuit.autoscaling.min_replicas if circuit.autoscaling else circuit.replicas or 1
        for name, amount in circuit.resources.items():
            needed[name] = needed.get(name, 0.0) + amount * replicas
    for name, amount in config.brain_resources.items():
        needed[name] = needed.get(name, 0.0) + amount * config.brain_replicas
    needed[MEMORY_HOME] = max(needed.get(MEMORY_HOME, 0.0), 1.0)  # the memory's actors live here too
    return needed


Post = Callable[[str, dict, str | None], dict]  # path, JSON body, bearer token -> the answer's JSON (raises on an HTTP error)


def run_checks(post: Post, token: str) -> list[Check]:
    """One question for each route, as the owner: identity, the circuits, a project, and a
    conversation's second turn (which must carry the first)."""
    checks = []

    def ask(route: str, prompt: str, want: Callable[[dict], str | None], conversation: str | None = None) -> dict | None:
        body = {"prompt": prompt, **({"conversation": conversation} if conversation else {})}
        try:
            answer = post("/api/ask", body, token)
        except Exception as exc:
            checks.append(Check(route, False, f"{type(exc).__name__}: {exc}"[:300]))
            return None
        problem = want(answer)
        checks.append(Check(route, problem is None, problem or _summary(answer)))
        return answer

    def routed(name: str) -> Callable[[dict], str | None]:
        def want(answer: dict) -> str | None:
            if answer.get("route") != name:
                return f"took the {answer.get('route')!r} path, not {name!r}"
            if answer.get("failed"):
                return f"circuits failed: {', '.join(answer['failed'])}"
            return None if answer.get("reply") else "an empty reply"

        return want

    ask("identity", "Who are you?", routed("identity"))
    first = ask("circuits", "I am planning a trip to Jeju next week.", routed("circuits"))
    ask("project", "make me a tiny todo app", lambda a: routed("create_project")(a) or (None if a.get("project") else "no project was written"))
    if first is not None:
        ask(
            "conversation",
            "Where am I going?",
            lambda a: (
                routed("circuits")(a)
                or (None if len(a.get("context") or []) == 1 else f"the second turn carried {len(a.get('context') or [])} exchanges, not 1")
            ),
            first.get("conversation"),
        )
    return checks


def _summary(answer: dict) -> str:
    reply = " ".join(str(answer.get("reply", "")).split())
    return f"{answer.get('route')}: {reply[:70]!r}" + (f" (project {answer['project']['name']!r})" if answer.get("project") else "")
