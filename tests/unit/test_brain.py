"""The brain's logic with fake circuits and no Ray: routing, merging, degrading, gating."""

import asyncio
import functools
import json

import pytest

from echo.brain import users
from echo.brain.brain import AskError
from tests import fakes
from tests.fakes import FakeCircuit, FakeMemory, hit

TOKEN = "origin-token-for-tests"


@pytest.fixture
def manifest(tmp_path):
    folder = tmp_path / "manifest"
    folder.mkdir()
    (folder / "00_echo.txt").write_text("나는 에코다. I am Echo.\n\nMore about me.", encoding="utf-8")
    return folder


# A Brain over fakes with this module's token; its identity is what the manifest fixture wrote.
make_brain = functools.partial(fakes.make_brain, token=TOKEN, manifest=None)


def ask(brain, prompt, **kwargs):
    return asyncio.run(brain.ask(prompt, **kwargs))


def test_plain_prompt_asks_all_three_circuits_and_concats_self_emotion_creation(tmp_path, manifest):
    memory = FakeMemory()
    brain = make_brain(tmp_path, memory=memory)
    result = ask(brain, "오늘 날씨 어때?")
    assert result["route"] == "circuits"
    assert set(result["circuits"]) == {"emotion", "creation", "self"}
    assert result["reply"] == "self says hi\n\nemotion says hi\n\ncreation says hi"
    assert result["merge"] == "concat" and result["degraded"] is False
    assert result["circuits"]["emotion"]["completion_tokens"] == 3
    assert memory.saved == [("guest", "오늘 날씨 어때?", result["reply"])]
    assert result["saved"] is True and result["memory"]["path"] == "day0101/guest/part1.txt"


def test_each_circuit_gets_its_role_prompt_and_the_manifest(tmp_path, manifest):
    circuits = {n: FakeCircuit(n) for n in ("emotion", "creation", "self")}
    ask(make_brain(tmp_path, circuits=circuits), "hello there")
    for name, circuit in circuits.items():
        system = circuit.calls[0][0][0]["content"]
        assert f"You are the {name} circuit." in system and "나는 에코다" in system


def test_synthesize_has_the_self_circuit_rewrite_the_three_drafts(tmp_path, manifest):
    circuits = {n: FakeCircuit(n) for n in ("emotion", "creation")}
    circuits["self"] = FakeCircuit("self")
    brain = make_brain(tmp_path, circuits=circuits, merge="synthesize")
    result = ask(brain, "tell me something")
    assert result["merge"] == "synthesize"
    assert len(circuits["self"].calls) == 2  # its draft, then the synthesis
    synthesis_prompt = circuits["self"].calls[1][0][-1]["content"]
    for draft in ("emotion says hi", "creation says hi", "self says hi"):
        assert draft in synthesis_prompt
    assert "synthesis" in result


def test_failed_synthesis_falls_back_to_concat_marked_degraded(tmp_path, manifest):
    class FailsSecondCall(FakeCircuit):
        async def generate(self, messages, **options):
            if self.calls:
                self.calls.append((messages, options))
                raise RuntimeError("out of memory")
            return await super().generate(messages, **options)

    circuits = {"emotion": FakeCircuit("emotion"), "creation": FakeCircuit("creation"), "self": FailsSecondCall("self")}
    result = ask(make_brain(tmp_path, circuits=circuits, merge="synthesize"), "tell me something")
    assert result["merge"] == "concat" and result["degraded"] is True
    assert "out of memory" in result["failed"]["synthesize"]
    assert result["reply"] == "self says hi\n\nemotion says hi\n\ncreation says hi"


def test_a_failing_circuit_leaves_the_others_standing(tmp_path, manifest):
    circuits = {n: FakeCircuit(n) for n in ("emotion", "self")}
    circuits["creation"] = FakeCircuit("creation", error=RuntimeError("model crashed"))
    result = ask(make_brain(tmp_path, circuits=circuits), "hello there")
    assert result["degraded"] is True
    assert result["failed"] == {"creation": "RuntimeError: model crashed"}
    assert result["reply"] == "self says hi\n\nemotion says hi"
    assert result["saved"] is True


