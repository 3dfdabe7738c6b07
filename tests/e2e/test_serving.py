"""Echo end to end: real Ray, real Serve, real SmolLM2 in all three circuits, real HTTP."""

from __future__ import annotations

import httpx
import pytest
from ray import serve

from tests.e2e.harness import Echo, wait_ready, write_config

pytestmark = pytest.mark.e2e


def memory_text(echo: Echo, user: str) -> str:
    parts = sorted((echo.home / "memory").glob(f"day*/{user}/part*.txt"))
    return "".join(p.read_bytes().decode("utf-8", "replace") for p in parts)  # the sample memory holds a binary part


def test_root_answers_get_and_head(echo):
    assert httpx.get(f"{echo.url}/", timeout=10).status_code == 200
    assert httpx.head(f"{echo.url}/", timeout=10).status_code == 200


def test_health_shows_every_circuit_ready_without_revealing_the_token(echo):
    response = httpx.get(f"{echo.url}/health", timeout=10)
    health = response.json()
    assert health["status"] == "ready"
    assert {n: c["state"] for n, c in health["circuits"].items()} == {"emotion": "ready", "creation": "ready", "self": "ready"}
    assert health["manifest"]["files"] == ["00_echo.txt", "10_origin.txt", "20_principles.txt"]
    assert health["origin_token_configured"] is True and echo.token not in response.text
    repaired = health["memory"]["repaired_at_start"]
    assert len(repaired) == 1 and repaired[0].startswith("day0101/old/part1.txt: a cut-off last line")
    assert (echo.home / "memory" / "day0101" / "old" / "part1.txt").read_text(encoding="utf-8") == "나의 말:\n끝까지 쓰인 줄\n"
    assert (echo.home / "memory_quarantine" / "day0101" / "old" / "part1.txt").read_bytes() == "잘린".encode()[:4] + b"\n"


@pytest.mark.parametrize(
    "prompt, user",
    [("오늘 하루 어땠는지 들어줄래? 좀 피곤했어.", "minji"), ("What is a good way to start learning the piano?", "alex")],
)
def test_a_prompt_is_answered_by_all_three_circuits_merged_and_saved(echo, prompt, user):
    response = echo.ask({"prompt": prompt, "user": user})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["route"] == "circuits" and body["merge"] == "concat"
    assert set(body["circuits"]) == {"emotion", "creation", "self"} and body["failed"] == {}
    for answer in body["circuits"].values():
        assert answer["text"] and answer["completion_tokens"] > 0 and answer["latency_ms"] > 0
    assert body["reply"].strip() and body["reply"].startswith(body["circuits"]["self"]["text"])
    saved = memory_text(echo, user)
    assert body["saved"] is True
    assert f"나의 말:\n{prompt}\n에코의 말:\n" in saved and body["circuits"]["creation"]["text"] in saved
    assert body["memory"]["path"].endswith(f"/{user}/part1.txt")
    path = body["memory"]["path"]
    assert (echo.home / "memory_backup" / path).read_bytes() == (echo.home / "memory" / path).read_bytes()


def test_an_identity_question_is_answered_from_the_manifest(echo):
    body = echo.ask({"prompt": "너는 누구야?"}).json()
    assert body["route"] == "identity"
    assert body["reply"].startswith("나는 에코(Echo)다.")
    assert list(body["circuits"]) == ["self"]
    assert "너는 누구야?" in memory_text(echo, "guest")


