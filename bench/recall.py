"""Recall on real long conversations: RealMem session recall@5 and @10, and search speed at 300,000 lines.

    .venv/bin/python bench/recall.py [--realmem ../shared/devsets/realmem] [--workdir /tmp/echo-recall]
        [--personas NAME,...] [--speed-parts 760] [--skip-speed] [--facts [--speed-facts 30000]]

RealMem (Apache-2.0, read from the shared dev set folder, never copied into the project): 10
personas, each a list of user–assistant sessions with queries asked mid-conversation and the
earlier sessions each answer needs. Each persona is written as Echo memory in the owner's format
(a `dayMMDD` folder per date, a part per session, `나의 말:` / `ChatGPT의 말:`, each part's write
time on its session's date), replayed by Echo's own replay, embedded (vectors cached under the
work folder by turn hash) and searched as Echo searches, with `before` set to the query's session
so only what existed when it was asked can be found. Session recall@k: the share of a query's
gold sessions that have a turn among the first k found, by category.

Dates: in three files a few sessions' dates go backwards (most are stray 12-21s); the list order is
the true order, so such a session takes the date of the one before it.

Then the speed lines: a 300,000-line memory (bench/memory_gen.py) replayed and searched with every
stage on: p95 per mode, whether the recall timeout (3 s) was ever reached, and indexing lines/s.

With --facts, each session's own extracted_memory (the data set authors' memories, each with its
source_turn) is imported through Echo's `facts import` as facts citing that turn's lines: an
oracle distiller, to measure the facts layer apart from the model that would write them. The
RealMem lines are then the same search without and with the facts; the profile line gives what
the standing facts add to a system prompt in SmolLM2's tokens; and the speed lines are hybrid
search at 300,000 lines with 30,000 facts (worded from the turns they cite) against the same
search without them, taken in turn per query.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.common import percentile  # noqa: E402
from echo.memory.dense import query_text  # noqa: E402
from echo.memory.facts import MAX_TEXT_CHARS  # noqa: E402
from echo.memory.parsing import OLD_ASSISTANT_MARKER, USER_MARKER, marker_of  # noqa: E402

REALMEM = REPO.parent / "shared" / "devsets" / "realmem"
CATEGORIES = {"Dynamic Incremental": "incremental", "Implicit Preference": "preference", "Dynamic Updating": "updating", "Temporal-reasoning": "temporal"}
KS = (5, 10)
FACT_KINDS = {"Static": "profile", "Dynamic": "event", "Schedule": "plan"}  # RealMem's memory types as fact kinds


@dataclass
class Query:
    text: str
    category: str
    session: int  # its session's place in the persona's list
    asked_at: datetime  # its session's start: every earlier session was written before it
    gold: set[str]  # the earlier sessions (uuids) its answer needs
    evidence: set[tuple[str, int]] = field(default_factory=set)  # (session uuid, turn number) its gold memories came from


@dataclass
class Persona:
    name: str
    memory: Path
    index: Path
    session_of_path: dict[str, str] = field(default_factory=dict)  # part path -> session uuid
    turn_at: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)  # (path, first line) -> (uuid, turn number)
    order_of_session: dict[str, int] = field(default_factory=dict)
    queries: list[Query] = field(default_factory=list)
    turns: list[tuple[int, str, int, str]] = field(default_factory=list)  # (session, uuid, turn number, text), for the baseline
    facts: list[dict] = field(default_factory=list)  # the sessions' extracted_memory, as `facts import` lines


def _is_true(value) -> bool:
    return str(value) == "True"


def _body(text: str) -> list[str]:
    # A line that would read as a marker gets a leading space, as Echo's own saves do.
    return [f" {line}" if marker_of(line) else line for line in text.replace("\r\n", "\n").split("\n")]


def write_persona(source: Path, work: Path) -> Persona:
    """The persona's sessions as memory/dayMMDD/origin/partN.txt, rewritten only when they differ."""
    name = source.name.removesuffix("_dialogues_256k.json")
    persona = Persona(name, work / name / "memory", work / name / "index")
    dialogues = json.loads(source.read_text(encoding="utf-8"))["dialogues"]
    # A gold memory names the turn it was drawn from (source_turn, from 1), where it is one.
    source = {}
    for session in dialogues:
        count = len(session["dialogue_turns"])
        for memory in session.get("extracted_memory") or []:
            turn = memory.get("source_turn")
            if isinstance(turn, int) and 1 <= turn <= count:
                source[(session["session_uuid"], json.dumps(memory["content"]))] = turn - 1
    parts_that_day, previous = 0, date.min
    for number, session in enumerate(dialogues):
        when = max(date.fromisoformat(session["current_time"][:10]), previous)  # never backwards
        parts_that_day = parts_that_day + 1 if when == previous else 1
        previous = when
        start = datetime(when.year, when.month, when.day, 8, tzinfo=timezone.utc) + timedelta(minutes=10 * parts_that_day)
        relative = f"day{when:%m%d}/origin/part{parts_that_day}.txt"
        uuid = session["session_uuid"]
        persona.session_of_path[relative] = uuid
        persona.order_of_session[uuid] = number
        lines: list[str] = []
        turns = session["dialogue_turns"]
        starts = []
        for i, turn in enumerate(turns):
            persona.turn_at[(relative, len(lines) + 1)] = (uuid, i)
            starts.append(len(lines) + 1)
            lines += [USER_MARKER if turn["speaker"] == "User" else OLD_ASSISTANT_MARKER, *_body(turn["content"])]
            persona.turns.append((number, uuid, i, turn["content"]))
            if _is_true(turn.get("is_query")) and turn.get("category_name") in CATEGORIES:
                answer = turns[i + 1] if i + 1 < len(turns) else {}
                gold = {u for u in answer.get("memory_session_uuids") or [] if u != uuid}
                used = answer.get("memory_used") or []
                evidence = {(m["session_uuid"], source[key]) for m in used if (key := (m["session_uuid"], json.dumps(m["content"]))) in source}
                persona.queries.append(Query(turn["content"], CATEGORIES[turn["category_name"]], number, start, gold, evidence))
        for memory in session.get("extracted_memory") or []:
            turn = source.get((uuid, json.dumps(memory["content"])))
            text = memory["content"] if isinstance(memory["content"], str) else json.dumps(memory["content"], ensure_ascii=False)  # a few are records
            if len(text) > MAX_TEXT_CHARS:
                text = text[: MAX_TEXT_CHARS - 1] + "…"
            if turn is not None and text.strip():  # a fact cites the turn it was drawn from
                end = starts[turn + 1] - 1 if turn + 1 < len(starts) else len(lines)
                persona.facts.append(
                    {
                        "user": "origin",
                        "text": text,
                        "date": when.isoformat(),
                        "kind": FACT_KINDS.get(memory.get("type"), "other") if "prefer" not in text.lower() else "preference",
                        "cites": [{"path": relative, "line_start": starts[turn], "line_end": end}],
                    }
                )
        path = persona.memory / relative
        data = ("\n".join(lines) + "\n").encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        written = int((start + timedelta(minutes=5)).timestamp() * 1e9)  # its last line, before the next session starts
        if path.stat().st_mtime_ns != written:
            os.utime(path, ns=(written, written))
    # Gold sessions that come later than the query (none in this data, bar the three that name
    # the query's own session, dropped above) could not have been found.
    for q in persona.queries:
        q.gold = {u for u in q.gold if persona.order_of_session.get(u, 1 << 30) < q.session}
        q.evidence = {(u, n) for u, n in q.evidence if u in q.gold}
    persona.queries = [q for q in persona.queries if q.gold]
    return persona


