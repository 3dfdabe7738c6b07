"""The real llama-cpp-python engine on the embedded SmolLM2 model (no Ray)."""

import threading

import pytest

from echo.config import DEFAULT_CONFIG, load_config
from echo.llm.engine import LlamaEngine
from echo.llm.models import check_models


@pytest.fixture(scope="module")
def engine():
    config = load_config(DEFAULT_CONFIG)
    return LlamaEngine(config.circuits["self"].model_copy(update={"n_threads": 2}), check_models(config)["self"])


MESSAGES = [{"role": "user", "content": "Name three colors."}]


def test_a_completion_reports_text_tokens_and_latency(engine):
    answer = engine.chat(MESSAGES, max_tokens=24, greedy=True)
    assert answer.text
    assert 0 < answer.completion_tokens <= 24 and answer.prompt_tokens > 5
    assert answer.latency_ms > 0 and answer.tokens_per_s > 0
    assert answer.finish_reason in ("stop", "length")


def test_a_reply_cut_at_max_tokens_counts_exactly_max_tokens(engine):
    answer = engine.chat([{"role": "user", "content": "고양이에 대해 길게 이야기해 줘."}], max_tokens=16, greedy=True)
    assert answer.finish_reason == "length" and answer.completion_tokens == 16  # usage a client can bill by


def test_streamed_pieces_add_up_to_the_answer_and_greedy_is_repeatable(engine):
    pieces: list[str] = []
    streamed = engine.chat(MESSAGES, max_tokens=24, greedy=True, on_token=pieces.append)
    assert len(pieces) > 3 and "".join(pieces).strip() == streamed.text
    assert engine.chat(MESSAGES, max_tokens=24, greedy=True).text == streamed.text


def test_cancel_stops_between_tokens(engine):
    cancel = threading.Event()
    pieces: list[str] = []

    def on_token(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()

    answer = engine.chat([{"role": "user", "content": "Write a long story about the sea."}], max_tokens=200, on_token=on_token, cancel=cancel)
    assert answer.finish_reason == "cancelled" and len(pieces) <= 4


def test_two_threads_never_generate_at_once(engine, monkeypatch):
    inside, most = [0], [0]
    generate = engine._llama.create_chat_completion

    def counting(*args, **kwargs):
        for chunk in generate(*args, **kwargs):  # the model is busy for as long as it streams
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            yield chunk
            inside[0] -= 1

    monkeypatch.setattr(engine._llama, "create_chat_completion", counting)
    results = []
    threads = [threading.Thread(target=lambda: results.append(engine.chat(MESSAGES, max_tokens=8))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and all(r.text for r in results)
    assert most[0] == 1
