"""Echo holds a conversation, end to end with Ray, Serve and the real SmolLM2: what was just
said comes back into the prompt, read back from memory/, for whoever holds the conversation."""

from __future__ import annotations

import httpx
import openai
import pytest

from echo.memory.parsing import parse_part
from tests.e2e.harness import Echo, wait_for

pytestmark = pytest.mark.e2e


def prompt_tokens(body: dict) -> int:
    return sum(c["prompt_tokens"] for c in body["circuits"].values())


def saved_lines(echo: Echo, memory: dict) -> list[str]:
    lines = (echo.home / "memory" / memory["path"]).read_text(encoding="utf-8").split("\n")
    return lines[memory["line_start"] - 1 : memory["line_end"]]


def test_the_second_ask_of_a_conversation_sees_the_first_and_cites_its_saved_lines(echo: Echo):
    first = echo.ask({"prompt": "내 고양이 이름은 나비야", "user": "talker"}).json()
    second = echo.ask({"prompt": "내 고양이 이름이 뭐였지?", "user": "talker", "conversation": first["conversation"]}).json()
    assert second["conversation"] == first["conversation"]
    (cited,) = second["context"]
    assert (cited["path"], cited["line_start"], cited["line_end"]) == (first["memory"]["path"], first["memory"]["line_start"], first["memory"]["line_end"])
    asked, answered = parse_part(saved_lines(echo, cited))
    assert asked.text == "내 고양이 이름은 나비야" and cited["reply"] == answered.text  # the reply as saved (cleaned: lines trimmed)
    assert answered.text.split() == first["reply"].split()
    assert cited["at"][:4].isdigit() and "T" in cited["at"]  # ISO 8601, when it was said
    assert prompt_tokens(second) > prompt_tokens(first) + 3 * 10  # the first exchange rode along, in each of 3 circuits
    fresh = echo.ask({"prompt": "내 고양이 이름이 뭐였지?", "user": "talker"}).json()
    assert fresh["context"] == [] and fresh["conversation"] != first["conversation"]


def test_guests_never_see_each_others_conversation(instant: Echo):
    first = instant.ask({"prompt": "my locker code is 4821"}).json()
    assert first["user"] == "guest" and len(first["conversation"]) >= 22
    other = instant.ask({"prompt": "what is the locker code?"}).json()
    guessed = instant.ask({"prompt": "what is the locker code?", "conversation": "A" * 24}).json()
    assert other["context"] == [] and guessed["context"] == [] and guessed["conversation"] != "A" * 24
    again = instant.ask({"prompt": "remind me of the code", "conversation": first["conversation"]}).json()
    assert [c["prompt"] for c in again["context"]] == ["my locker code is 4821"]  # only with the id Echo handed out


def test_a_user_name_without_its_key_is_refused_and_nothing_is_written(instant: Echo):
    refused = httpx.post(f"{instant.url}/api/ask", json={"prompt": "hello", "user": "impostor"}, timeout=30)
    assert refused.status_code == 401 and "echo-server user-key impostor" in refused.json()["error"]["message"]
    assert not list((instant.home / "memory").glob("day*/impostor"))


def test_a_conversation_survives_a_restart_of_the_memory_actor(instant: Echo):
    import ray

    from actors.memory_actor import NAMESPACE, actor_name

    first = instant.ask({"prompt": "I am planning a trip to Jeju"}).json()
    ray.kill(ray.get_actor(actor_name(instant.home / "memory"), namespace=NAMESPACE), no_restart=False)
    # While the actor restarts an answer may come unsaved or without its past; once it is back,
    # the conversation is read back from the files.
    after = wait_for(
        lambda: (r := instant.ask({"prompt": "where am I going?", "conversation": first["conversation"]}, timeout=30).json()).get("context") and r,
        timeout=60,
        what="an answer with the conversation's context after the MemoryActor restarted",
    )
    assert [c["prompt"] for c in after["context"]] == ["I am planning a trip to Jeju"]  # read back from the files


def test_an_openai_client_with_a_history_gets_an_answer_whose_context_is_that_history(echo: Echo):
    client = openai.OpenAI(base_url=f"{echo.url}/v1", api_key=echo.token, timeout=180)
    history = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "My sister lives in Busan."},
        {"role": "assistant", "content": "Busan is a lovely city by the sea."},
    ]
    answer = client.chat.completions.create(model="echo", messages=[*history, {"role": "user", "content": "Where does my sister live?"}])
    details = answer.model_extra["echo"]
    assert answer.choices[0].message.content and details["context"] == history


def test_a_user_lists_their_conversations_reads_one_back_after_a_restart_and_goes_on_with_it(instant: Echo):
    import ray

    from actors.memory_actor import NAMESPACE, actor_name

    def get(path: str, user: str | None = "lists", token: str | None = None, **params) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or instant.key('lists')}"} if token != "" else {}
        return httpx.get(f"{instant.url}{path}", params={**({"user": user} if user else {}), **params}, headers=headers, timeout=30)

    trip = instant.ask({"prompt": "I am planning a trip to Jeju", "user": "lists"}).json()
    instant.ask({"prompt": "Which ferry should I take?", "user": "lists", "conversation": trip["conversation"]})
    bread = instant.ask({"prompt": "How do I bake bread?", "user": "lists"}).json()
    listed = get("/api/conversations").json()
    assert listed["total"] == 2 and [c["title"] for c in listed["conversations"]] == ["How do I bake bread?", "I am planning a trip to Jeju"]
    assert [c["exchanges"] for c in listed["conversations"]] == [1, 2]
    assert get("/api/conversations", user=None, token="").status_code == 401  # a guest cannot list
    assert get("/api/conversations", user="someone", token=instant.key("someone")).json()["total"] == 0  # another's list holds none of them
    key = listed["conversations"][1]["id"]
    assert get(f"/api/conversations/{key}", user="someone", token=instant.key("someone")).status_code == 404  # another's: not found
    assert get(f"/api/conversations/{bread['conversation']}", user=None, token="").status_code == 404  # a guest's id list holds no one else's

    ray.kill(ray.get_actor(actor_name(instant.home / "memory"), namespace=NAMESPACE), no_restart=False)
    back = wait_for(lambda: (r := get(f"/api/conversations/{key}")).status_code == 200 and r, timeout=60, what="the conversation read back after a restart")
    exchanges = back.json()["exchanges"]
    assert [e["prompt"] for e in exchanges] == ["I am planning a trip to Jeju", "Which ferry should I take?"]
    first_saved = (instant.home / "memory" / exchanges[0]["path"]).read_text(encoding="utf-8").split("\n")
    asked, _ = parse_part(first_saved[exchanges[0]["line_start"] - 1 : exchanges[0]["line_end"]])
    assert asked.text == "I am planning a trip to Jeju"  # cites where it is written
    on = instant.ask({"prompt": "And where should I stay?", "user": "lists", "conversation": key}).json()
    assert on["conversation"] == key and [c["prompt"] for c in on["context"]] == ["I am planning a trip to Jeju", "Which ferry should I take?"]
    assert get(f"/api/conversations/{key}").json()["conversation"]["exchanges"] == 3