class WordBM25:
    """The baseline: plain BM25 (k1 1.2, b 0.75) over lowercased words of whole turns."""

    def __init__(self, turns: list[tuple[int, str, int, str]]):
        self.turns = turns
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.lengths = []
        for doc, (_, _, _, text) in enumerate(turns):
            words = re.findall(r"\w+", text.lower())
            self.lengths.append(len(words))
            for word, count in Counter(words).items():
                self.postings[word].append((doc, count))

    def search(self, query: str, k: int, before_session: int) -> list[tuple[str, int]]:
        """(session, turn number) of the k best turns written before before_session."""
        n = sum(1 for s, _, _, _ in self.turns if s < before_session)
        if n == 0:
            return []
        average = sum(self.lengths[:n]) / n
        scores: dict[int, float] = defaultdict(float)
        for word in set(re.findall(r"\w+", query.lower())):
            hits = [(d, c) for d, c in self.postings.get(word, []) if d < n]
            if not hits:
                continue
            idf = math.log(1 + (n - len(hits) + 0.5) / (len(hits) + 0.5))
            for d, c in hits:
                scores[d] += idf * c * 2.2 / (c + 1.2 * (0.25 + 0.75 * self.lengths[d] / average))
        best = sorted(scores, key=lambda d: -scores[d])[:k]
        return [(self.turns[d][1], self.turns[d][2]) for d in best]


