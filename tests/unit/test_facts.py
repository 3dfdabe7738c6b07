"""Facts: the store, import checks, how search uses them, the profile, forgetting and undo."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from echo.brain.knowledge import forget_request
from echo.memory.facts import FactDesk, FactError, FactStore, PartLines, import_facts, parse_import, profile_text, prompt_tokens
from echo.memory.replay import replay
from echo.memory.search import MemorySearch
from tests.samples import write

MINJI = "나의 말:\nI moved from Seoul to Busan last month for a new job.\n에코의 말:\nHow is Busan so far?\n나의 말:\nPlease keep answers short, no long stories.\n에코의 말:\nSure.\n"
MINJI_OLD = "나의 말:\nI live in Seoul, near Hongdae.\n에코의 말:\nNice area.\n"
ORIGIN = "나의 말:\nMy sister Jiwoo is preparing for the bar exam in June.\n에코의 말:\nWish her luck!\n"


def fact(text: str, path: str = "day0508/minji/part1.txt", start: int = 1, end: int = 2, user: str = "minji", **more) -> str:
    return json.dumps({"user": user, "text": text, "cites": [{"path": path, "line_start": start, "line_end": end}], **more}, ensure_ascii=False)


@pytest.fixture
def home(tmp_path):
    memory = tmp_path / "memory"
    write(memory, "day0508/minji/part1.txt", MINJI)
    write(memory, "day0401/minji/part1.txt", MINJI_OLD)
    write(memory, "day0509/origin/part1.txt", ORIGIN)
    store = FactStore(tmp_path / "memory_facts", tmp_path / "memory_backup" / "facts")
    return memory, store


def lines_of(store: FactStore) -> list[dict]:
    return [json.loads(line) for line in store.path.read_text(encoding="utf-8").splitlines()] if store.path.is_file() else []


# -- import ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, words",
    [
        ("{not json", "line 2: not JSON"),
        ('{"user": "minji", "text": "Lives in Busan"}', "line 2: missing field 'cites'"),
        ('{"text": "x", "cites": []}', "line 2: missing field 'user'"),
        (fact("x", path="../../etc/passwd"), "line 2: cite 1: path '../../etc/passwd' leaves the memory folder"),
        (fact("x", path="/etc/passwd"), "line 2: cite 1: path '/etc/passwd' leaves the memory folder"),
        (fact("x", path="day0508/minji/../../../x.txt"), "leaves the memory folder"),
        (fact("x", start=3, end=40), "has 8 lines, so lines 3-40 do not exist"),
        (fact("x", path="day0508/minji/part7.txt"), "day0508/minji/part7.txt is not in the memory folder"),
        (fact("x", user="bob", path="day0508/bob/part1.txt"), "line 2: unknown user 'bob'"),
        (fact("x", path="day0509/origin/part1.txt"), "in 'origin''s memory, not 'minji''s"),
        (json.dumps({"user": "minji", "text": "x", "cites": []}), "a fact without lines it rests on is not a fact"),
        (fact("x" * 70_000), "line 2: 70"),
        (fact("x", kind="mood"), "kind 'mood' is not one of"),
        (fact("x", date="last May"), "date 'last May' is not an ISO date"),
        (fact("x", start=0, end=1), "line numbers from 1"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_a_bad_line_is_named_with_what_is_wrong_and_nothing_is_imported(home, bad, words):
    memory, store = home
    good = fact("Lives in Busan now", kind="profile")
    with pytest.raises(FactError) as refused:
        import_facts(store, [good, bad, good.replace("Busan", "Busan, by the sea")], memory, "UTC")
    assert words in str(refused.value)
    assert not store.path.exists() and store.live() == []  # a file imports whole or not at all


def test_every_bad_line_is_named_at_once(home):
    memory, store = home
    with pytest.raises(FactError) as refused:
        import_facts(store, ["oops", fact("fine"), "", '{"user": "minji"}'], memory, "UTC")
    assert [p.split(":")[0] for p in refused.value.problems] == ["line 1", "line 4"]


def test_importing_the_same_file_twice_adds_nothing(home):
    memory, store = home
    lines = [fact("Lives in Busan now", kind="profile"), fact("Wants short answers", start=5, end=6, kind="preference")]
    first = import_facts(store, lines, memory, "UTC")
    again = import_facts(store, lines, memory, "UTC")
    assert len(first.added) == 2 and again.added == [] and len(again.unchanged) == 2
    assert len(lines_of(store)) == 2
    saved = lines_of(store)[0]
    assert saved["date"] == "2026-05-08" or saved["date"].endswith("-05-08")  # the date of the lines it rests on
    assert saved["about"] == "minji" and saved["cites"][0]["path"] == "day0508/minji/part1.txt"


def test_the_store_is_mirrored_and_restored_fact_by_fact(home):
    memory, store = home
    import_facts(store, [fact("Lives in Busan now"), fact("Wants short answers", start=5, end=6)], memory, "UTC")
    assert store.backup.read_bytes() == store.path.read_bytes()
    store.path.unlink()
    assert store.live() == []
    assert store.restore_from_backup() == (2, 0)
    assert {f.text for f in store.live()} == {"Lives in Busan now", "Wants short answers"}
    assert store.restore_from_backup() == (0, 2)  # never twice, never removing one


def test_a_cli_and_a_server_writing_the_same_store_see_each_other(home):
    memory, store = home
    other = FactStore(store.path.parent)
    import_facts(store, [fact("Lives in Busan now")], memory, "UTC")
    assert [f.text for f in other.live()] == ["Lives in Busan now"]
    other.delete([other.live()[0].id], "origin")
    assert store.live() == []


# -- search --------------------------------------------------------------------------------


def searcher(memory, store, tmp_path):
    replay(memory, tmp_path / "index")
    return MemorySearch(tmp_path / "index", None, "UTC", facts=store, memory_dir=memory)


def test_a_fact_finds_the_lines_it_cites_by_its_own_words(home, tmp_path):
    memory, store = home
    search = searcher(memory, store, tmp_path)
    assert all("relocated" not in m.text for m in search.search("relocated", 5, mode="lexical"))
    import_facts(store, [fact("Minji relocated to the coast for work")], memory, "UTC")
    found = search.search("where was minji relocated", 5, mode="lexical")
    assert (found[0].path, found[0].line_start, found[0].speaker) == ("day0508/minji/part1.txt", 1, "user")  # the cited turn, not the fact's words
    assert found[0].fact["text"] == "Minji relocated to the coast for work"


def test_another_users_facts_are_never_found_for_a_user(home, tmp_path):
    memory, store = home
    import_facts(store, [fact("Jiwoo is preparing for the bar exam", path="day0509/origin/part1.txt", user="origin")], memory, "UTC")
    search = searcher(memory, store, tmp_path)
    assert search.search("bar exam", 5, user="origin", mode="lexical")[0].fact is not None
    assert all(m.user == "minji" and m.fact is None for m in search.search("bar exam Jiwoo preparing", 5, user="minji", mode="lexical"))
    desk = FactDesk(store, memory, "UTC")
    jiwoo = store.live()[0].id
    assert desk.show("minji", jiwoo) is None and desk.show(None, jiwoo)["about"] == "origin"
    assert desk.list("minji")["facts"] == [] and desk.delete("minji", [jiwoo], "minji") == []
    assert desk.profile("minji", 500)["facts"] == []


def test_a_superseded_fact_ranks_below_the_one_that_replaced_it(home, tmp_path):
    memory, store = home
    import_facts(store, [fact("Minji lives in Seoul", path="day0401/minji/part1.txt", id="seoul", kind="profile")], memory, "UTC")
    import_facts(store, [fact("Minji lives in Busan now", id="busan", supersedes="seoul", kind="profile")], memory, "UTC")
    search = searcher(memory, store, tmp_path)
    found = [m for m in search.search("where does Minji live Seoul", 4, mode="lexical") if m.fact]
    assert [m.fact["id"] for m in found[:2]] == ["busan", "seoul"]  # the current state first, though the old one matches better
    assert found[1].fact["superseded_by"] == "busan"
    desk = FactDesk(store, memory, "UTC")
    assert [f["id"] for f in desk.profile("minji", 500)["facts"]] == ["busan"]


def test_a_fact_whose_lines_changed_is_stale_and_recalled_below_fresh_ones(home, tmp_path):
    memory, store = home
    import_facts(store, [fact("Minji moved to Busan", id="moved"), fact("Minji likes short answers, Busan style", start=5, end=6, id="short")], memory, "UTC")
    desk = FactDesk(store, memory, "UTC")
    assert desk.stale() == set()
    part = memory / "day0508/minji/part1.txt"
    part.write_text(part.read_text(encoding="utf-8").replace("Seoul to Busan", "Seoul to Daegu"), encoding="utf-8")
    desk.parts_changed()
    assert desk.stale() == {"moved"} and desk.show(None, "moved")["stale"] is True
    search = searcher(memory, store, tmp_path)
    facts = [m.fact["id"] for m in search.search("Minji moved Busan", 4, mode="lexical") if m.fact]
    assert facts.index("short") < facts.index("moved")


# -- profile, forget, undo -------------------------------------------------------------------


def test_the_profile_keeps_to_its_budget_newest_first(home):
    memory, store = home
    many = [fact(f"Minji likes hobby number {n} very much indeed", kind="preference", date=f"2026-05-{n:02d}") for n in range(1, 29)]
    import_facts(store, many + [fact("Minji went hiking", kind="event")], memory, "UTC")
    profile = FactDesk(store, memory, "UTC").profile("minji", 80)
    assert 0 < profile["tokens"] <= 80 and 1 < len(profile["facts"]) < 28
    text = profile_text("minji", profile["facts"])
    assert prompt_tokens(text) + 2 <= profile["tokens"] <= 80  # what the prompt gets, counted whole
    assert profile["facts"][0]["date"] == "2026-05-28" and all(f["kind"] == "preference" for f in profile["facts"])
    assert FactDesk(store, memory, "UTC").profile("minji", 10) == {"facts": [], "tokens": 0}


def test_prompt_tokens_never_fall_short_of_a_byte_level_vocabulary():
    from llama_cpp import Llama

    from echo.llm.models import embedded_model_path

    vocab = Llama(model_path=str(embedded_model_path()), vocab_only=True, verbose=False)
    for text in ["Minji wants short answers (2025-12-24)", "미나는 부산으로 이사했고 새 직장에 다니고 있어요", "【Project】 $20/month, 3 sets of 10 reps!"]:
        assert prompt_tokens(text) >= len(vocab.tokenize(text.encode("utf-8"), add_bos=False)), text


@pytest.mark.parametrize(
    "prompt, named",
    [
        ("forget that I live in Busan", "I live in Busan"),
        ("Please forget about my sister's exam.", "my sister's exam"),
        ("내가 부산에 산다는 거 잊어줘", "내가 부산에 산다는"),
        ("부산 얘기는 잊어 주세요", "부산"),
        ("I always forget my keys", None),
        ("Don't forget that we meet at 3", None),
        ("잊지 마, 3시에 만나", None),
    ],
)
def test_a_forget_request_is_only_a_message_that_asks_it(prompt, named):
    assert forget_request(prompt) == named


def test_forgetting_is_precise_undoable_and_never_rewritten(home):
    memory, store = home
    lines = [
        fact("Minji lives in Busan now"),
        fact("Minji wants short answers", start=5, end=6),
        fact("Minji used to live in Seoul", path="day0401/minji/part1.txt"),
    ]
    import_facts(store, lines, memory, "UTC")
    desk = FactDesk(store, memory, "UTC")
    removed = desk.forget("minji", "that I live in Busan", "minji")
    assert [f["text"] for f in removed] == ["Minji lives in Busan now"]
    assert len(desk.list("minji")["facts"]) == 2 and desk.list("minji", deleted=True)["facts"][0]["deleted"]["by"] == "minji"
    assert desk.forget("minji", "my favourite colour", "minji") == []  # nothing named: nothing lost
    again = import_facts(store, [lines[0], fact("Minji lives in Busan, now")], memory, "UTC")  # the same lines, the same words
    assert again.added == [] and len(again.forgotten) == 2
    assert [f["text"] for f in desk.undo("minji")] == ["Minji lives in Busan now"]
    assert len(desk.list("minji")["facts"]) == 3 and (memory / "day0508/minji/part1.txt").read_text(encoding="utf-8") == MINJI


def test_undo_is_only_for_a_while(home):
    memory, store = home
    import_facts(store, [fact("Minji lives in Busan now")], memory, "UTC")
    store.delete([store.live()[0].id], "minji")
    later = datetime.now(timezone.utc) + store.undo_window + timedelta(minutes=1)
    assert store.undo("minji", now=later) == [] and store.live() == []


def test_a_correction_keeps_the_citation(home):
    memory, store = home
    import_facts(store, [fact("Minji lives in Busn")], memory, "UTC")
    desk = FactDesk(store, memory, "UTC")
    fixed = desk.edit("minji", store.live()[0].id, {"text": "Minji lives in Busan"}, "minji")
    assert fixed["text"] == "Minji lives in Busan" and fixed["cites"][0]["line_start"] == 1 and fixed["source"] == "edited by minji"
    with pytest.raises(FactError, match="cannot be changed"):
        desk.edit("minji", fixed["id"], {"cites": []}, "minji")
    assert desk.edit("origin", fixed["id"], {"text": "x"}, "origin") is None  # another user's fact: not there


def test_parse_import_reads_bytes_and_skips_blank_lines(home):
    memory, _ = home
    found = parse_import([fact("Lives in Busan").encode(), b"", b"  "], PartLines(memory), "UTC")
    assert [f.text for f in found] == ["Lives in Busan"]


# -- the brain and the API, over the real store ------------------------------------------------

TOKEN = "facts-test-token"


@pytest.fixture
def knowing(home, make_client):
    """The API over a brain whose memory answers facts from a real desk, with minji's and the owner's facts."""
    memory, store = home
    import_facts(
        store,
        [
            fact("Minji lives in Busan now", kind="profile", id="busan"),
            fact("Minji wants short answers without stories", start=5, end=6, kind="preference", id="short"),
            fact("Minji went to a job interview", kind="event", id="interview"),
            fact("Jiwoo is preparing for the bar exam", path="day0509/origin/part1.txt", user="origin", about="Jiwoo", kind="plan", id="jiwoo"),
        ],
        memory,
        "UTC",
    )
    from tests.fakes import FakeMemory

    fake = FakeMemory(desk=FactDesk(store, memory, "UTC"))
    client, _ = make_client(token=TOKEN, memory=fake)
    return client, fake, store


def key(user: str) -> dict:
    from echo.brain.users import user_key

    return {"Authorization": f"Bearer {user_key(TOKEN, user)}"}


OWNER = {"Authorization": f"Bearer {TOKEN}"}


def test_an_answer_carries_the_askers_standing_facts_and_a_guests_none(knowing):
    client, fake, _ = knowing
    body = client.post("/api/ask", json={"prompt": "what should I cook tonight?", "user": "minji"}, headers=key("minji")).json()
    assert [f["id"] for f in body["facts"]] == ["busan", "short"]  # profile and preferences, not events
    profile_calls = [a for op, a in fake.fact_calls if op == "profile"]
    assert profile_calls[-1]["user"] == "minji"
    guest = client.post("/api/ask", json={"prompt": "what should I cook tonight?"}).json()
    assert guest["facts"] == [] and [op for op, a in fake.fact_calls].count("profile") == 1


def test_the_profile_is_in_each_system_prompt(home, tmp_path):
    import asyncio

    from tests.fakes import CIRCUITS, FakeCircuit, FakeMemory, make_brain

    memory, store = home
    import_facts(store, [fact("Minji wants short answers without stories", start=5, end=6, kind="preference")], memory, "UTC")
    circuits = {n: FakeCircuit(n) for n in CIRCUITS}
    brain = make_brain(tmp_path, token=TOKEN, circuits=circuits, memory=FakeMemory(desk=FactDesk(store, memory, "UTC")))
    asyncio.run(brain.ask("hello", "minji", key("minji")["Authorization"]))
    for circuit in circuits.values():
        system = circuit.calls[0][0][0]["content"]
        assert "What you know about minji" in system and "- Minji wants short answers without stories" in system
    asyncio.run(brain.ask("hello"))  # a guest
    assert all("What you know" not in c.calls[1][0][0]["content"] for c in circuits.values())


def test_forget_that_removes_only_the_askers_matching_fact_and_says_which(knowing):
    client, _, store = knowing
    body = client.post("/api/ask", json={"prompt": "forget that I live in Busan", "user": "minji"}, headers=key("minji")).json()
    assert body["route"] == "forget" and [f["id"] for f in body["forgotten"]] == ["busan"]
    assert "Minji lives in Busan now" in body["reply"] and body["saved"] is True
    assert {f.id for f in store.live()} == {"short", "interview", "jiwoo"}
    guest = client.post("/api/ask", json={"prompt": "forget that Jiwoo is preparing for the bar exam"}).json()
    assert guest["forgotten"] == [] and "jiwoo" in {f.id for f in store.live()}
    undone = client.post("/api/memory/facts/undo?user=minji", headers=key("minji")).json()
    assert [f["id"] for f in undone["restored"]] == ["busan"]


def test_facts_are_shown_to_the_person_and_the_owner_only(knowing):
    client, _, _ = knowing
    mine = client.get("/api/memory/facts?user=minji", headers=key("minji")).json()
    assert {f["id"] for f in mine["facts"]} == {"busan", "short", "interview"}
    assert {f["id"] for f in client.get("/api/memory/facts", headers=OWNER).json()["facts"]} == {"busan", "short", "interview", "jiwoo"}
    assert client.get("/api/memory/facts/jiwoo?user=minji", headers=key("minji")).status_code == 404  # not 403: ids do not leak
    assert client.get("/api/memory/facts?user=origin", headers=key("minji")).status_code == 403
    nobody = client.get("/api/memory/facts")
    assert nobody.status_code == 401 and "key" in nobody.json()["error"]["message"]
    assert client.delete("/api/memory/facts/jiwoo?user=minji", headers=key("minji")).status_code == 404
    assert client.get("/api/memory/facts/jiwoo", headers=OWNER).json()["about"] == "Jiwoo"


def test_a_user_corrects_and_deletes_their_own_fact(knowing):
    client, _, store = knowing
    fixed = client.patch("/api/memory/facts/busan?user=minji", json={"text": "Minji lives in Haeundae, Busan"}, headers=key("minji"))
    assert fixed.status_code == 200 and fixed.json()["text"] == "Minji lives in Haeundae, Busan"
    assert client.patch("/api/memory/facts/busan?user=minji", json={}, headers=key("minji")).status_code == 422
    assert client.patch("/api/memory/facts/busan?user=minji", json={"kind": "mood"}, headers=key("minji")).json()["error"]["code"] == "facts_refused"
    gone = client.delete("/api/memory/facts/busan?user=minji", headers=key("minji")).json()
    assert gone["deleted"][0]["id"] == "busan" and "busan" not in {f.id for f in store.live()}
    page = client.get("/api/memory/facts?limit=100000", headers=OWNER).json()
    assert page["limit"] == 500 and "500 shown" in page["note"]
    assert client.get("/api/memory/facts?offset=99", headers=OWNER).json()["facts"] == []


def test_the_owner_imports_over_http_whole_or_not_at_all(knowing):
    client, _, store = knowing
    good = fact("Minji plays the cello", kind="preference")
    bad = client.post("/api/memory/facts/import", content=f"{good}\n{{oops\n", headers=OWNER)
    assert bad.status_code == 422 and "line 2: not JSON" in bad.json()["error"]["message"] and len(store.live()) == 4
    assert client.post("/api/memory/facts/import", content=good, headers=key("minji")).status_code == 403
    assert client.post("/api/memory/facts/import", content=good).status_code == 401
    done = client.post("/api/memory/facts/import", content=f"{good}\n\n{good}\n", headers=OWNER).json()
    assert done["added"] == 1 and len(store.live()) == 5
    assert client.post("/api/memory/facts/import", content=good, headers=OWNER).json()["added"] == 0


def test_a_fact_is_found_by_its_meaning_and_embedded_before_the_turns(home, tmp_path):
    from echo.memory.dense import E5Embedder

    memory, store = home
    import_facts(store, [fact("Minji wants replies that are brief and to the point", start=5, end=6, kind="preference")], memory, "UTC")
    replay(memory, tmp_path / "index")
    search = MemorySearch(tmp_path / "index", E5Embedder(threads=1), "UTC", facts=store, memory_dir=memory)
    assert search.embed_pending(facts_only=True) == 1 and search.embedded() == 0  # the fact first, the turns later
    found = search.search("how does she like to be answered", 3, user="minji", mode="dense")
    assert found[0].fact is not None and (found[0].path, found[0].line_start) == ("day0508/minji/part1.txt", 5)


def test_a_cite_through_a_link_is_refused(home, tmp_path):
    memory, store = home
    outside = write(tmp_path / "elsewhere", "part1.txt", "나의 말:\nnot the owner's memory\n")
    (memory / "day0601").mkdir()
    (memory / "day0601" / "minji").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(FactError, match="day0601/minji/part1.txt is not in the memory folder"):
        import_facts(store, [fact("x", path="day0601/minji/part1.txt")], memory, "UTC")
