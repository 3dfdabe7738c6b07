"""The batched engine's logic without a model: text as tokens arrive (stop strings across
tokens, split characters), which slot a prompt takes, and how the brain answers a prompt
that does not fit a slot."""

from __future__ import annotations

import pytest

from echo.llm.completion import KVCacheFullError
from echo.llm.slots import Slot, common_prefix, pick_slot
from echo.llm.text import TextStream
from tests.fakes import CIRCUITS, FakeCircuit

TOKEN = "unit-origin-token"


def shown(stream: TextStream, pieces: list[bytes]) -> list[str]:
    return [stream.feed(p) for p in pieces]


def test_a_stop_string_split_over_tokens_ends_the_text_before_it():
    stream = TextStream(["<|im_end|>"])
    out = shown(stream, [b"Hello", b" there<", b"|im", b"_end", b"|>", b" never"])
    assert out == ["Hello", " there", "", "", "", ""]  # "<" is held back until it turns out to begin the stop
    assert stream.stopped and stream.text == "Hello there"
    assert stream.flush() == ""


def test_text_held_back_for_a_stop_is_shown_once_it_is_not_one():
    stream = TextStream(["</answer>"])
    assert shown(stream, [b"a </", b"ans", b"wer is 4"]) == ["a ", "", "</answer is 4"]
    assert not stream.stopped
    stream2 = TextStream(["</answer>"])
    assert stream2.feed(b"tail </an") == "tail " and stream2.flush() == "</an"  # the reply ended without the stop


def test_the_earliest_of_several_stops_wins_even_inside_one_token():
    stream = TextStream(["STOP", "END"])
    assert stream.feed(b"abc END xyz STOP") == "abc " and stream.stopped


def test_a_character_split_across_tokens_is_shown_whole():
    korean = "안녕".encode()
    stream = TextStream()
    assert shown(stream, [korean[:1], korean[1:4], korean[4:]]) == ["", "안", "녕"]
    assert TextStream().feed(b"ok\xff!") == "ok!"  # bytes that are no UTF-8 are dropped, as llama-cpp-python drops them


def test_a_prompt_takes_the_free_slot_holding_most_of_it():
    system = [1, 2, 3, 4, 5]
    slots = [Slot(0, cached=[9, 9]), Slot(1, cached=[*system, 7, 7]), Slot(2, cached=system[:2])]
    prompt = [*system, 8, 8]
    assert common_prefix(slots[1].cached, prompt) == 5
    assert pick_slot(slots, prompt).seq == 1 and slots[1].reusable(prompt) == 5
    slots[1].request = object()  # busy: the next best free one
    assert pick_slot(slots, prompt).seq == 2
    for slot in slots:
        slot.request = object()
    assert pick_slot(slots, prompt) is None


def test_a_prompt_held_whole_still_evaluates_its_last_token_and_ties_go_to_the_least_recently_used():
    slot = Slot(0, cached=[1, 2, 3])
    assert slot.reusable([1, 2, 3]) == 2  # its logits give the first token of the answer
    fresh = [Slot(0, last_used=5), Slot(1, last_used=2), Slot(2, last_used=9)]
    assert pick_slot(fresh, [4, 5]).seq == 1


def test_a_prompt_that_does_not_fit_a_slot_is_a_503_with_retry_after_that_says_so(make_client):
    failure = KVCacheFullError("the prompt has 3000 tokens and a slot holds 2048 (n_ctx), with no room left for an answer")
    circuits = {n: FakeCircuit(n, error=failure) for n in CIRCUITS}
    client, memory = make_client(token=TOKEN, manifest=None, circuits=circuits, retry_after_s=2)
    response = client.post("/api/ask", json={"prompt": "a very long prompt"})
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    body = response.json()
    assert body["error"]["code"] == "context_full" and "n_ctx" in body["error"]["message"]
    assert set(body["failed"]) == set(CIRCUITS) and all("3000 tokens" in r for r in body["failed"].values())
    assert memory.saved == []


@pytest.mark.parametrize("circuit_failures", [{"emotion": "kv"}, {"emotion": "kv", "self": "kv"}])
def test_a_circuit_whose_slot_is_too_small_is_left_out_like_a_failed_one(make_client, circuit_failures):
    failure = KVCacheFullError("the prompt has 3000 tokens and a slot holds 2048 (n_ctx)")
    circuits = {n: FakeCircuit(n, error=failure if n in circuit_failures else None) for n in CIRCUITS}
    client, _ = make_client(token=TOKEN, manifest=None, circuits=circuits)
    body = client.post("/api/ask", json={"prompt": "hello"}).json()
    assert body["degraded"] and set(body["failed"]) == set(circuit_failures)
    assert body["reply"]