def test_a_circuit_past_its_timeout_does_not_hold_the_reply(tmp_path, manifest):
    circuits = {n: FakeCircuit(n) for n in ("emotion", "self")}
    circuits["creation"] = FakeCircuit("creation", delay=30)
    brain = make_brain(tmp_path, circuits=circuits)
    brain.config = brain.config.model_copy(update={"circuits": {n: c.model_copy(update={"timeout_s": 0.2}) for n, c in brain.config.circuits.items()}})
    result = asyncio.run(asyncio.wait_for(brain.ask("hello there"), 5))
    assert result["degraded"] is True
    assert "within 0.2s" in result["failed"]["creation"]
    assert result["reply"] == "self says hi\n\nemotion says hi"


def test_when_every_circuit_fails_the_answer_is_503_with_each_reason(tmp_path, manifest):
    circuits = {n: FakeCircuit(n, error=RuntimeError(f"{n} down")) for n in ("emotion", "creation", "self")}
    memory = FakeMemory()
    with pytest.raises(AskError) as caught:
        ask(make_brain(tmp_path, circuits=circuits, memory=memory), "hello there")
    assert caught.value.status == 503 and caught.value.code == "all_circuits_failed"
    assert set(caught.value.body()["failed"]) == {"emotion", "creation", "self"}
    assert memory.saved == []


def test_an_empty_answer_counts_as_a_failure(tmp_path, manifest):
    circuits = {n: FakeCircuit(n) for n in ("emotion", "self")}
    circuits["creation"] = FakeCircuit("creation", text="")
    result = ask(make_brain(tmp_path, circuits=circuits), "hello there")
    assert result["failed"] == {"creation": "answered with empty text"}


@pytest.mark.parametrize("prompt", ["너는 누구야?", "너 누구야", "who are you?", "Tell me about your self", "너의 자아는 뭐야"])
def test_identity_questions_answer_from_the_manifest_and_the_self_circuit(tmp_path, manifest, prompt):
    circuits = {n: FakeCircuit(n) for n in ("emotion", "creation", "self")}
    result = ask(make_brain(tmp_path, circuits=circuits), prompt)
    assert result["route"] == "identity"
    assert result["reply"].startswith("나는 에코다. I am Echo.")
    assert result["reply"].endswith("self says hi")
    assert not circuits["emotion"].calls and not circuits["creation"].calls
    assert result["identity"]["files"] == ["00_echo.txt"]


def test_identity_comes_before_create(tmp_path, manifest):
    result = ask(make_brain(tmp_path), "너는 누구야? 그리고 앱 만들어줘")
    assert result["route"] == "identity"


def test_identity_survives_a_failed_self_circuit(tmp_path, manifest):
    circuits = {n: FakeCircuit(n) for n in ("emotion", "creation")}
    circuits["self"] = FakeCircuit("self", error=RuntimeError("down"))
    result = ask(make_brain(tmp_path, circuits=circuits), "who are you")
    assert result["reply"] == "나는 에코다. I am Echo." and result["degraded"] is True


PROJECT = json.dumps({"name": "Todo App", "description": "A list of things.", "files": [{"path": "src/app.py", "content": "print('hi')\n"}]})


