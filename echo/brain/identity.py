"""Echo's identity: the declarations in manifest/*.txt, read in name order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Identity:
    text: str
    files: tuple[str, ...]

    @property
    def declaration(self) -> str:
        """The first paragraph: what Echo says first when asked who it is."""
        return self.text.split("\n\n", 1)[0].strip()


FALLBACK = Identity(text="I am Echo, a persona server that remembers.", files=())


class ManifestError(ValueError):
    pass


def load_identity(manifest_dir: Path) -> Identity:
    """Join every *.txt declaration in name order; raise ManifestError when none is usable."""
    if not manifest_dir.is_dir():
        raise ManifestError(f"manifest folder {manifest_dir} does not exist (fix: create it with *.txt declarations)")
    paths = sorted(p for p in manifest_dir.glob("*.txt") if p.is_file())
    if not paths:
        raise ManifestError(f"no *.txt declarations in {manifest_dir} (fix: add at least one, e.g. 00_echo.txt)")
    parts = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            raise ManifestError(f"{path} is not UTF-8 text (fix: save it as UTF-8)") from None
        except OSError as exc:
            raise ManifestError(f"{path} cannot be read: {exc.strerror}") from None
        if text:
            parts.append(text)
    if not parts:
        raise ManifestError(f"every declaration in {manifest_dir} is empty (fix: write who Echo is in one)")
    return Identity(text="\n\n".join(parts), files=tuple(p.name for p in paths))


def manifest_signature(manifest_dir: Path) -> tuple:
    """What the declarations look like on disk (names, sizes, mtimes): cheap to take per request."""
    try:
        return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(manifest_dir) if e.name.endswith(".txt")))
    except OSError as exc:
        return (("<unreadable>", exc.errno),)


class IdentitySource:
    """The current identity, reloaded when the manifest changes on disk; a bad manifest keeps
    the previous identity and records why."""

    def __init__(self, manifest_dir: Path):
        self.manifest_dir = manifest_dir
        self.current: Identity = FALLBACK
        self.error: str | None = None
        self.reloads = 0
        self._signature: tuple | None = None
        self.refresh()

    def refresh(self) -> bool:
        """Reload when the files changed since the last look; True when a new identity was taken."""
        signature = manifest_signature(self.manifest_dir)
        if signature == self._signature:
            return False
        self._signature = signature
        return self.reload()

    def reload(self) -> bool:
        try:
            self.current, self.error = load_identity(self.manifest_dir), None
            self.reloads += 1
            return True
        except ManifestError as exc:
            self.error = str(exc)
            return False

    def status(self) -> dict:
        return {"files": list(self.current.files), "error": self.error}
