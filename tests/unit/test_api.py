"""The HTTP layer (echo.http.app) over a Brain with fake circuits: status codes and error bodies."""

import pytest

from echo.brain import users
from echo.http.app import create_api
from tests.fakes import CIRCUITS, FakeCircuit, FakeMemory, hit, make_brain

TOKEN = "api-test-token"


@pytest.fixture
def setup(make_client):
    return make_client(token=TOKEN, max_prompt_chars=100)


def test_unknown_paths_and_methods_get_the_same_error_shape(setup):
    client, _ = setup
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.get("/api/ask")
    assert wrong.status_code == 405 and "GET /docs" in wrong.json()["error"]["message"]


def test_root_answers_get_and_head(setup):
    client, _ = setup
    assert client.get("/").status_code == 200
    assert client.head("/").status_code == 200


def test_ask_returns_the_merged_reply_and_each_circuit(setup):
    client, memory = setup
    key = {"Authorization": f"Bearer {users.user_key(TOKEN, 'minji')}"}
    response = client.post("/api/ask", json={"prompt": "hello there", "user": "minji"}, headers=key)
    assert response.status_code == 200
    body = response.json()
    assert body["reply"] and set(body["circuits"]) == {"emotion", "creation", "self"}
    assert memory.saved[0][0] == "minji"


@pytest.mark.parametrize(
    "payload, status, code, words",
    [
        (b"not json", 400, "invalid_json", "not valid JSON"),
        (b"\xff\xfe{}", 400, "invalid_utf8", "UTF-8"),
        (b"[" * 30_000 + b"]" * 30_000, 400, "invalid_json", "nested too deeply"),
        (b"{}", 422, "invalid_request", "prompt is required"),
        (b'{"prompt": 5}', 422, "invalid_request", "prompt"),
        (b'{"prompt": ["a"]}', 422, "invalid_request", "prompt"),
        (b'{"prompt": "hi", "user": "../etc"}', 422, "invalid_request", "user must be"),
        (b'{"prompt": "hi", "user": 7}', 422, "invalid_request", "user"),
        (b'{"prompt": "hi", "admin": true}', 422, "invalid_request", "admin is not a known field"),
        (b'{"prompt": ""}', 422, "empty_prompt", "empty"),
        (b'{"prompt": "\\u0000\\u0001 "}', 200, None, None),
        (b'{"prompt": "hi \\ud800 there"}', 422, "invalid_text", "unpaired surrogate at character 3"),
        ('{"prompt": "%s"}' % ("가" * 101), 413, "prompt_too_long", "101 characters; the limit is 100"),
        (b'{"prompt": "' + b"x" * 1_000_000 + b'"}', 413, "body_too_large", "limit"),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_nothing_is_saved(setup, payload, status, code, words):
    client, memory = setup
    body = payload.encode() if isinstance(payload, str) else payload
    response = client.post("/api/ask", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    if code is None:
        return
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"]
    assert memory.saved == []


def test_refusal_for_a_stranger_is_403_with_a_polite_reply(setup):
    client, memory = setup
    response = client.post("/api/ask", json={"prompt": "make me a website"}, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_only" and "owner" in response.json()["reply"]
    assert TOKEN not in response.text and memory.saved == []


def test_openapi_schema_documents_the_ask_body(setup):
    client, _ = setup
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/ask"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["prompt"]


def test_memory_search_and_insights_are_for_the_origin_only(make_client):
    memory = FakeMemory(
        memories=[hit("모카", 0.5)],
        insight={"days": 1, "turns": 1},
    )
    client, _ = make_client(token=TOKEN, manifest=None, memory=memory)
    owner = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/api/memory/search?q=고양이", "/api/insights"):
        anonymous = client.get(path)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).json()["error"]["code"] == "origin_only"
    found = client.get("/api/memory/search", params={"q": "고양이", "k": 5}, headers=owner)
    assert found.status_code == 200 and found.json()["results"][0]["path"] == "day0901/origin/part1.txt"
    assert memory.searches == [("고양이", 5, None, "hybrid")]
    assert client.get("/api/insights", headers=owner).json() == {"days": 1, "turns": 1}
    assert client.get("/api/memory/search?q=", headers=owner).json()["error"]["code"] == "empty_query"
    assert client.get("/api/memory/search?q=a&k=1000", headers=owner).json()["error"]["code"] == "invalid_k"
    assert client.get("/api/memory/search?q=a&mode=fuzzy", headers=owner).status_code == 422
    assert client.get("/api/memory/search?q=a&k=ten", headers=owner).status_code == 422
    memory.insight = None
    assert client.get("/api/insights", headers=owner).json()["error"]["code"] == "not_replayed_yet"
    disabled, _ = make_client(token=None, manifest=None, memory=memory)
    refused = disabled.get("/api/insights", headers=owner)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "privileged_disabled"


@pytest.mark.parametrize("error, code", [("busy", "busy"), ("broken", "all_circuits_failed")])
def test_no_circuit_answering_is_a_503_that_says_when_to_come_back(make_client, error, code):
    from ray.serve.exceptions import BackPressureError

    failure = BackPressureError(num_queued_requests=64, max_queued_requests=64) if error == "busy" else RuntimeError("model gone")
    circuits = {n: FakeCircuit(n, error=failure) for n in CIRCUITS}
    client, memory = make_client(token=TOKEN, manifest=None, circuits=circuits, retry_after_s=3)
    for path, payload in (("/api/ask", {"prompt": "hello"}), ("/v1/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": "hello"}]})):
        response = client.post(path, json=payload)
        assert response.status_code == 503 and response.headers["retry-after"] == "3"
        assert response.json()["error"]["code"] == code
    assert memory.saved == []  # nothing answered, nothing saved


def test_a_reply_that_cannot_be_saved_still_comes_marked_unsaved(make_client):
    client, _ = make_client(token=TOKEN, manifest=None, memory=FakeMemory(error=OSError(28, "No space left on device")))
    body = client.post("/api/ask", json={"prompt": "hello"}).json()
    assert body["reply"] and body["saved"] is False and "No space left on device" in body["unsaved_reason"]


def test_past_the_ingress_limits_a_request_gets_a_json_503_in_its_routes_shape_and_health_still_answers(tmp_path):
    import asyncio

    import httpx

    circuits = {n: FakeCircuit(n, delay=0.5) for n in CIRCUITS}
    memory = FakeMemory()
    brain = make_brain(
        tmp_path, token=TOKEN, manifest=None, circuits=circuits, memory=memory, brain_max_ongoing_requests=1, brain_max_queued_requests=1, retry_after_s=2
    )
    app = create_api(lambda: brain, limits=brain.config)

    async def burst():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://echo") as client:
            asks = [client.post("/api/ask", json={"prompt": f"hello {i}"}) for i in range(3)]
            openai = client.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
            health = client.get("/health")
            return await asyncio.gather(*asks, openai, health)

    *asks, openai, health = asyncio.run(burst())
    assert sorted(r.status_code for r in asks) == [200, 200, 503]  # one at work, one waiting, one turned away
    busy = next(r for r in asks if r.status_code == 503)
    assert busy.headers["retry-after"] == "2" and busy.json()["error"]["code"] == "busy"
    assert openai.status_code == 503 and openai.json()["error"]["type"] == "server_error" and openai.headers["retry-after"] == "2"
    assert health.status_code == 200  # never held back
    assert len(memory.saved) == 2  # what was answered was saved; what was turned away was not