def score(personas: list[Persona], found) -> dict:
    """Session recall@5 and @10 by category, and evidence recall@10 (the share of a query's gold
    turns among the first 10): found(persona, query, k) -> (session uuid, turn number), best first."""
    hits: dict = {k: defaultdict(list) for k in (*KS, "evidence")}
    for persona in personas:
        for q in persona.queries:
            turns = found(persona, q, max(KS))
            for k in KS:
                share = len(q.gold & {u for u, _ in turns[:k]}) / len(q.gold)
                hits[k]["all"].append(share)
                hits[k][q.category].append(share)
            if q.evidence:
                hits["evidence"]["all"].append(len(q.evidence & set(turns[:10])) / len(q.evidence))
        if persona.search.embedder is not None:
            persona.search.embedder.save()
    return {k: {g: sum(v) / len(v) for g, v in h.items()} for k, h in hits.items()}


def line(label: str, table: dict, queries: int) -> str:
    groups = ["all", *[c for c in CATEGORIES.values() if c in table[KS[0]]]]
    cells = ", ".join(f"{g} {table[5][g]:.2f}/{table[10][g]:.2f}" for g in groups)
    return f"realmem {label}: session recall@5/@10 {cells}; evidence recall@10 {table['evidence']['all']:.2f} over {queries} queries"


class CachedQueries:
    """An embedder whose question vectors are kept in a file of the work folder, by text: every
    configuration and every run asks the same questions."""

    def __init__(self, embedder, folder: Path):
        self.embedder, self.name = embedder, embedder.name
        self.file = folder / f"questions-{embedder.name}.npz"
        self.seen: dict[str, np.ndarray] = {}
        if self.file.is_file():
            with np.load(self.file) as data:
                self.seen = dict(zip(data["texts"].tolist(), data["vectors"]))
        self.added = 0

    def passages(self, texts):
        return self.embedder.passages(texts)

    def query(self, text):
        key = query_text(text)  # what e5 reads: a change of QUERY_CHARS asks again
        if key not in self.seen:
            self.seen[key] = self.embedder.query(text)
            self.added += 1
        return self.seen[key]

    def save(self) -> None:
        if self.added:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.file.with_suffix(".tmp.npz"), texts=np.array(list(self.seen)), vectors=np.array(list(self.seen.values())))
            os.replace(self.file.with_suffix(".tmp.npz"), self.file)
            self.added = 0


