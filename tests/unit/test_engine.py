"""The batched llama.cpp engine on the real embedded SmolLM2 model (no Ray): slots, joining a
running batch, cancelling, grammars beside free text, prefix reuse, a prompt too long for a
slot, and the same replies as llama-cpp-python's own chat completion."""

from __future__ import annotations

import json
import threading
import time

import pytest

from echo.config import DEFAULT_CONFIG, load_config
from echo.llm.batched import BACKGROUND_AFTER_S, LlamaEngine
from echo.llm.completion import KVCacheFullError
from echo.llm.models import check_models

COLORS = [{"role": "user", "content": "Name three colors."}]
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]
PROMPTS = [
    COLORS,
    [{"role": "system", "content": "You are Echo, a warm companion."}, {"role": "user", "content": "오늘 하루 어땠는지 들어줄래?"}],
    [{"role": "user", "content": "What is a good way to start learning the piano?"}],
    [{"role": "user", "content": "Explain what a closure is in Python."}],
]


def make_engine(**overrides) -> LlamaEngine:
    config = load_config(DEFAULT_CONFIG)
    circuit = config.circuits["self"].model_copy(update={"n_threads": 1, **overrides})
    return LlamaEngine(circuit, check_models(config)["self"])


@pytest.fixture(scope="module")
def engine():
    engine = make_engine(n_parallel=4)
    yield engine
    engine.close()


def run_at_once(engine: LlamaEngine, calls: list[dict]) -> tuple[list, dict]:
    """Each call's chat() in its own thread, all at once: the answers (or errors), and the
    most slots busy and requests queued seen while tokens came."""
    results: list = [None] * len(calls)
    peak = {"busy": 0, "queued": 0}

    def watch(_piece: str) -> None:
        stats = engine.stats()
        peak["busy"], peak["queued"] = max(peak["busy"], stats["busy"]), max(peak["queued"], stats["queued"])

    def one(i: int) -> None:
        try:
            results[i] = engine.chat(**{"on_token": watch, **calls[i]})
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return results, peak


def test_a_completion_reports_text_tokens_and_latency(engine):
    answer = engine.chat(COLORS, max_tokens=24, greedy=True)
    assert answer.text
    assert 0 < answer.completion_tokens <= 24 and answer.prompt_tokens > 5
    assert answer.latency_ms > 0 and answer.tokens_per_s > 0
    assert answer.finish_reason in ("stop", "length")


def test_a_reply_cut_at_max_tokens_counts_exactly_max_tokens(engine):
    answer = engine.chat([{"role": "user", "content": "고양이에 대해 길게 이야기해 줘."}], max_tokens=16, greedy=True)
    assert answer.finish_reason == "length" and answer.completion_tokens == 16  # usage a client can bill by


def test_streamed_pieces_add_up_to_the_answer_and_greedy_is_repeatable(engine):
    pieces: list[str] = []
    streamed = engine.chat(COLORS, max_tokens=24, greedy=True, on_token=pieces.append)
    assert len(pieces) > 3 and "".join(pieces).strip() == streamed.text
    assert engine.chat(COLORS, max_tokens=24, greedy=True).text == streamed.text


def test_replies_are_those_of_llama_cpp_pythons_own_chat_completion(engine):
    """The chat template, tokenization, sampler chain and stops are Llama's: a greedy reply
    is word for word the one the single-sequence engine gave, and so are the token counts."""
    from llama_cpp import Llama

    config = load_config(DEFAULT_CONFIG)
    reference = Llama(model_path=str(check_models(config)["self"]), n_ctx=2048, n_threads=1, n_threads_batch=1, verbose=False)
    for messages in PROMPTS:
        expected = reference.create_chat_completion(messages=messages, max_tokens=32, temperature=0.0, top_p=1.0, top_k=1, repeat_penalty=1.1)
        answer = engine.chat(messages, max_tokens=32, greedy=True)
        assert answer.text == expected["choices"][0]["message"]["content"].strip()
        assert (answer.prompt_tokens, answer.completion_tokens) == (expected["usage"]["prompt_tokens"], expected["usage"]["completion_tokens"])
        assert answer.finish_reason == expected["choices"][0]["finish_reason"]
    reference.close()


def test_a_prompt_gives_the_same_text_alone_and_in_a_batch_of_four(engine):
    alone = [engine.chat(messages, max_tokens=24, greedy=True).text for messages in PROMPTS]
    together, peak = run_at_once(engine, [{"messages": m, "max_tokens": 24, "greedy": True} for m in PROMPTS])
    assert peak["busy"] == 4  # they were decoded in one batch
    assert [c.text for c in together] == alone