def test_create_project_needs_the_origin_token(echo):
    refused = echo.ask({"prompt": "파이썬으로 할 일 관리 앱을 만들어줘"})
    assert refused.status_code == 403 and "owner" in refused.json()["reply"]
    wrong = echo.ask({"prompt": "파이썬으로 할 일 관리 앱을 만들어줘"}, token=echo.token + "x")
    assert wrong.status_code == 403
    assert not (echo.home / "origin").exists()

    for _ in range(3):  # a small model may repeat a file path: Echo refuses that (422) and the owner asks again
        created = echo.ask({"prompt": "make me a todo app in python"}, token=echo.token)
        body = created.json()
        if created.status_code != 422:
            break
        assert body["error"]["code"] == "project_refused"
    assert created.status_code == 200, body
    assert body["route"] == "create_project" and body["user"] == "origin"
    root = echo.home / "origin" / "projects" / body["project"]["slug"]
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == body["project"]["files"]
    assert "README.md" in body["project"]["files"]
    assert echo.token not in memory_text(echo, "origin") and echo.token not in created.text


def test_bad_input_over_http_is_a_clear_4xx(echo):
    assert httpx.post(f"{echo.url}/api/ask", content=b"{oops", timeout=10).json()["error"]["code"] == "invalid_json"
    too_long = echo.ask({"prompt": "가" * 8001})
    assert too_long.status_code == 413 and "8000" in too_long.json()["error"]["message"]


def test_a_circuit_streams_token_by_token_through_serve(echo):
    handle = serve.get_deployment_handle("EmotionCircuit", app_name="echo")
    messages = [{"role": "user", "content": "Name three fruits."}]
    events = list(handle.options(stream=True).stream.remote(messages, max_tokens=16, greedy=True))
    tokens = [e["token"] for e in events if "token" in e]
    done = events[-1]["done"]
    assert len(tokens) > 3 and "".join(tokens).strip() == done.text
    assert done.completion_tokens > 0 and done.finish_reason in ("stop", "length")
    whole = handle.generate.remote(messages, max_tokens=16, greedy=True).result()
    assert whole.text and 0 < whole.completion_tokens <= 17


def test_a_circuit_that_cannot_load_is_reported_and_the_others_synthesize_a_reply(echo, tmp_path):
    """A second app: creation's model is broken, emotion and self are real, merge is synthesize."""
    import yaml

    from serve_app import build_app

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)  # the right magic, then nothing a model needs
    (tmp_path / "manifest").mkdir()
    (tmp_path / "manifest" / "echo.txt").write_text("I am the broken test Echo.", encoding="utf-8")
    config = write_config(tmp_path, port=int(echo.url.rsplit(":", 1)[1]), merge="synthesize")
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["circuits"]["creation"]["model"] = str(broken)
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    serve.run(build_app({"config": str(config)}), name="broken", route_prefix="/broken")
    try:
        health = wait_ready(f"{echo.url}/broken")
        creation = health["circuits"]["creation"]
        assert creation["state"] == "failed" and "broken.gguf" in creation["reason"]
        assert health["status"] == "degraded" and health["circuits"]["self"]["state"] == "ready"
        response = httpx.post(f"{echo.url}/broken/api/ask", json={"prompt": "What makes a good friend?"}, timeout=180)
        body = response.json()
        assert response.status_code == 200 and body["degraded"] is True
        assert "could not load its model" in body["failed"]["creation"]
        assert set(body["circuits"]) == {"emotion", "self"}
        assert body["merge"] == "synthesize" and body["synthesis"]["completion_tokens"] > 0
        assert body["reply"] == body["synthesis"]["text"] != ""
    finally:
        serve.delete("broken")


@pytest.mark.parametrize("megabytes", [10, 30, 100])
def test_a_huge_body_from_a_real_client_gets_its_413_and_echo_stays_healthy(echo, megabytes):
    import json
    import urllib.error
    import urllib.request

    body = json.dumps({"prompt": "x" * (megabytes * 1024 * 1024)}).encode()
    request = urllib.request.Request(f"{echo.url}/api/ask", data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:  # an answer, not "Connection reset by peer"
        urllib.request.urlopen(request, timeout=120)
    assert refused.value.code == 413 and json.load(refused.value)["error"]["code"] == "body_too_large"
    assert httpx.get(f"{echo.url}/health", timeout=30).status_code == 200