def prepare(args) -> list[Persona]:
    from echo.memory.dense import E5Embedder
    from echo.memory.replay import replay
    from echo.memory.search import MemorySearch

    sources = sorted(Path(args.realmem).glob("*_dialogues_256k.json"))
    if args.personas:
        wanted = set(args.personas.split(","))
        sources = [s for s in sources if s.name.removesuffix("_dialogues_256k.json") in wanted]
    if not sources:
        raise SystemExit(f"no RealMem personas in {args.realmem} (fix: --realmem DIR, the folder with *_dialogues_256k.json)")
    from echo.memory.facts import FactStore, import_facts

    embedder = None if args.lexical_only else CachedQueries(E5Embedder(args.threads), Path(args.workdir))
    personas = []
    for source in sources:
        persona = write_persona(source, Path(args.workdir))
        replay(persona.memory, persona.index)
        store = None
        if args.facts:  # the data set's own memories, imported as Echo imports any: an oracle distiller
            store = FactStore(persona.memory.with_name("facts"))
            report = import_facts(store, (json.dumps(f, ensure_ascii=False) for f in persona.facts), persona.memory, "UTC")
            if report.added:
                print(f"{persona.name}: {len(report.added)} facts imported", file=sys.stderr, flush=True)
        persona.search = MemorySearch(persona.index, embedder, "UTC", facts=store, memory_dir=persona.memory)
        todo = len(persona.search.vectors.missing(persona.search.turns["hash"])) if embedder else 0
        if todo:
            print(f"embedding {todo} turns of {persona.name} (cached in {persona.index} for the next run)", file=sys.stderr, flush=True)
            persona.search.embed_pending()
        personas.append(persona)
    return personas


def echo_turns(mode: str, stages):
    from echo.memory.dates import Bound

    def found(persona: Persona, q: Query, k: int) -> list[tuple[str, int]]:
        persona.search.stages = stages
        asked = Bound(q.asked_at.date(), int(q.asked_at.timestamp() * 1e9))
        return [persona.turn_at[(m.path, m.line_start)] for m in persona.search.search(q.text, k, mode=mode, before=asked)]

    return found