def test_slots_are_taken_and_given_back():
    small = make_engine(n_parallel=2)
    try:
        results, peak = run_at_once(small, [{"messages": m, "max_tokens": 12, "greedy": True} for m in PROMPTS[:3]])
        assert all(r.text for r in results)
        assert peak["busy"] == 2 and peak["queued"] >= 1  # never more than two at once: the third waited for a slot
        stats = small.stats()
        assert (stats["slots"], stats["busy"], stats["queued"]) == (2, 0, 0)
    finally:
        small.close()


def test_a_request_joins_the_running_batch_at_the_next_step(engine):
    events: list[str] = []
    going = threading.Event()
    long_answer = {}

    def long_token(_piece: str) -> None:
        events.append("long")
        if events.count("long") == 3:
            going.set()

    def long_request() -> None:
        long_answer["done"] = engine.chat(STORY, max_tokens=80, greedy=True, on_token=long_token)

    runner = threading.Thread(target=long_request)
    runner.start()
    assert going.wait(120)
    events.append("submitted")
    short = engine.chat(COLORS, max_tokens=6, greedy=True, on_token=lambda _: events.append("short"))
    assert runner.is_alive()  # the short reply came while the long one was still going
    runner.join(120)
    submitted, first_short = events.index("submitted"), events.index("short")
    assert events[submitted:first_short].count("long") <= 2  # in the batch within a step or two, not after the long reply
    assert "long" in events[first_short : first_short + 4]  # the two interleave
    assert short.completion_tokens == 6 and long_answer["done"].completion_tokens == 80


def test_cancel_mid_stream_frees_the_slot_at_once(engine):
    cancel = threading.Event()
    pieces: list[str] = []

    def on_token(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()

    answer = engine.chat(STORY, max_tokens=200, on_token=on_token, cancel=cancel)
    assert answer.finish_reason == "cancelled" and len(pieces) <= 4
    assert engine.stats()["busy"] == 0


def test_a_callback_that_fails_ends_its_own_request_and_no_other(engine):
    def broken(_piece: str) -> None:
        raise ValueError("the client's queue is gone")

    (failed, fine), _ = run_at_once(engine, [{"messages": STORY, "max_tokens": 30, "on_token": broken}, {"messages": COLORS, "max_tokens": 12, "greedy": True}])
    assert isinstance(failed, ValueError) and fine.completion_tokens > 0
    assert engine.chat(COLORS, max_tokens=4, greedy=True).text and engine.stats()["busy"] == 0


def test_a_grammar_holds_one_slot_while_the_next_writes_freely(engine):
    schema = {
        "type": "object",
        "properties": {"colors": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 3}},
        "required": ["colors"],
    }
    free_alone = engine.chat(PROMPTS[2], max_tokens=40, greedy=True).text
    (structured, free), peak = run_at_once(
        engine,
        [
            {"messages": COLORS, "max_tokens": 60, "greedy": True, "response_format": {"type": "json_object", "schema": schema}},
            {"messages": PROMPTS[2], "max_tokens": 40, "greedy": True},
        ],
    )
    assert peak["busy"] == 2
    parsed = json.loads(structured.text)
    assert set(parsed) == {"colors"} and set(parsed["colors"]) <= {"red", "green", "blue"}
    assert free.text == free_alone  # the grammar stayed in its own slot


def test_a_prompt_that_starts_like_a_slots_last_one_evaluates_only_the_rest(engine):
    system = {"role": "system", "content": "You are the self circuit of Echo. " * 12}
    first = engine.chat([system, {"role": "user", "content": "Who are you?"}], max_tokens=4, greedy=True)
    before = engine.stats()
    second = engine.chat([system, {"role": "user", "content": "What do you remember?"}], max_tokens=4, greedy=True)
    after = engine.stats()
    evaluated = after["prompt_tokens_evaluated"] - before["prompt_tokens_evaluated"]
    reused = after["prompt_tokens_reused"] - before["prompt_tokens_reused"]
    assert evaluated + reused == second.prompt_tokens
    assert reused > first.prompt_tokens * 0.7 and evaluated < second.prompt_tokens * 0.3


