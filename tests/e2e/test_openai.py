"""The real openai package and a real streamed /api/ask against the running Echo."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.e2e.harness import sse_events


@pytest.fixture
def client(echo):
    return openai.OpenAI(base_url=f"{echo.url}/v1", api_key=echo.token, timeout=180)


def test_the_openai_client_gets_whole_and_streamed_answers_from_echo_and_a_circuit(client):
    assert {"echo", "echo-emotion", "echo-creation", "echo-self"} <= {m.id for m in client.models.list()}
    whole = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "안녕, 오늘 기분 어때?"}])
    assert whole.choices[0].message.content and whole.usage.completion_tokens > 0
    emotion = client.chat.completions.create(model="echo-emotion", messages=[{"role": "user", "content": "I lost my keys."}], max_tokens=16)
    assert emotion.choices[0].message.content and emotion.usage.completion_tokens <= 16
    for model in ("echo", "echo-emotion"):
        pieces = [
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell me about rain."}], stream=True, max_tokens=16)
            if c.choices
        ]
        assert len([p for p in pieces if p]) > 1 and "".join(pieces).strip()  # token by token, not one block


def test_the_openai_client_gets_a_clear_error_for_an_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "echo-emotion" in str(raised.value) and raised.value.status_code == 404


def test_a_streamed_ask_over_http_shows_the_circuits_tokens_as_they_come(echo):
    with httpx.stream("POST", f"{echo.url}/api/ask", json={"prompt": "What is a good breakfast?", "stream": True}, timeout=180) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response))
    kinds = [n for n, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("circuit_start") == 3
    assert sum(1 for n, e in events if n == "token") > 3
    assert events[-1][1]["reply"] and events[-1][1]["saved"] is True


def test_the_cli_asks_a_running_echo_and_streams_the_reply(echo):
    from click.testing import CliRunner

    from echo_cli import main

    result = CliRunner().invoke(main, ["ask", "What should I cook tonight?", "--url", echo.url])
    assert result.exit_code == 0 and result.output.strip(), result.output
    as_json = CliRunner().invoke(main, ["ask", "너는 누구야?", "--url", echo.url, "--json"])
    assert json.loads(as_json.output)["route"] == "identity"
    refused = CliRunner().invoke(main, ["ask", "   ", "--url", echo.url])
    assert refused.exit_code == 1 and "prompt is empty" in refused.output and "Traceback" not in refused.output