class StandIn:
    """e5 for the question (its time is part of a search's) and stand-in vectors for the turns:
    a search's time does not depend on their values, and embedding 300,000 lines takes e5 most
    of an hour on this CPU. Kept under a model name of their own, never mixed with e5's."""

    def __init__(self, embedder):
        self.embedder, self.name = embedder, "speed-stand-in"
        self.took: list[float] = []  # ms per question embedded

    def passages(self, texts):
        vectors = np.random.default_rng(len(texts)).standard_normal((len(texts), 384)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def query(self, text):
        started = time.perf_counter()
        vector = self.embedder.query(text)
        self.took.append((time.perf_counter() - started) * 1000)
        return vector


def speed(args) -> None:
    """Search p50/p95 at 300,000 lines with every stage on, and what indexing costs per line:
    the dev set's short questions and every tenth RealMem query (long messages, searched
    session first)."""
    from bench.memory_gen import generate_memory, load_devset
    from echo.memory.dense import E5Embedder
    from echo.memory.replay import replay
    from echo.memory.search import MemorySearch

    work = Path(args.workdir) / "speed"
    memory, index = work / "memory", work / "index"
    devset = load_devset()
    if not memory.is_dir():
        generate_memory(memory, parts=args.speed_parts, facts=devset)
    started = time.perf_counter()
    insight = replay(memory, index, force=True)
    whole = time.perf_counter() - started
    search = MemorySearch(index, StandIn(E5Embedder(1)), "UTC")  # one thread: as the MemoryActor embeds
    lines = insight["lines"]
    print(f"indexing: full replay {whole:.1f} s for {lines} lines ({lines / whole:.0f} lines/s, inline; embedding per line unchanged)", flush=True)
    search.embed_pending(batch=4096, chunk=65536)
    realmem = [
        t["content"]
        for source in sorted(Path(args.realmem).glob("*_dialogues_256k.json"))
        for s in json.loads(source.read_text(encoding="utf-8"))["dialogues"]
        for t in s["dialogue_turns"]
        if _is_true(t.get("is_query"))
    ]
    asked = [e["query"] for e in devset] + realmem[::10]
    if args.facts:
        speed_with_facts(args, search, memory, asked, lines)
        return
    for mode in ("lexical", "hybrid"):
        for q in asked[:10]:
            search.search(q, 10, mode=mode)  # warm the caches
        times = []
        search.embedder.took.clear()
        for q in asked:
            started = time.perf_counter()
            search.search(q, 10, mode=mode)
            times.append((time.perf_counter() - started) * 1000)
        target = 50 if mode == "lexical" else 150
        took = search.embedder.took
        e5 = f"; of which e5 embedding the question p50 {percentile(took, 50):.1f} ms, p95 {percentile(took, 95):.1f} ms" if took else ""
        print(
            f"search_speed {mode}: p50 {percentile(times, 50):.1f} ms, p95 {percentile(times, 95):.1f} ms, max {max(times):.0f} ms over {len(times)} queries "
            f"at {lines} lines, every stage on{e5} (target p95 <= {target} ms; the recall timeout, 3000 ms, {'never' if max(times) < 3000 else 'WAS'} reached)",
            flush=True,
        )


def synthetic_facts(search, count: int) -> list[str]:
    """count facts as `facts import` lines, each citing one turn of the memory (spread evenly),
    worded from that turn's start: facts whose words and vectors look like real ones."""
    table = search.table
    step = max(1, table.num_rows // count)
    rows = table.take(list(range(0, table.num_rows, step))[:count]).select(["user", "path", "line_start", "line_end", "text"]).to_pylist()
    return [
        json.dumps(
            {
                "user": t["user"],
                "text": f"{t['user']} said: {' '.join(t['text'].split())[:160]}",
                "kind": ("profile", "preference", "event", "plan")[n % 4],
                "cites": [{"path": t["path"], "line_start": t["line_start"], "line_end": t["line_end"]}],
            },
            ensure_ascii=False,
        )
        for n, t in enumerate(rows)
    ]


def speed_with_facts(args, plain, memory: Path, asked: list[str], lines: int) -> None:
    """Hybrid search at 300,000 lines with 30,000 facts against the same search without them,
    the two taken in turn per query in one run."""
    from echo.memory.facts import FactStore, import_facts
    from echo.memory.search import MemorySearch, Stages

    folder = Path(args.workdir) / "speed" / "facts"
    shutil.rmtree(folder, ignore_errors=True)
    store = FactStore(folder)
    started = time.perf_counter()
    report = import_facts(store, synthetic_facts(plain, args.speed_facts), memory, "UTC")
    imported = time.perf_counter() - started
    search = MemorySearch(plain.index_dir, plain.embedder, "UTC", facts=store, memory_dir=memory)
    started = time.perf_counter()
    search.fact_view()
    built = time.perf_counter() - started
    search.embed_pending(batch=4096, chunk=65536, facts_only=True)
    print(f"facts: {len(report.added)} imported in {imported:.1f} s through `facts import`; their index built in {built:.1f} s", flush=True)
    times: dict[str, list[float]] = {"without": [], "with": []}
    for q in asked[:10]:
        search.search(q, 10, mode="hybrid")
    for q in asked:
        for label, stages in (("without", Stages(facts=0)), ("with", Stages())):
            search.stages = stages
            started = time.perf_counter()
            search.search(q, 10, mode="hybrid")
            times[label].append((time.perf_counter() - started) * 1000)
    p95 = {label: percentile(t, 95) for label, t in times.items()}
    for label in times:
        print(
            f"search_speed hybrid {label} facts: p50 {percentile(times[label], 50):.1f} ms, p95 {p95[label]:.1f} ms over {len(asked)} queries at {lines} lines",
            flush=True,
        )
    print(
        f"search_speed facts: hybrid p95 with {len(report.added)} facts is {p95['with'] / p95['without']:.2f}x the same search without them (target <= 1.2x)",
        flush=True,
    )


def profile_tokens(personas: list[Persona]) -> None:
    """What the profile adds to a system prompt, in SmolLM2's own tokens, at the default budget."""
    from llama_cpp import Llama

    from echo.config import load_config
    from echo.llm.models import embedded_model_path
    from echo.memory.facts import FactDesk, profile_text

    budget = load_config().facts.profile_budget_tokens
    vocab = Llama(model_path=str(embedded_model_path()), vocab_only=True, verbose=False)
    added, estimated = [], []
    for persona in personas:
        profile = FactDesk(persona.search.facts, persona.memory, "UTC").profile("origin", budget)
        block = "\n\n" + profile_text("origin", profile["facts"])
        added.append(len(vocab.tokenize(block.encode("utf-8"), add_bos=False)))
        estimated.append(profile["tokens"])
    print(
        f"profile: adds {min(added)}-{max(added)} tokens (SmolLM2's tokenizer; Echo's own count of the heading and lines, which never falls short, {min(estimated)}-{max(estimated)}) "
        f"to each circuit's system prompt over {len(personas)} personas, budget {budget} (facts.profile_budget_tokens)",
        flush=True,
    )


def main() -> int:
    from echo.memory.search import Stages

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--realmem", default=str(REALMEM), help="the RealMem folder (*_dialogues_256k.json)")
    parser.add_argument("--workdir", default="/tmp/echo-recall", help="memories, indexes and cached vectors (kept between runs)")
    parser.add_argument("--personas", help="only these personas (comma-separated names)")
    parser.add_argument("--threads", type=int, default=2, help="embedding threads")
    parser.add_argument("--skip-speed", action="store_true", help="only the RealMem table")
    parser.add_argument("--skip-realmem", action="store_true", help="only the speed lines")
    parser.add_argument("--lexical-only", action="store_true", help="no embedding: the baseline and the lexical lines only")
    parser.add_argument("--speed-parts", type=int, default=760, help="parts (395 lines each) in the memory searched for speed")
    parser.add_argument("--speed-facts", type=int, default=30_000, help="facts in the memory searched for speed (with --facts)")
    parser.add_argument(
        "--facts", action="store_true", help="import each session's extracted_memory as facts (an oracle distiller) and print the runs with and without them"
    )
    args = parser.parse_args()
    if args.skip_realmem:
        speed(args)
        return 0
    started = time.perf_counter()
    personas = prepare(args)
    queries = sum(len(p.queries) for p in personas)
    print(
        f"realmem: {len(personas)} personas, {sum(len(p.order_of_session) for p in personas)} sessions, {queries} queries with earlier gold sessions",
        flush=True,
    )
    baselines = {p.name: WordBM25(p.turns) for p in personas}
    print(line("word BM25 (baseline)", score(personas, lambda p, q, k: baselines[p.name].search(q.text, k, q.session)), queries), flush=True)
    before = Stages(sessions=False, time_in_query=0)
    lines = [
        ("before: lexical", "lexical", before),
        ("before: dense", "dense", before),
        ("before: hybrid (turns fused by RRF)", "hybrid", before),
        ("+ time in the question", "hybrid", Stages(sessions=False)),
        ("+ long messages session first, one turn each", "hybrid", Stages(neighbours=False, focus=0, recency=0)),
        ("+ half the lines to the best turns", "hybrid", Stages(neighbours=False, recency=0)),
        ("+ exchange partners", "hybrid", Stages(recency=0)),
        ("after: lexical", "lexical", Stages()),
        ("after: hybrid (default: + the latest sessions found first)", "hybrid", Stages()),
    ]
    if args.facts:  # the same search without and with the facts, each the other's floor
        lines = [
            ("without facts: lexical", "lexical", Stages(facts=0)),
            ("without facts: hybrid", "hybrid", Stages(facts=0)),
            ("with facts: lexical", "lexical", Stages()),
            ("with facts: hybrid (default)", "hybrid", Stages()),
        ]
    for label, mode, stages in lines:
        if mode == "lexical" or not args.lexical_only:
            print(line(label, score(personas, echo_turns(mode, stages)), queries), flush=True)
    if args.facts:
        profile_tokens(personas)
    print(f"realmem took {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if not args.skip_speed:
        # In a process of its own: e5's OpenMP runtime keeps the threads it first loaded with
        # (RealMem's --threads), and the MemoryActor searches with one.
        again = ["--skip-realmem", "--realmem", args.realmem, "--workdir", args.workdir, "--speed-parts", str(args.speed_parts)]
        again += ["--facts", "--speed-facts", str(args.speed_facts)] if args.facts else []
        return subprocess.run([sys.executable, __file__, *again], check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
