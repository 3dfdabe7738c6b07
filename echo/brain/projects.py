"""create_project: a project spec from the creation circuit, checked, then written atomically."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from echo.config import ProjectLimits

# The creation circuit must answer in this shape; llama-cpp-python turns it into a grammar.
# Short fields are length-bounded in the grammar; long ones (llama.cpp caps how far a grammar
# may repeat) are bounded by the circuit's max_tokens, and a cut-off answer is refused as such.
PROJECT_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 60},
        "description": {"type": "string"},
        "files": {
            "type": "array",
            "minItems": 1,
            "maxItems": 6,
            "items": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "pattern": "^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+){0,3}[.][A-Za-z0-9]{1,5}$"},
                    "content": {"type": "string"},
                },
                "required": ["path", "content"],
            },
        },
    },
    "required": ["name", "description", "files"],
}

PROJECT_INSTRUCTIONS = (
    "Design the small project the owner asks for, with short files. Answer only with JSON: "
    '{"name": short name, "description": one paragraph, '
    '"files": [{"path": relative path such as "src/main.py", "content": file text}]}.'
)

# Names Windows refuses whatever the extension (superscript digits count as digits there, and
# the console's own names too); refused everywhere so a project can be copied anywhere.
_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    "conin$",
    "conout$",
    *(f"{port}{digit}" for port in ("com", "lpt") for digit in [*"0123456789", "¹", "²", "³"]),
}
_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\]')
# Invisible or misleading in a listing: C1 controls, format characters (zero-width, bidi
# overrides that turn "txt.exe" around), line and paragraph separators, lone surrogates.
_HIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}
_NAME_BYTES = 255  # the longest file name most file systems store, in bytes


class ProjectError(ValueError):
    """A project that cannot be written, with the reason; status is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ProjectFile:
    path: str
    content: str


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    description: str
    files: tuple[ProjectFile, ...]


@dataclass(frozen=True)
class CreatedProject:
    name: str
    slug: str
    path: Path
    files: tuple[str, ...]