def test_create_project_from_the_origin_writes_the_files(tmp_path, manifest):
    circuits = {n: FakeCircuit(n) for n in ("emotion", "self")}
    circuits["creation"] = FakeCircuit("creation", text=PROJECT)
    result = ask(make_brain(tmp_path, circuits=circuits), "todo 앱 만들어줘", authorization=f"Bearer {TOKEN}")
    assert result["route"] == "create_project" and result["user"] == "origin"
    assert result["project"]["files"] == ["README.md", "src/app.py"]
    root = tmp_path / "origin" / "projects" / "todo-app"
    assert (root / "src" / "app.py").read_text() == "print('hi')\n"
    assert "README.md\nsrc/\n    app.py" in (root / "README.md").read_text(encoding="utf-8")
    options = circuits["creation"].calls[0][1]
    assert options["response_format"]["type"] == "json_object" and "schema" in options["response_format"]
    assert options["greedy"] is True


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Bearer {TOKEN[:-1]}X", f"Bearer {TOKEN} ", f"Bearer  {TOKEN}", TOKEN])
def test_create_project_without_the_exact_token_is_refused_politely(tmp_path, manifest, authorization):
    circuits = {n: FakeCircuit(n) for n in ("emotion", "self")}
    circuits["creation"] = FakeCircuit("creation", text=PROJECT)
    with pytest.raises(AskError) as caught:
        ask(make_brain(tmp_path, circuits=circuits), "make me a todo app", authorization=authorization)
    assert caught.value.status == 403 and caught.value.code == "origin_only"
    assert "owner" in caught.value.body()["reply"]
    assert not circuits["creation"].calls
    assert not (tmp_path / "origin").exists()


def test_create_project_is_disabled_without_a_configured_token(tmp_path, manifest):
    with pytest.raises(AskError) as caught:
        ask(make_brain(tmp_path, token=None), "make me a todo app", authorization="Bearer anything")
    assert caught.value.code == "privileged_disabled" and "ECHO_ORIGIN_TOKEN" in caught.value.message


def test_unsafe_project_from_the_model_is_refused_and_nothing_written(tmp_path, manifest):
    bad = json.dumps({"name": "x", "description": "", "files": [{"path": "../escape.txt", "content": "x"}]})
    circuits = {n: FakeCircuit(n) for n in ("emotion", "self")}
    circuits["creation"] = FakeCircuit("creation", text=bad)
    with pytest.raises(AskError) as caught:
        ask(make_brain(tmp_path, circuits=circuits), "make me a thing", authorization=f"Bearer {TOKEN}")
    assert caught.value.status == 422 and "'..'" in caught.value.message
    assert not list(tmp_path.rglob("escape.txt"))
    assert not (tmp_path / "origin").exists()  # checked before anything touches the disk


def test_the_user_name_origin_is_reserved_for_the_token_holder(tmp_path, manifest):
    with pytest.raises(AskError) as caught:
        ask(make_brain(tmp_path), "hello", user="origin")
    assert caught.value.status == 403
    assert ask(make_brain(tmp_path), "hello", user="origin", authorization=f"Bearer {TOKEN}")["user"] == "origin"


def test_too_long_and_empty_prompts_are_refused_before_any_circuit_runs(tmp_path, manifest):
    circuits = {n: FakeCircuit(n) for n in ("emotion", "creation", "self")}
    memory = FakeMemory()
    brain = make_brain(tmp_path, circuits=circuits, memory=memory, max_prompt_chars=10)
    for prompt, status in [("x" * 11, 413), ("   ", 422), ("", 422)]:
        with pytest.raises(AskError) as caught:
            ask(brain, prompt)
        assert caught.value.status == status
    assert not any(c.calls for c in circuits.values()) and memory.saved == []


def test_a_failed_save_still_returns_the_reply_marked_unsaved(tmp_path, manifest):
    result = ask(make_brain(tmp_path, memory=FakeMemory(error=OSError(28, "No space left on device"))), "hello")
    assert result["reply"] and result["saved"] is False
    assert "No space left" in result["unsaved_reason"]


def test_health_reports_each_circuit_and_the_manifest(tmp_path, manifest):
    class Loading(FakeCircuit):
        async def state(self):
            return {"state": "loading", "reason": None}

    circuits = {"emotion": FakeCircuit("emotion"), "creation": Loading("creation"), "self": FakeCircuit("self")}
    health = asyncio.run(make_brain(tmp_path, circuits=circuits).health())
    assert health["status"] == "loading" and health["loading"] == ["creation"]
    assert health["circuits"]["emotion"]["state"] == "ready"
    assert health["manifest"] == {"files": ["00_echo.txt"], "error": None}
    assert health["origin_token_configured"] is True
    assert health["memory"]["state"] == "ready" and health["memory"]["repaired_at_start"] == []
    assert TOKEN not in json.dumps(health)


