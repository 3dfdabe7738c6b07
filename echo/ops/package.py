"""`package`: the zip the owner uploads to a RunPod pod (no git there).

What goes in is listed (the application, configs, manifest, the launcher, the cluster
config, the requirements, the README, an empty memory/); everything else stays out, the
owner's conversations above all unless asked for. The same tree always gives the same
bytes: entries in sorted order, one fixed timestamp, normalized permissions, one
compression level.
"""

from __future__ import annotations

import fnmatch
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from echo.brain.users import TOKEN_ENV, origin_token

INCLUDED = (
    "echo",
    "actors",
    "pipelines",
    "web",
    "configs",
    "manifest",
    "scripts",
    "serve_app.py",
    "echo_cli.py",
    "pyproject.toml",
    "Makefile",
    "README.md",
    "docs",
    "ray_cluster.yaml",
    "runpod_launcher.sh",
)
# Never packed, wherever they are: caches, secrets, version control, notes.
EXCLUDED = (
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".git",
    ".gitignore",
    ".DS_Store",
    "*.swp",
    "NOTES*",
    "notes",
    "*.orig",
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    ".netrc",
    ".pypirc",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_ed25519*",
    "facts.jsonl",  # what Echo knows about people: the owner's data, like memory/
)
MEMORY = "memory"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's first representable moment


class PackageError(RuntimeError):
    """The zip was not written; the message says why and what to do."""


@dataclass(frozen=True)
class Packed:
    path: Path
    files: int
    size: int


def _excluded(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in EXCLUDED)


def package_files(root: Path, with_memory: bool = False) -> list[str]:
    """The relative paths that go into the zip, sorted; folders end with '/'."""
    found: list[str] = []

    def walk(relative: str) -> Iterator[str]:
        path = root / relative
        if path.is_symlink() or _excluded(path.name):
            return
        if path.is_file():
            yield relative
        elif path.is_dir():
            for child in sorted(os.listdir(path)):
                yield from walk(f"{relative}/{child}")

    for name in INCLUDED:
        found.extend(walk(name))
    found.append(f"{MEMORY}/")  # an empty memory/: Echo fills it
    if with_memory:
        found.extend(walk(MEMORY))
    return sorted(found)


def _entry(name: str, source: Path | None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.create_system = 3  # Unix, so the permissions below are read
    if name.endswith("/"):
        info.external_attr = (0o40755 << 16) | 0x10
    else:
        executable = source is not None and os.access(source, os.X_OK)
        info.external_attr = (0o100755 if executable else 0o100644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
    return info


def build_package(root: Path, out: Path, with_memory: bool = False, on_file: Callable[[str], object] | None = None) -> Packed:
    """Write the zip of root to out (atomically); the same tree gives the same bytes."""
    names = package_files(root, with_memory)
    # The owner's token may sit in a file under any name: the zip never carries it. (One of
    # under 8 characters would turn up by chance in ordinary files, so it is not looked for.)
    token = (origin_token() or "").encode("utf-8", "surrogatepass")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for name in names:
                source = None if name.endswith("/") else root / name
                data = b"" if source is None else source.read_bytes()
                if len(token) >= 8 and token in data:
                    raise PackageError(
                        f"{name} holds the value of ${TOKEN_ENV}: take the token out of it (keep it in .env, which is never packed), then package again"
                    )
                archive.writestr(_entry(f"echo/{name}", source), data, compresslevel=9)
                if on_file is not None:
                    on_file(name)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, out)
    return Packed(out, sum(1 for n in names if not n.endswith("/")), out.stat().st_size)