def parse_project(text: str) -> ProjectSpec:
    """Read the circuit's JSON answer; anything off-shape is a ProjectError naming the problem."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ProjectError(
            "the creation circuit's answer is not complete JSON (fix: ask again, or raise circuits.creation.max_tokens so the answer is not cut off)",
            status=502,
        ) from None
    if not isinstance(data, dict):
        raise ProjectError("the project must be a JSON object with name, description and files", 502)
    name, description, files = data.get("name"), data.get("description", ""), data.get("files")
    if not isinstance(name, str) or not name.strip():
        raise ProjectError("the project has no name", 502)
    if not isinstance(description, str):
        raise ProjectError("the project's description must be text", 502)
    if not isinstance(files, list) or not files:
        raise ProjectError("the project lists no files", 502)
    parsed = []
    for index, item in enumerate(files):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(item.get("content"), str):
            raise ProjectError(f"files[{index}] must be an object with text fields path and content", 502)
        parsed.append(ProjectFile(path=item["path"], content=item["content"]))
    return ProjectSpec(name=name.strip(), description=description.strip(), files=tuple(parsed))


def slugify(name: str) -> str:
    """A folder name from the project name: letters (Hangul too), digits and single hyphens."""
    text = unicodedata.normalize("NFC", name).lower()
    slug = re.sub(r"[^\w]+", "-", text, flags=re.UNICODE).strip("-_")[:60].strip("-_")
    if not slug or slug in _RESERVED:
        slug = f"project-{slug}" if slug else "project"
    return slug


def safe_relative_path(raw: str) -> PurePosixPath:
    """A file path inside the project, or a ProjectError saying why it is refused."""
    if not raw or raw != raw.strip():
        raise ProjectError(f"file path {raw!r} is empty or has surrounding spaces")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise ProjectError(f"file path {raw!r} is absolute; only paths inside the project are allowed")
    if _BAD_CHARS.search(raw):
        raise ProjectError(f'file path {raw!r} has a character that is not allowed in file names (\\ : * ? " < > | or a control character)')
    if hidden := next((c for c in raw if unicodedata.category(c) in _HIDDEN_CATEGORIES), None):
        raise ProjectError(f"file path {raw!r} has the invisible character U+{ord(hidden):04X}; use visible characters only")
    for part in raw.split("/"):  # the raw segments: PurePosixPath would quietly drop "." and ""
        if part in ("..", ".", ""):
            raise ProjectError(f"file path {raw!r} uses {part!r} as a name; only plain paths inside the project are allowed")
    path = PurePosixPath(raw)
    for part in path.parts:
        stem = part.split(".")[0].rstrip(" ").lower()  # Windows reads "con .txt" as CON too
        if stem in _RESERVED:
            raise ProjectError(f"file path {raw!r} uses {part!r}, a name reserved on Windows")
        if part.endswith((" ", ".")):
            raise ProjectError(f"file path {raw!r} has a name ending in a space or dot, which Windows cannot store")
        if part != part.strip():
            raise ProjectError(f"file path {raw!r} has a name with surrounding spaces")
        if part.lower() == ".git":  # a planted .git/config can run commands when git is used in the folder
            raise ProjectError(f"file path {raw!r} writes into .git, which a project may not bring: git runs what .git/config says")
        if len(part.encode("utf-8")) > _NAME_BYTES:
            raise ProjectError(f"file path {raw!r} has a name longer than {_NAME_BYTES} bytes, which file systems cannot store")
    if len(path.parts) > 12 or len(raw) > 240:
        raise ProjectError(f"file path {raw!r} is too deep or too long")
    return path


def _same_name(path: PurePosixPath) -> str:
    """One key per name a file system may treat as the same: case and Unicode form aside."""
    return unicodedata.normalize("NFC", str(path)).casefold()


def check_project(spec: ProjectSpec, limits: ProjectLimits) -> list[tuple[PurePosixPath, bytes]]:
    """Validate every path and the size limits before anything touches the disk."""
    if len(spec.files) > limits.max_files:
        raise ProjectError(f"the project has {len(spec.files)} files; the limit is {limits.max_files} (projects.max_files)")
    name_limit = PROJECT_SCHEMA["properties"]["name"]["maxLength"]
    if len(spec.name) > name_limit:
        raise ProjectError(f"the project's name has {len(spec.name)} characters; the limit is {name_limit}")
    if len(spec.description.encode("utf-8", "replace")) > limits.max_file_bytes:  # it becomes the README
        raise ProjectError(f"the project's description is longer than {limits.max_file_bytes} bytes (projects.max_file_bytes)")
    checked, seen, total = [], set(), 0
    for item in spec.files:
        path = safe_relative_path(item.path)
        key = _same_name(path)
        if key in seen:
            raise ProjectError(f"file path {item.path!r} appears twice")
        seen.add(key)
        data = item.content.encode("utf-8", "replace")
        if len(data) > limits.max_file_bytes:
            raise ProjectError(f"{item.path} is {len(data)} bytes; the limit is {limits.max_file_bytes} (projects.max_file_bytes)")
        total += len(data)
        checked.append((path, data))
    if total > limits.max_bytes:
        raise ProjectError(f"the project is {total} bytes; the limit is {limits.max_bytes} (projects.max_bytes)")
    for path, _ in checked:  # a file cannot also be a folder: "a" and "a/b" together
        for parent in path.parents:
            if _same_name(parent) in seen:
                raise ProjectError(f"{parent} is both a file and a folder")
    return checked


def tree_listing(paths: list[str]) -> str:
    """The files as an indented tree, each folder once, followed by what it holds."""
    lines: list[str] = []
    shown: set[tuple[str, ...]] = set()
    for path in sorted(paths, key=lambda p: PurePosixPath(p).parts):
        parts = PurePosixPath(path).parts
        for depth in range(len(parts) - 1):
            if parts[: depth + 1] not in shown:
                shown.add(parts[: depth + 1])
                lines.append("    " * depth + parts[depth] + "/")
        lines.append("    " * (len(parts) - 1) + parts[-1])
    return "\n".join(lines)


def _readme(spec: ProjectSpec, paths: list[str], own_readme: bytes | None) -> bytes:
    head = own_readme.decode("utf-8") if own_readme is not None else f"# {spec.name}\n\n{spec.description}\n"
    return (head.rstrip("\n") + "\n\n## Files\n\n```\n" + tree_listing(paths) + "\n```\n").encode("utf-8")


def write_project(spec: ProjectSpec, projects_dir: Path, limits: ProjectLimits) -> CreatedProject:
    """Write the project under projects_dir/<slug>/ all at once, never over an existing one."""
    checked = check_project(spec, limits)
    slug = slugify(spec.name)
    projects_dir.mkdir(parents=True, exist_ok=True)
    root = projects_dir.resolve()
    final = root / slug
    if final.exists() or final.is_symlink():
        raise ProjectError(f"a project named {slug!r} already exists at {final}; Echo never overwrites one (fix: ask for another name)", 409)
    readme = next((data for path, data in checked if str(path).lower() == "readme.md"), None)
    files = [(p, d) for p, d in checked if str(p).lower() != "readme.md"]
    listed = sorted(["README.md", *(str(p) for p, _ in files)])
    # Build in a hidden sibling, then rename: a project appears whole or not at all.
    staging = Path(tempfile.mkdtemp(prefix=f".{slug}.", dir=root))
    try:
        for path, data in [(PurePosixPath("README.md"), _readme(spec, listed, readme)), *files]:
            target = (staging / path).resolve()
            if not target.is_relative_to(staging.resolve()):  # belt and braces after safe_relative_path
                raise ProjectError(f"file path {path} leaves the project folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as handle:  # x: never follow or replace anything already there
                handle.write(data)
        os.rename(staging, final)  # fails if another request created it meanwhile (non-empty)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if final.exists():
            raise ProjectError(f"a project named {slug!r} already exists at {final}", 409) from None
        raise ProjectError(f"the project could not be written: {exc.strerror or exc}", 500) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return CreatedProject(name=spec.name, slug=slug, path=final, files=tuple(listed))
