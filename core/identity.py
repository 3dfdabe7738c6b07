"""Echo's identity: the declarations in manifest/*.txt, read in name order."""

from __future__ import annotations

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


class IdentitySource:
    """The current identity; a bad manifest keeps the previous one and records why."""

    def __init__(self, manifest_dir: Path):
        self.manifest_dir = manifest_dir
        self.current: Identity = FALLBACK
        self.error: str | None = None
        self.reload()

    def reload(self) -> bool:
        try:
            self.current, self.error = load_identity(self.manifest_dir), None
            return True
        except ManifestError as exc:
            self.error = str(exc)
            return False

    def status(self) -> dict:
        return {"files": list(self.current.files), "error": self.error}
