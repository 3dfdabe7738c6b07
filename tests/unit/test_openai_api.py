"""Streaming /api/ask and the OpenAI-compatible endpoints over fake circuits."""

from __future__ import annotations

import json

import pytest

from echo.brain.merge import ConcatStream
from tests.fakes import CIRCUITS, FakeCircuit, FakeMemory, hit

TOKEN = "openai-test-token"


@pytest.fixture
def setup(make_client):
    circuits = {
        "emotion": FakeCircuit("emotion", "I feel you", delay=0.02),
        "creation": FakeCircuit("creation", "Here is a plan", delay=0.01),
        "self": FakeCircuit("self", "I am here", delay=0.04),
    }
    memory = FakeMemory(memories=[hit("모카는 고양이", 0.1)])
    return make_client(token=TOKEN, circuits=circuits, memory=memory)


def sse(text: str) -> list[dict]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append({"event": lines["event"], **json.loads(lines["data"])})
    return events


def test_a_streamed_ask_shows_each_circuit_its_tokens_and_the_reply(setup):
    client, memory = setup
    response = client.post("/api/ask", json={"prompt": "hello", "stream": True}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse(response.text)
    assert events[0]["event"] == "start" and events[0]["memories"][0]["path"] == "day0901/origin/part1.txt"
    assert {e["circuit"] for e in events if e["event"] == "circuit_start"} == {"emotion", "creation", "self"}
    tokens = "".join(e["text"] for e in events if e["event"] == "token" and e["circuit"] == "emotion")
    assert tokens == "I feel you"
    done = events[-1]
    assert done["event"] == "done" and done["reply"] == "I am here\n\nI feel you\n\nHere is a plan" and done["saved"] is True
    assert memory.saved == [("origin", "hello", done["reply"])]


def test_a_streamed_ask_with_bad_input_is_a_plain_error_and_all_failing_is_an_error_event(setup, make_client):
    client, _ = setup
    assert client.post("/api/ask", json={"prompt": " ", "stream": True}).json()["error"]["code"] == "empty_prompt"
    broken, _ = make_client(token=TOKEN, circuits={n: FakeCircuit(n, error=RuntimeError("model gone")) for n in CIRCUITS})
    events = sse(broken.post("/api/ask", json={"prompt": "hi", "stream": True}).text)
    assert [e["event"] for e in events if e["event"] == "circuit_failed"] == ["circuit_failed"] * 3
    assert events[-1]["event"] == "error" and events[-1]["error"]["code"] == "all_circuits_failed"
    assert events[-1]["retry_after"] == 1  # a stream's headers are gone: its Retry-After is in the event


def test_the_concat_order_sends_self_first_and_holds_the_others_until_their_turn():
    order = ConcatStream()
    assert order.token("emotion", "E1") == ""
    assert order.token("self", "S1") == "S1"
    assert order.finish("emotion", True) == ""
    assert order.finish("creation", False) == ""  # failed: left out
    assert order.token("self", " S2") == " S2"
    assert order.finish("self", True) == "\n\nE1"


def test_models_and_whole_completions_in_the_openai_shape(setup):
    client, memory = setup
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["echo", "echo-emotion", "echo-creation", "echo-self"]
    body = client.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "hello"}]}).json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"].startswith("I am here")
    assert body["usage"] == {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}
    assert body["echo"]["route"] == "circuits" and memory.saved[-1][0] == "guest"
    circuit = client.post("/v1/chat/completions", json={"model": "echo-emotion", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}).json()
    assert circuit["choices"][0]["message"]["content"] == "I feel you" and circuit["model"] == "echo-emotion"


def test_streamed_completions_end_with_done_and_carry_usage(setup):
    client, _ = setup
    for model, text in (("echo", "I am here\n\nI feel you\n\nHere is a plan"), ("echo-self", "I am here")):
        response = client.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True})
        lines = [line[len("data: ") :] for line in response.text.split("\n\n") if line.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        chunks = [json.loads(line) for line in lines[:-1]]
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == text
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] > 0


def test_openai_errors_have_the_openai_shape(setup):
    client, _ = setup
    unknown = client.post("/v1/chat/completions", json={"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found" and "echo-emotion" in unknown.json()["error"]["message"]
    missing = client.post("/v1/chat/completions", json={"model": "echo"})
    assert missing.status_code == 400 and missing.json()["error"]["type"] == "invalid_request_error" and missing.json()["error"]["param"] == "messages"
    empty = client.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": " "}]})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_prompt"