def test_a_free_slot_takes_the_start_of_its_prompt_from_a_busy_one():
    pair = make_engine(n_parallel=2)
    system = {"role": "system", "content": "You are the emotion circuit of Echo. Answer with feeling and warmth. " * 6}
    story = [system, {"role": "user", "content": "Write a long story about the sea."}]
    question = [system, {"role": "user", "content": "What do you remember?"}]
    try:
        pair.chat(story, max_tokens=4, greedy=True)
        expected = pair.chat(question, max_tokens=12, greedy=True)  # from the slot that held the story's prompt itself
        going, long_answer = threading.Event(), {}
        runner = threading.Thread(target=lambda: long_answer.update(done=pair.chat(story, max_tokens=60, greedy=True, on_token=lambda _: going.set())))
        runner.start()
        assert going.wait(120)
        before = pair.stats()
        copied = pair.chat(question, max_tokens=12, greedy=True)  # the other slot holds nothing of it
        after = pair.stats()
        runner.join(120)
        assert before["busy"] == 1 and long_answer["done"].completion_tokens == 60  # the story was still generating
        assert after["prompt_tokens_reused"] - before["prompt_tokens_reused"] > 0.7 * copied.prompt_tokens
        assert copied.text == expected.text  # the copied start of the cache is the same as the slot's own
    finally:
        pair.close()


def test_a_prompt_too_long_for_a_slot_is_refused_clearly_and_the_engine_goes_on():
    tiny = make_engine(n_parallel=2, n_ctx=256)
    try:
        with pytest.raises(KVCacheFullError, match=r"the prompt has 431 tokens and a slot holds 256 \(n_ctx\).*shorten the prompt or raise"):
            tiny.chat([{"role": "user", "content": "tell me about the sea " * 80}], max_tokens=8)
        near = tiny.chat([{"role": "user", "content": "the sea " * 100}], max_tokens=100, greedy=True)  # 231 tokens
        assert near.finish_reason == "length" and near.prompt_tokens + near.completion_tokens == tiny.n_ctx  # cut where the slot ends
        assert tiny.chat(COLORS, max_tokens=8, greedy=True).text  # still serving
        assert tiny.stats()["busy"] == 0
    finally:
        tiny.close()


# -- answers first: background requests (the distiller's) yield to them ------------------

FACTS_JSON = {
    "type": "json_object",
    "schema": {
        "type": "object",
        "properties": {"facts": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 24}}},
        "required": ["facts"],
    },
}


def test_an_answer_takes_the_only_slot_from_a_background_request_which_then_goes_on_where_it_was():
    single = make_engine(n_parallel=1)
    try:
        background = {"messages": STORY, "max_tokens": 160, "greedy": True, "response_format": FACTS_JSON, "background": True}
        events: list[str] = []
        pieces: list[str] = []
        started = threading.Event()

        def background_token(piece: str) -> None:
            events.append("background")
            pieces.append(piece)
            if events.count("background") == 3:
                started.set()

        result = {}
        runner = threading.Thread(target=lambda: result.update(done=single.chat(**background, on_token=background_token)))
        runner.start()
        assert started.wait(120)
        events.append("asked")
        before = "".join(pieces)
        answer = single.chat(COLORS, max_tokens=8, greedy=True, on_token=lambda _: events.append("answer"))
        events.append("answered")
        runner.join(120)
        asked, answered = events.index("asked"), events.index("answered")
        assert answer.completion_tokens == 8
        assert events[asked:answered].count("background") <= 1  # the slot was the answer's at the next step
        assert single.stats()["background_preempted"] == 1
        done = result["done"]
        assert done.text.startswith(before.strip()) and len(done.text) > len(before)  # put aside, then on from where it was
        assert done.finish_reason == "stop" and len(json.loads(done.text)["facts"]) <= 3  # its grammar held across the pause
    finally:
        single.close()


def test_background_slots_are_left_out_of_the_batch_while_an_answer_generates_and_wait_after_it(engine):
    time.sleep(BACKGROUND_AFTER_S)
    events: list[tuple[str, float]] = []
    started = threading.Event()

    def background_token(_piece: str) -> None:
        events.append(("background", time.monotonic()))
        if len(events) == 3:
            started.set()

    runner = threading.Thread(target=lambda: engine.chat(STORY, max_tokens=60, greedy=True, background=True, on_token=background_token))
    runner.start()
    assert started.wait(120)
    assert engine.stats()["background"] == 1
    answer = engine.chat(COLORS, max_tokens=12, greedy=True, on_token=lambda _: events.append(("answer", time.monotonic())))
    answered = time.monotonic()
    runner.join(120)
    first = next(i for i, (kind, _) in enumerate(events) if kind == "answer")
    last = max(i for i, (kind, _) in enumerate(events) if kind == "answer")
    assert [kind for kind, _ in events[first : last + 1]] == ["answer"] * answer.completion_tokens  # none of its tokens shared a step with the background
    after = [at for kind, at in events[last + 1 :] if kind == "background"]
    assert after and after[0] - answered >= BACKGROUND_AFTER_S * 0.9  # the background waited for the answer's quiet
    assert engine.stats()["background_preempted"] == 0  # a slot was free: nothing was put aside
