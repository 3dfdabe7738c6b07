"""The benchmark memory generator (bench/memory_gen.py) and its labelled dev set."""

import re
from collections import Counter
from pathlib import Path

import pytest

from bench.memory_gen import DEVSET_PATH, generate_memory, load_devset
from echo.memory.parsing import marker_of, parse_part

LPP = 395
MARKERS = ("나의 말:", "ChatGPT의 말:", "에코의 말:")
DAY_RE = re.compile(r"^day(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])$")
PART_RE = re.compile(r"^part([1-9][0-9]*)\.txt$")


@pytest.fixture(scope="module")
def devset():
    return load_devset(DEVSET_PATH)


@pytest.fixture(scope="module")
def facts(devset):
    chosen = [e for e in devset if e["lang"] == "ko"][:4] + [e for e in devset if e["lang"] == "en"][:3]
    guest = dict([e for e in devset if e["lang"] == "ko"][10], user="minji")  # one under another user
    return [*chosen, guest]


@pytest.fixture(scope="module")
def memory(tmp_path_factory, facts):
    root = tmp_path_factory.mktemp("memory")
    summary = generate_memory(root, parts=24, days=3, seed=0, facts=facts)
    parts = {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8") for p in root.rglob("*") if p.is_file()}
    return root, summary, parts


def _lines(text):
    assert text.endswith("\n")
    return text[:-1].split("\n")


def test_layout_and_names(memory):
    root, summary, parts = memory
    days = sorted(p.name for p in root.iterdir())
    assert len(days) == summary["days"] == 3 and all(DAY_RE.match(d) for d in days)
    users = Counter()
    for rel in parts:
        day, user, name = rel.split("/")
        assert DAY_RE.match(day) and re.fullmatch(r"[a-z]+", user) and PART_RE.match(name)
        users[user] += 1
    assert len(parts) == summary["parts"] == 24
    assert users == Counter(summary["users"]) and users["origin"] > sum(users.values()) / 2
    assert set(users) - {"origin"}, "some parts belong to other users"
    for folder in {rel.rsplit("/", 1)[0] for rel in parts}:
        numbers = sorted(int(PART_RE.match(p.name).group(1)) for p in (root / folder).iterdir())
        assert numbers == list(range(1, len(numbers) + 1))


def test_part_sizes(memory):
    root, summary, parts = memory
    total = 0
    for folder in {rel.rsplit("/", 1)[0] for rel in parts}:
        sizes = [len(_lines((root / folder / f"part{n}.txt").read_text(encoding="utf-8"))) for n in range(1, len(list((root / folder).iterdir())) + 1)]
        assert all(size == LPP for size in sizes[:-1]) and 1 <= sizes[-1] <= LPP
        total += sum(sizes)
    assert total == summary["lines"]


def test_each_answer_occurs_exactly_once(memory, facts):
    _, summary, parts = memory
    everything = "\n".join(parts.values())
    for entry in facts:
        assert everything.count(entry["answer"]) == 1, entry["id"]
    assert summary["facts_planted"] == len(facts)


def test_chat_log_features(memory):
    _, _, parts = memory
    lines = [line for text in parts.values() for line in _lines(text)]
    for marker in ("나의 말:", "ChatGPT의 말:", "에코의 말:"):
        assert marker in lines, f"{marker} alone on a line"
        assert any(line.startswith(marker + " ") for line in lines), f"{marker} followed by text"
    labels = [part[i - 1] for part in map(_lines, parts.values()) for i in range(1, len(part) - 1) if part[i] == "복사" and part[i + 1] == "편집"]
    assert labels and all(re.fullmatch(r"[a-z]+", label) for label in labels), "label, 복사, 편집 before code"
    assert "메모리 업데이트됨" in lines
    assert any(not any(line.startswith(m) for line in text.split("\n")[:1] for m in MARKERS) for text in parts.values())
    assert any(line.startswith("나의 말: ") and line[6:].isascii() and len(line) > 30 for line in lines), "English talk"
    owner = Counter(line.removeprefix("나의 말:").strip() for line in lines if line.startswith("나의 말: "))
    assert owner.most_common(1)[0][1] > 1, "some exact duplicate turns"
    assert len(owner) > 100, "varied texts"


def test_parser_finds_each_fact_as_an_owner_turn(memory, facts):
    root, summary, parts = memory
    placed = {p["id"]: p for p in summary["placements"]}
    for entry in facts:
        where = placed[entry["id"]]
        assert where["user"] == entry.get("user", "origin")
        assert entry["answer"] in parts[where["path"]]
        turns = parse_part(_lines(parts[where["path"]]))
        found = [t for t in turns if entry["answer"] in t.text]
        assert len(found) == 1 and found[0].speaker == "user" and found[0].text == entry["fact"]
        assert found[0].line_start == where["line"] and found[0].line_end in (where["line"], where["line"] + 1)


def test_deterministic_and_fails_loudly(tmp_path, facts):
    first = generate_memory(tmp_path / "a", parts=5, days=2, seed=7, facts=facts[:2])
    second = generate_memory(tmp_path / "b", parts=5, days=2, seed=7, facts=facts[:2])
    assert first == second
    for a in (tmp_path / "a").rglob("*.txt"):
        assert a.read_bytes() == (tmp_path / "b" / a.relative_to(tmp_path / "a")).read_bytes()
    clash = {"id": "x-1", "lang": "ko", "fact": "그때도 그냥 고마워 라고만 했어", "answer": "고마워"}
    with pytest.raises(ValueError, match="filler"):
        generate_memory(tmp_path / "c", parts=5, days=2, facts=[clash])


def test_devset(devset):
    assert len(devset) >= 110
    assert len({e["id"] for e in devset}) == len(devset)
    langs = Counter(e["lang"] for e in devset)
    assert set(langs) == {"ko", "en"} and min(langs.values()) >= 45
    kinds = Counter(e["kind"] for e in devset)
    assert set(kinds) == {"lexical", "paraphrase"} and kinds["paraphrase"] >= 60 and kinds["lexical"] >= 30
    answers = [e["answer"] for e in devset]
    assert len(set(answers)) == len(answers)
    for e in devset:
        assert e["id"].startswith(e["lang"] + "-")
        assert e["fact"].count(e["answer"]) == 1 and e["answer"] not in e["query"]
        assert marker_of(e["fact"]) is None and "\n" not in e["fact"]
        assert not any(e["answer"] in o["fact"] for o in devset if o is not e), e["id"]
    assert len({e["fact"] for e in devset}) == len(devset)


def test_devset_file_is_where_the_loader_looks():
    assert Path(__file__).resolve().parents[2] / "bench" / "devset.jsonl" == DEVSET_PATH