def test_health_says_when_the_memory_writer_cannot_be_reached(tmp_path, manifest):
    health = asyncio.run(make_brain(tmp_path, memory=FakeMemory(error=ConnectionError("actor died"))).health())
    assert health["memory"] == {"state": "unreachable", "reason": "ConnectionError: actor died"}


MEMORIES = [
    hit("작년 봄에 고양이를 입양했고 이름은 모카야", 0.03),
    hit("I am learning to surf in Yangyang", 0.02, "day0902/minji/part1.txt", 5),
]


def test_the_origins_memories_go_into_every_circuit_prompt_and_come_back_cited(tmp_path, manifest):
    memory = FakeMemory(memories=MEMORIES)
    circuits = {n: FakeCircuit(n) for n in ("emotion", "creation", "self")}
    brain = make_brain(tmp_path, circuits=circuits, memory=memory)
    body = ask(brain, "내 고양이 이름이 뭐였지?", authorization=f"Bearer {TOKEN}")
    assert memory.searches == [("내 고양이 이름이 뭐였지?", 3, None, "hybrid")]  # the origin: every user
    assert [m["path"] for m in body["memories"]] == ["day0901/origin/part1.txt", "day0902/minji/part1.txt"]
    assert body["memories"][0]["line_start"] == 1 and body["memories"][0]["speaker"] == "user"
    for circuit in circuits.values():
        question = circuit.calls[0][0][-1]["content"]
        assert "(day0901/origin/part1.txt:1-2): 작년 봄에 고양이를 입양했고 이름은 모카야" in question
        assert question.endswith("Question: 내 고양이 이름이 뭐였지?")
        assert "모카" not in circuit.calls[0][0][0]["content"]  # the system prompt stays the same


def test_a_user_with_their_key_recalls_only_their_own_memories(tmp_path, manifest):
    memory = FakeMemory(memories=MEMORIES)
    body = ask(make_brain(tmp_path, memory=memory), "what do I do at the beach?", user="minji", authorization=f"Bearer {users.user_key(TOKEN, 'minji')}")
    assert memory.searches[0][2] == "minji"
    assert [m["user"] for m in body["memories"]] == ["minji"]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-a-key", f"Bearer {users.user_key(TOKEN, 'sora')}", f"Bearer {users.user_key('another-token', 'minji')}"]
)
def test_a_user_name_without_its_key_is_refused_and_nothing_is_saved(tmp_path, manifest, authorization):
    memory = FakeMemory(memories=MEMORIES)
    brain = make_brain(tmp_path, memory=memory)
    with pytest.raises(AskError) as refused:
        ask(brain, "what do I do at the beach?", user="minji", authorization=authorization)
    assert refused.value.status == 401 and "echo-server user-key minji" in refused.value.message
    with pytest.raises(AskError):
        asyncio.run(collect(brain.stream_ask("what do I do at the beach?", user="minji", authorization=authorization)))
    assert memory.saved == [] and memory.searches == []  # nobody writes in another's name


async def collect(events):
    return [event async for event in events]


def test_recall_is_bounded_by_the_budget_and_can_be_off(tmp_path, manifest):
    memory = FakeMemory(memories=MEMORIES)
    body = ask(make_brain(tmp_path, memory=memory, recall={"budget_tokens": 40}), "고양이", authorization=f"Bearer {TOKEN}")
    assert [m["user"] for m in body["memories"]] == ["origin"]
    body = ask(make_brain(tmp_path, memory=memory, recall={"k": 0}), "고양이", authorization=f"Bearer {TOKEN}")
    assert body["memories"] == [] and len(memory.searches) == 1


def test_a_failing_memory_search_still_gets_an_answer(tmp_path, manifest):
    class Broken(FakeMemory):
        async def search(self, *args):
            raise ConnectionError("memory actor restarting")

    body = ask(make_brain(tmp_path, memory=Broken()), "hello")
    assert body["reply"] and body["memories"] == [] and body["saved"] is True
