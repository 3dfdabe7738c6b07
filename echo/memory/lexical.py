"""The lexical half of memory search: BM25 over Korean syllable bigrams and English stems.

Korean words change their endings ("고양이를", "고양이가", "고양이랑"), so whole words
rarely match; overlapping syllable bigrams do ("고양", "양이"). tantivy cuts every text
into one- and two-character grams in Rust (the query keeps only its Hangul pairs and lone
syllables, so the other grams are never asked for); English words are stemmed. tantivy keeps the index on disk, scores with BM25 and updates by document id,
so replaying one part touches only that part's turns.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import tantivy

_HANGUL_PAIR = re.compile(r"(?=([가-힣]{2}))")
_HANGUL_SINGLE = re.compile(r"(?<![가-힣])[가-힣](?![가-힣])")
_SCHEMA_VERSION = "4"  # bump when the fields change: an older index is then rebuilt
TURNS_DIR = "lexical"  # the index of the turns, in replay's index folder


def hangul_terms(text: str) -> list[str]:
    """The Korean terms of a query: every syllable pair, and the syllables that stand alone."""
    return _HANGUL_PAIR.findall(text) + _HANGUL_SINGLE.findall(text)


def overlap(query: str, texts: list[str]) -> list[int]:
    """How many of the query's terms each text holds: a session's turns ordered by what the
    question asks when no ranking reached them."""
    wanted = set(hangul_terms(query)) | set(_WORDS.analyze(query))
    return [len(wanted & (set(hangul_terms(t)) | set(_WORDS.analyze(t)))) for t in texts]


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    builder.add_text_field("user", tokenizer_name="raw")
    builder.add_text_field("path", tokenizer_name="raw")  # the part: a search bounded in time asks only for some
    builder.add_text_field("ko", tokenizer_name="grams", index_option="freq")
    builder.add_text_field("en", tokenizer_name="words", index_option="freq")
    return builder.build()


# Latin words only (Korean text is skipped in Rust at no cost), lowercased, without
# English stop words, stemmed: "Cats" and "cat" match.
_WORDS = (
    tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(r"[A-Za-z0-9]+"))
    .filter(tantivy.Filter.remove_long(40))
    .filter(tantivy.Filter.lowercase())
    .filter(tantivy.Filter.stopword("english"))
    .filter(tantivy.Filter.stemmer("english"))
    .build()
)
_GRAMS = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.ngram(1, 2, False)).build()


class LexicalIndex:
    """A tantivy index of turns in folder; one writer at a time (the caller serializes)."""

    def __init__(self, folder: Path | None, fresh: bool = False):
        """Open the index in folder; a new empty one (created=True) when fresh, absent or
        outdated; with no folder, a new one in memory (an index derived from a small store)."""
        self.folder = folder
        self.created = folder is None or fresh or not self.exists(folder)
        if self.created and folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            (folder / "VERSION").write_text(_SCHEMA_VERSION)
        self.schema = _schema()
        self.index = tantivy.Index(self.schema, path=str(folder)) if folder is not None else tantivy.Index(self.schema)
        self.index.register_tokenizer("grams", _GRAMS)
        self.index.register_tokenizer("words", _WORDS)

    @staticmethod
    def exists(folder: Path) -> bool:
        version = folder / "VERSION"
        return version.is_file() and version.read_text().strip() == _SCHEMA_VERSION

    def update(self, add: Iterable[dict], delete: Iterable[str], upsert: bool = True, threads: int = 1) -> int:
        """Delete turns by id and add turns ({id, user, text, path}); one commit. Returns adds.

        upsert deletes each added id first, so replaying the same turns twice leaves one copy.
        """
        writer = self.index.writer(heap_size=64_000_000, num_threads=threads)
        for turn_id in delete:
            writer.delete_documents("id", turn_id)
        added = 0
        for turn in add:
            if upsert:
                writer.delete_documents("id", turn["id"])
            writer.add_document(tantivy.Document(id=turn["id"], user=turn["user"], path=turn["path"], ko=turn["text"], en=turn["text"]))
            added += 1
        writer.commit()
        self.index.reload()
        return added

    def search(self, query: str, k: int, user: str | None = None, paths: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """(id, BM25 score), best first; only user's when user is given, only in these parts when paths is."""
        terms = [("ko", t) for t in hangul_terms(query)] + [("en", t) for t in _WORDS.analyze(query)]
        if not terms or k <= 0:
            return []
        should = [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, field, term)) for field, term in terms]
        must = [(tantivy.Occur.Must, tantivy.Query.boolean_query(should))]
        # Filters score nothing: a rarer user or part must not rank higher.
        for field, values in (("user", None if user is None else [user]), ("path", None if paths is None else list(paths))):
            if values is not None:
                if not values:
                    return []
                must.append((tantivy.Occur.Must, tantivy.Query.const_score_query(tantivy.Query.term_set_query(self.schema, field, values), 0.0)))
        query_ = must[0][1] if len(must) == 1 else tantivy.Query.boolean_query(must)
        searcher = self.index.searcher()
        hits = searcher.search(query_, k).hits
        return [(searcher.doc(address)["id"][0], score) for score, address in hits]

    def count(self) -> int:
        return self.index.searcher().num_docs
