"""The distiller's logic without a model: windows, reading an answer, the ledger and resuming,
a changed part, a forgotten fact, supersedes, and a conversation still going. The self circuit
is a scripted function here; tests/e2e/test_distill.py runs it with SmolLM2 through Ray."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timezone

import pytest

from echo.config import DEFAULT_MARKERS
from echo.memory.distill import (
    CircuitUnavailable,
    Distiller,
    Ledger,
    Window,
    WindowTooLong,
    known_for,
    messages_for,
    read_answer,
    window_budget,
    window_schema,
    windows_of,
)
from echo.memory.facts import FactDesk, FactStore, PartLines, import_facts, prompt_tokens
from echo.memory.parsing import stamp_line
from tests.fakes import make_config
from tests.samples import write


def exchange(question: str, answer: str, stamp: str | None = None) -> str:
    return (f"{stamp}\n" if stamp else "") + f"나의 말:\n{question}\n에코의 말:\n{answer}\n"


MINJI = (
    exchange("I moved from Seoul to Busan last month for a new job.", "How is Busan so far?")
    + exchange("My cat Mocha hates the new flat.", "Cats take a while.")
    + exchange("I started learning the cello on Sundays.", "Lovely instrument.")
    + exchange("Please keep answers short.", "Sure.")
)


@pytest.fixture
def home(tmp_path):
    config = make_config(tmp_path, distill={"enabled": True, "window_turns": 4})
    write(config.memory_dir, "day0508/minji/part1.txt", MINJI)
    store = FactStore(config.facts_dir, config.backup_dir / "facts")
    return config, store


def answer_citing(*facts: dict) -> str:
    return json.dumps({"facts": [{"about": "minji", "kind": "profile", "date": "", "supersedes": "", **f} for f in facts]})


class Scripted:
    """The circuit: answers each window by what it says, and notes the windows it was given."""

    def __init__(self, stop_after: int | None = None):
        self.seen: list[str] = []
        self.stop_after = stop_after
        self.lock = threading.Lock()

    def __call__(self, messages, response_format, stop):
        user = messages[1]["content"]
        with self.lock:
            self.seen.append(user)
            if self.stop_after is not None and len(self.seen) >= self.stop_after:
                stop.set()  # Ctrl-C while this window was being distilled
        facts = []
        for number, line in re.findall(r"^\[(\d+)\] user: (.*)$", user, re.M):
            facts.append({"text": f"Minji said: {line}", "turns": [int(number)]})
        return answer_citing(*facts), 100, 20


# -- windows -------------------------------------------------------------------------------


def test_a_window_holds_whole_exchanges_and_never_splits_one():
    lines = MINJI.splitlines()
    windows = windows_of("day0508/minji/part1.txt", lines, DEFAULT_MARKERS, window_turns=3, budget_tokens=1000)
    assert [len(w.turns) for w in windows] == [2, 2, 2, 2]  # three turns would split an exchange: two a window
    assert all(w.turns[0].speaker == "user" and w.turns[-1].speaker == "echo" for w in windows)
    assert [(w.line_start, w.line_end) for w in windows] == [(1, 4), (5, 8), (9, 12), (13, 16)]
    four = windows_of("day0508/minji/part1.txt", lines, DEFAULT_MARKERS, window_turns=4, budget_tokens=1000)
    assert [(w.line_start, w.line_end) for w in four] == [(1, 8), (9, 16)]


def test_windows_fit_the_budget_and_a_long_exchange_is_clipped_not_split():
    long = exchange("I love the sea. " * 400, "Tell me more. " * 300)
    text = MINJI + long
    windows = windows_of("day0508/minji/part1.txt", text.splitlines(), DEFAULT_MARKERS, window_turns=12, budget_tokens=300)
    assert all(prompt_tokens(w.text()) <= 300 + 10 for w in windows)  # the turn labels are counted in the budget's margin
    last = windows[-1]
    assert [t.speaker for t in last.turns] == ["user", "echo"] and last.shown[0].endswith("[...]")  # alone, each turn clipped to its share
    assert sum(len(w.turns) for w in windows) == 10  # no turn left out


def test_a_window_ends_where_a_conversation_does():
    text = exchange("Hi, I am planning a trip to Jeju.", "Nice!", stamp_line("2026-05-08T10:00:00+09:00", "a" * 16)) + exchange(
        "New topic: my sister got married.", "Congratulations!", stamp_line("2026-05-08T18:00:00+09:00", "b" * 16)
    )
    windows = windows_of("day0508/minji/part1.txt", text.splitlines(), DEFAULT_MARKERS, window_turns=12, budget_tokens=1000)
    assert [w.turns[0].conversation for w in windows] == ["a" * 16, "b" * 16]


def test_the_budget_leaves_room_for_the_instructions_the_known_facts_and_the_answer(tmp_path):
    budget = window_budget(2048, 384)
    assert 1000 < budget < 2048 - 384
    with pytest.raises(ValueError, match="raise n_ctx"):
        Distiller(make_config(tmp_path, distill={"enabled": True}), FactStore(tmp_path / "facts"), 600)


# -- one answer --------------------------------------------------------------------------


def first_window(config) -> Window:
    lines = (config.memory_dir / "day0508/minji/part1.txt").read_text(encoding="utf-8").splitlines()
    return windows_of("day0508/minji/part1.txt", lines, config.markers, 4, 1000)[0]


def test_an_answer_becomes_facts_that_cite_the_turns_lines_and_a_cite_outside_the_window_is_dropped_and_counted(home):
    config, _ = home
    window = first_window(config)
    text = answer_citing(
        {"text": "Minji moved from Seoul to Busan for a new job.", "turns": [1, 2]},
        {"text": "Minji has a cat called Mocha.", "turns": [9]},  # the window has four turns
        {"text": "Minji lives in Busan.", "turns": [1], "supersedes": "K3"},  # shown no known fact
    )
    outcome = read_answer(text, window, [], PartLines(config.memory_dir), config.timezone, {"minji"})
    assert [f.text for f in outcome.facts] == ["Minji moved from Seoul to Busan for a new job."]
    fact = outcome.facts[0]
    assert [(c.path, c.line_start, c.line_end) for c in fact.cites] == [("day0508/minji/part1.txt", 1, 2), ("day0508/minji/part1.txt", 3, 4)]
    assert fact.source == "distilled" and fact.cites[0].sha1  # stale-checked like every fact
    assert dict(outcome.dropped) == {"cites a turn outside the window": 1, "supersedes a fact it was not shown": 1}
    with pytest.raises(ValueError, match="not complete JSON"):
        read_answer('{"facts": [{"about": "min', window, [], PartLines(config.memory_dir), config.timezone, {"minji"})
    cut = text[: text.index("Minji has a cat")]  # cut off at max_tokens inside the second fact
    kept = read_answer(cut, window, [], PartLines(config.memory_dir), config.timezone, {"minji"})
    assert [f.text for f in kept.facts] == ["Minji moved from Seoul to Busan for a new job."] and kept.dropped == {"cut off at distill.max_tokens": 1}


def test_the_schema_lets_the_answer_cite_only_the_windows_turns_and_supersede_only_known_facts():
    schema = window_schema(turns=3, known=2)["properties"]["facts"]["items"]["properties"]
    assert schema["turns"]["items"] == {"enum": [1, 2, 3]}
    assert schema["supersedes"] == {"enum": ["", "K1", "K2"]}


def test_supersedes_is_chosen_from_the_known_facts_shown_beside_the_window(home):
    config, store = home
    write(config.memory_dir, "day0401/minji/part1.txt", exchange("I live in Seoul, near Hongdae.", "Nice area."))
    import_facts(
        store,
        [
            json.dumps(
                {
                    "user": "minji",
                    "text": "Minji lives in Seoul.",
                    "kind": "profile",
                    "cites": [{"path": "day0401/minji/part1.txt", "line_start": 1, "line_end": 2}],
                }
            )
        ],
        config.memory_dir,
        config.timezone,
    )
    old = store.live()[0]
    window = first_window(config)
    known = known_for(window, store.live(), 12)
    assert known == [old]
    assert "K1 (profile, about minji" in messages_for(window, known)[1]["content"]
    outcome = read_answer(
        answer_citing({"text": "Minji lives in Busan now.", "turns": [1], "supersedes": "K1"}),
        window,
        known,
        PartLines(config.memory_dir),
        config.timezone,
        {"minji"},
    )
    assert outcome.facts[0].supersedes == old.id


# -- the job -------------------------------------------------------------------------------


def test_the_whole_memory_is_distilled_once_and_a_second_run_distills_nothing(home):
    config, store = home
    circuit = Scripted()
    result = Distiller(config, store, 2048).run(circuit, 4, threading.Event())
    assert (result["state"], result["windows"], result["windows_done"], result["windows_left"]) == ("done", 2, 2, 0)
    assert result["facts_added"] == 4 and len(store.live()) == 4
    assert all(f.cites[0].path == "day0508/minji/part1.txt" for f in store.live())
    again = Scripted()
    assert Distiller(config, store, 2048).run(again, 4, threading.Event())["windows_done"] == 2 and again.seen == []


def test_an_interrupted_job_goes_on_where_it_stopped_no_window_twice_none_skipped(home):
    config, store = home
    write(config.memory_dir, "day0509/minji/part1.txt", MINJI)
    first = Scripted(stop_after=2)
    result = Distiller(config, store, 2048).run(first, 1, threading.Event())
    assert result["state"] == "stopped"
    recorded = [json.loads(line)["key"] for line in (config.facts_dir / "distilled.jsonl").read_text().splitlines()]
    assert len(recorded) == 1  # the window in flight at Ctrl-C was not kept: it is distilled again
    second = Scripted()
    result = Distiller(config, store, 2048).run(second, 1, threading.Event())
    assert result["state"] == "done" and len(second.seen) == 3
    conversation = lambda prompt: prompt.split("Conversation (")[1]  # noqa: E731 (the known facts beside it have grown since)
    assert conversation(second.seen[0]) == conversation(first.seen[1])  # it went on with the window that was cut short
    keys = [json.loads(line)["key"] for line in (config.facts_dir / "distilled.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 4  # every window once
    assert len(store.live()) == 4  # the same facts from the two parts are one each: known already


def test_a_changed_part_is_distilled_again_and_its_old_facts_are_stale(home):
    config, store = home
    Distiller(config, store, 2048).run(Scripted(), 2, threading.Event())
    part = config.memory_dir / "day0508/minji/part1.txt"
    part.write_text(MINJI.replace("a new job", "a new job at a bakery"), encoding="utf-8")
    desk = FactDesk(store, config.memory_dir, config.timezone)
    stale = {store.get(i).text for i in desk.stale()}
    assert stale == {"Minji said: I moved from Seoul to Busan last month for a new job."}
    again = Scripted()
    result = Distiller(config, store, 2048).run(again, 2, threading.Event())
    assert len(again.seen) == 1 and "at a bakery" in again.seen[0]  # only the window whose lines changed
    assert result["facts_added"] == 1 and any("bakery" in f.text for f in store.live())


def test_a_forgotten_fact_is_not_written_again_when_its_window_is_distilled_again(home):
    config, store = home
    Distiller(config, store, 2048).run(Scripted(), 2, threading.Event())
    cello = next(f for f in store.live() if "cello" in f.text)
    store.delete([cello.id], by="minji")
    (config.facts_dir / "distilled.jsonl").unlink()  # everything distilled anew
    Distiller(config, store, 2048).run(Scripted(), 2, threading.Event())
    assert not any("cello" in f.text for f in store.live())
    assert len(store.live()) == 3


def test_the_last_window_of_a_conversation_still_going_waits_until_it_goes_quiet(home):
    config, store = home
    now = time.time()
    at = datetime.fromtimestamp(now - 60, timezone.utc).isoformat(timespec="seconds")
    write(config.memory_dir, "day0509/minji/part1.txt", MINJI + exchange("Guess what, I got the job!", "Congratulations!", stamp_line(at, "c" * 16)))
    distiller = Distiller(config, store, 2048)
    todo, counts = distiller.pending(now=now)
    assert [(w.path, w.line_start) for w in todo] == [
        ("day0508/minji/part1.txt", 1),
        ("day0508/minji/part1.txt", 9),
        ("day0509/minji/part1.txt", 1),
        ("day0509/minji/part1.txt", 9),
    ]
    assert counts["windows_open"] == 1  # said a minute ago: Minji may go on
    todo, counts = distiller.pending(now=now + config.conversation.idle_gap_minutes * 60)
    assert todo[-1].turns[0].text == "Guess what, I got the job!" and counts.get("windows_open", 0) == 0


def test_a_window_whose_answer_is_cut_off_is_recorded_as_failed_and_the_job_goes_on(home):
    config, store = home
    calls = []

    def cut_off(messages, response_format, stop):
        calls.append(1)
        return ('{"facts": [{"about": "min' if len(calls) == 1 else answer_citing({"text": "Minji plays the cello.", "turns": [1]})), 10, 5

    result = Distiller(config, store, 2048).run(cut_off, 1, threading.Event())
    assert result["windows_failed"] == 1 and result["windows_done"] == 2 and result["facts_added"] == 1
    failed = [json.loads(line) for line in (config.facts_dir / "distilled.jsonl").read_text().splitlines() if "failed" in line]
    assert "not complete JSON" in failed[0]["failed"]


def test_the_ledger_survives_a_line_cut_off_by_a_crash(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.record([{"key": "a"}, {"key": "b"}])
    with open(ledger.path, "a") as out:
        out.write('{"key": "c", "pa')
    assert set(Ledger(tmp_path).done()) == {"a", "b"}


def test_a_made_up_date_gives_way_to_the_date_of_the_turns_and_the_fact_is_kept(home):
    config, _ = home
    text = answer_citing({"text": "Minji plays the cello.", "turns": [1], "date": "1234-56-78"})  # the grammar's pattern lets it through
    outcome = read_answer(text, first_window(config), [], PartLines(config.memory_dir), config.timezone, {"minji"})
    assert [f.text for f in outcome.facts] == ["Minji plays the cello."] and outcome.facts[0].date.endswith("-05-08")  # day0508


def test_a_circuit_that_does_not_answer_ends_the_run_and_loses_no_window(home):
    config, store = home

    def restarting(messages, response_format, stop):
        raise RuntimeError("the replica is restarting")

    with pytest.raises(CircuitUnavailable, match="did not answer"):
        Distiller(config, store, 2048).run(restarting, 2, threading.Event())
    assert not (config.facts_dir / "distilled.jsonl").exists()  # nothing recorded: every window waits for the next run
    again = Scripted()
    assert Distiller(config, store, 2048).run(again, 2, threading.Event())["windows_done"] == 2 and len(again.seen) == 2


def test_a_window_too_long_for_a_slot_is_recorded_as_failed(home):
    config, store = home

    def too_long(messages, response_format, stop):
        raise WindowTooLong("the prompt has 3000 tokens and a slot holds 2048")

    result = Distiller(config, store, 2048).run(too_long, 1, threading.Event())
    assert result["windows_failed"] == 2 and result["windows_left"] == 0
