"""Serving figures for issue 2, each a ratio measured in this one run (not a timed test).

    .venv/bin/python bench/serving.py [--rounds 5] [--max-tokens 96] [--overhead-requests 200]

1. One circuit's tokens/s through Serve against the same model called directly in this
   process: same prompt, greedy, same max tokens.              target: ratio >= 0.9
2. /api/ask latency with `concat` against the sum of the three circuits' latencies when
   called one after another with the same messages (greedy). target: ratio <= 0.6
3. The brain's own overhead (end-to-end minus the slowest circuit) with instant echo
   circuits, over HTTP: lexical recall and save included.       target: p50 <= 30 ms
   Beside it, in the same run, a guest's (no recall) and one with the question also
   embedded by e5 on the CPU (a model's time, like the circuits').
4. Continuous batching (issue 16): one circuit, 4 streams at once against 1, through Serve:
   tokens/s of the 4 together                                   target: >= 2.5x the one
   each stream's tokens/s                                       target: >= 0.6x the one
   and one stream of the batched engine against llama-cpp-python's Llama, the engine before
   batching, both in this process                               target: ratio >= 0.95
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile  # noqa: E402
from echo.config import CIRCUIT_NAMES, DEFAULT_CONFIG, REPO_ROOT, parse_config  # noqa: E402
from echo.llm.batched import LlamaEngine  # noqa: E402
from echo.llm.models import check_models

STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]
ASK = "I had a long day at work and I am tired. What should I do this evening?"


def make_config(home: Path, port: int, max_tokens: int, engine: str) -> dict:
    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    for circuit in data["circuits"].values():
        circuit.update(max_tokens=max_tokens, engine=engine)
        if engine == "echo":
            circuit["num_cpus"] = 0  # instant circuits reserve no core beside the real ones
        circuit["sampling"] = {"temperature": 0.0, "top_k": 1, "top_p": 1.0}  # greedy: same work every time
    data.update(port=port, merge="concat", memory_dir=str(home / "memory"), manifest_dir=str(REPO_ROOT / "manifest"), projects_dir=str(home / "projects"))
    if engine == "echo":
        # Instant circuits repeat their whole prompt (recalled memories included): a budget that
        # takes six such exchanges, so that brain_overhead_context times the context it names.
        data["conversation"] = {"budget_tokens": 100_000}
    if engine == "llama":
        # No recall for the model figures: recalled memories change the prompt every round, and
        # the one-after-another side would then find it in llama.cpp's prefix cache, the
        # concurrent side not. The overhead figure (instant circuits) keeps recall.
        data["recall"] = {"k": 0}
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--overhead-requests", type=int, default=200)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--only", choices=["direct", "batching", "concat", "overhead"], help="run one of the four figures")
    args = parser.parse_args()

    import ray
    from ray import serve

    from serve_app import build_from_config, start_ray

    home = Path(tempfile.mkdtemp(prefix="echo-bench-"))
    real = parse_config(make_config(home / "real", args.port, args.max_tokens, "llama"))
    # Instant circuits for the overhead: one app whose recall is lexical only, and one that
    # also embeds each question with e5 (a model, like the circuits, whose time is shown apart).
    fake = parse_config({**make_config(home / "fake", args.port, args.max_tokens, "echo"), "recall": {"embedding_model": "off"}})
    fake_e5 = parse_config(make_config(home / "fake_e5", args.port, args.max_tokens, "echo"))
    # A token of the bench's own, so that the overhead requests recall (as the user "bench",
    # with that user's key) like a real user's do; set before Ray starts, which passes it on.
    os.environ["ECHO_ORIGIN_TOKEN"] = secrets.token_hex(16)

    started = time.perf_counter()
    start_ray(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(build_from_config(real), name="echo", route_prefix="/")
    url = f"http://127.0.0.1:{args.port}"
    client = httpx.Client(timeout=600)
    while client.get(f"{url}/health").json()["status"] != "ready":
        time.sleep(0.5)
    print(f"setup: Ray + Serve + 3 SmolLM2 circuits ready in {time.perf_counter() - started:.1f} s")

    def run(figure: str) -> bool:
        return args.only in (None, figure)

    if run("direct"):
        serve_vs_direct(real, args)
    if run("batching"):
        batching(real, args)
        batching_floor(real, args)
        single_vs_unbatched(real, args)
    if run("concat"):
        concat_vs_sequential(real, url, client, args)
    if run("overhead"):
        # Echo alone with the instant circuits: the idle llama replicas would only add noise.
        serve.delete("echo")
        serve.run(build_from_config(fake), name="fake", route_prefix="/fake")
        overhead = brain_overhead(url, client, args)
        brain_overhead_context(url, client, args)
        serve.delete("fake")  # one Echo at a time (its detached memory actors stay, idle: nothing saves there)
        serve.run(build_from_config(fake_e5), name="fake_e5", route_prefix="/fake_e5")
        brain_overhead_e5(url, client, args, overhead)
    serve.shutdown()
    ray.shutdown()
    if run("concat"):
        machine_floor(real, args)  # with Ray gone, so that nothing but the three models runs


def serve_vs_direct(real, args) -> None:
    """1. One circuit through Serve against the same model in this process."""
    from ray import serve

    from serve_app import deployment_name

    circuit = real.circuits["emotion"]
    direct = LlamaEngine(circuit, check_models(real)["emotion"])
    handle = serve.get_deployment_handle(deployment_name("emotion"), app_name="echo")
    direct.chat(STORY, max_tokens=8, greedy=True)  # warm both prompt caches
    handle.generate.remote(STORY, max_tokens=8, greedy=True).result()
    direct_tps, serve_tps = [], []
    for _ in range(args.rounds):  # interleaved, so drift in machine load hits both alike
        t = time.perf_counter()
        answer = direct.chat(STORY, max_tokens=args.max_tokens, greedy=True)
        direct_tps.append(answer.completion_tokens / (time.perf_counter() - t))
        t = time.perf_counter()
        answer = handle.generate.remote(STORY, max_tokens=args.max_tokens, greedy=True).result()
        serve_tps.append(answer.completion_tokens / (time.perf_counter() - t))
    direct.close()
    d, s = statistics.median(direct_tps), statistics.median(serve_tps)
    print(
        f"serve_vs_direct: direct {d:.1f} tok/s, through Serve {s:.1f} tok/s "
        f"({answer.completion_tokens} tokens, n_threads={circuit.n_threads}, median of {args.rounds}), "
        f"ratio {s / d:.2f} (target >= 0.9)"
    )


def _stream(handle, max_tokens: int) -> tuple[int, float, float]:
    """One streamed answer through a circuit: its tokens, when it was asked and when it ended."""
    started = time.perf_counter()
    done = None
    for item in handle.options(stream=True).stream.remote(STORY, max_tokens=max_tokens, greedy=True):
        done = item.get("done", done)
    return done.completion_tokens, started, time.perf_counter()


def batching(real, args) -> None:
    """4. One circuit, 4 streams at once against 1: tokens/s together and each stream's."""
    from concurrent.futures import ThreadPoolExecutor

    from ray import serve

    from serve_app import deployment_name

    circuit = real.circuits["emotion"]
    handle = serve.get_deployment_handle(deployment_name("emotion"), app_name="echo")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: _stream(handle, 8), range(4)))  # every slot holds the prompt, as in use
        one_tps, together_tps, each_tps, tokens = [], [], [], []
        for _ in range(args.rounds):  # interleaved, so drift in machine load hits both alike
            n, start, end = _stream(handle, args.max_tokens)
            one_tps.append(n / (end - start))
            streams = list(pool.map(lambda _: _stream(handle, args.max_tokens), range(4)))
            together_tps.append(sum(n for n, _, _ in streams) / (max(e for _, _, e in streams) - min(s for _, s, _ in streams)))
            each_tps += [n / (end - start) for n, start, end in streams]
            tokens += [n for n, _, _ in streams]
    one, together, each = statistics.median(one_tps), statistics.median(together_tps), statistics.median(each_tps)
    print(
        f"batching: one circuit (n_parallel {circuit.n_parallel}, n_threads={circuit.n_threads}) through Serve, 1 stream {one:.1f} tok/s; "
        f"4 streams at once {together:.1f} tok/s together = {together / one:.2f}x (target >= 2.5), each stream {each:.1f} tok/s = "
        f"{each / one:.2f}x (target >= 0.6) ({min(tokens)}-{max(tokens)} tokens a stream, medians of {args.rounds} rounds)"
    )


def batching_floor(real, args) -> None:
    """What this machine allows the batching figure: the CPU time of one llama_decode of one
    sequence's next token against one of four sequences' (the model's own cost, no scheduling)."""
    import logging

    import llama_cpp
    from llama_cpp import _internals

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's log: errors only
    circuit = real.circuits["emotion"]
    model = _internals.LlamaModel(path_model=str(check_models(real)["emotion"]), params=llama_cpp.llama_model_default_params(), verbose=False)
    params = _internals.LlamaContext.default_params()
    params.n_ctx, params.n_seq_max, params.kv_unified = circuit.n_ctx * 4, 4, False
    params.n_threads = params.n_threads_batch = circuit.n_threads or 1
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    context = _internals.LlamaContext(model=model, params=params, verbose=False)
    batch = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
    prompt = 100  # a system prompt's worth of tokens in each sequence

    def decode(tokens: list[tuple[int, int]], logits: bool) -> float:
        b = batch.batch
        b.n_tokens = 0
        for pos, seq in tokens:
            n = b.n_tokens
            b.token[n], b.pos[n], b.n_seq_id[n], b.seq_id[n][0], b.logits[n] = 1000 + pos % 500, pos, 1, seq, logits
            b.n_tokens = n + 1
        started = time.process_time()
        assert llama_cpp.llama_decode(context.ctx, b) == 0
        return time.process_time() - started

    for seq in range(4):
        decode([(pos, seq) for pos in range(prompt)], False)
    one, four = [], []
    for _ in range(30):  # interleaved; each step's token dropped again, so every step sees the same cache
        one.append(decode([(prompt, 0)], True))
        context.kv_cache_seq_rm(0, prompt, -1)
        four.append(decode([(prompt, seq) for seq in range(4)], True))
        for seq in range(4):
            context.kv_cache_seq_rm(seq, prompt, -1)
    context.close()
    model.close()
    o, f = statistics.median(one), statistics.median(four)
    print(
        f"batching_floor: llama_decode CPU time, 1 sequence's token {o * 1000:.1f} ms, 4 sequences' {f * 1000:.1f} ms (median of 30, "
        f"n_threads={params.n_threads}): 4 streams at once can give at most {4 * o / f:.2f}x the tokens/s of one, each {o / f:.2f}x"
    )


def single_vs_unbatched(real, args) -> None:
    """4. One stream of the batched engine against llama-cpp-python's Llama, the engine before
    batching (one request at a time, streamed the way it streamed), both in this process."""
    from llama_cpp import Llama

    circuit = real.circuits["emotion"]
    path = check_models(real)["emotion"]
    batched = LlamaEngine(circuit, path)
    seed = circuit.sampling.seed if circuit.sampling.seed is not None else 0xFFFFFFFF
    llama = Llama(model_path=str(path), n_ctx=circuit.n_ctx, n_threads=circuit.n_threads, n_threads_batch=circuit.n_threads, seed=seed, verbose=False)

    def unbatched() -> int:
        chunks = llama.create_chat_completion(
            messages=STORY, max_tokens=args.max_tokens, temperature=0.0, top_p=1.0, top_k=1, repeat_penalty=circuit.sampling.repeat_penalty, stream=True
        )
        return sum(1 for chunk in chunks if chunk["choices"][0]["delta"].get("content"))

    unbatched()  # warm both prompt caches
    batched.chat(STORY, max_tokens=8, greedy=True)
    before, after, tokens = [], [], 0
    for _ in range(args.rounds):  # interleaved, so drift in machine load hits both alike
        t = time.perf_counter()
        unbatched()
        seconds = time.perf_counter() - t
        t = time.perf_counter()
        tokens = batched.chat(STORY, max_tokens=args.max_tokens, greedy=True).completion_tokens
        after.append(tokens / (time.perf_counter() - t))
        before.append(tokens / seconds)  # the same reply: greedy, same tokens
    batched.close()
    llama.close()
    b, a = statistics.median(before), statistics.median(after)
    print(
        f"single_vs_unbatched: one stream in this process, the batched engine {a:.1f} tok/s, llama-cpp-python's Llama (the engine before batching) "
        f"{b:.1f} tok/s ({tokens} tokens, median of {args.rounds}), ratio {a / b:.2f} (target >= 0.95)"
    )


def concat_vs_sequential(real, url, client, args) -> None:
    """2. /api/ask (three circuits at once) against the three one after another."""
    from ray import serve

    from echo.brain.brain import Brain
    from echo.brain.identity import IdentitySource
    from serve_app import deployment_name

    brain = Brain(real, {}, None, IdentitySource(real.manifest_dir), None)  # only for its prompts
    handles = {n: serve.get_deployment_handle(deployment_name(n), app_name="echo") for n in CIRCUIT_NAMES}
    client.post(f"{url}/api/ask", json={"prompt": ASK}).raise_for_status()  # warm the prefixes
    ask_s, seq_s = [], []
    for _ in range(args.rounds):
        t = time.perf_counter()
        body = client.post(f"{url}/api/ask", json={"prompt": ASK}).json()
        ask_s.append(time.perf_counter() - t)
        assert not body["failed"] and not body["memories"], body  # recall is off here (make_config), and a guest has no conversation
        total = 0.0
        for name in CIRCUIT_NAMES:
            messages = brain.messages(name, ASK)  # the same messages the brain sent
            t = time.perf_counter()
            handles[name].generate.remote(messages).result()
            total += time.perf_counter() - t
        seq_s.append(total)
    a, q = statistics.median(ask_s), statistics.median(seq_s)
    tokens = {n: c["completion_tokens"] for n, c in body["circuits"].items()}
    print(
        f"concat_vs_sequential: /api/ask {a:.2f} s, three circuits one after another {q:.2f} s "
        f"(tokens {tokens}, memories in the prompt {len(body['memories'])}, median of {args.rounds}), ratio {a / q:.2f} (target <= 0.6)"
    )


def overhead_of(url: str, client: httpx.Client, app: str, headers: dict, i: int, conversation: str | None = None) -> tuple[float, dict]:
    """End-to-end milliseconds of one /api/ask minus its slowest circuit's, and the body: as
    the user "bench" with headers (its key), as a guest without."""
    payload = {
        "prompt": f"ping number {i} from the bench",
        **({"user": "bench"} if headers else {}),
        **({"conversation": conversation} if conversation else {}),
    }
    t = time.perf_counter()
    body = client.post(f"{url}{app}/api/ask", json=payload, headers=headers).json()
    return (time.perf_counter() - t) * 1000 - max(c["latency_ms"] for c in body["circuits"].values()), body


def bench_key() -> dict:
    from echo.brain.users import user_key

    return {"Authorization": f"Bearer {user_key(os.environ['ECHO_ORIGIN_TOKEN'], 'bench')}"}


def _plain_circuit(real, name: str, orders, answers) -> None:
    """A circuit's model in a process of its own, no Ray: generate when told, report seconds."""
    from echo.brain.brain import Brain
    from echo.brain.identity import IdentitySource

    engine = LlamaEngine(real.circuits[name], check_models(real)[name])
    brain = Brain(real, {}, None, IdentitySource(real.manifest_dir), None)  # only for its prompts
    messages = brain.messages(name, ASK)
    engine.chat(messages, max_tokens=8)  # the system prompt into the prefix cache, as in Serve
    answers.put(0.0)
    while orders.get():
        t = time.perf_counter()
        engine.chat(messages, max_tokens=real.circuits[name].max_tokens)
        answers.put(time.perf_counter() - t)


def machine_floor(real, args) -> None:
    """What this machine allows the concat ratio: the three circuits' models in three plain
    processes (no Ray, no HTTP), at once against one after another, same messages."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    queues = {n: (spawn.Queue(), spawn.Queue()) for n in CIRCUIT_NAMES}
    workers = [spawn.Process(target=_plain_circuit, args=(real, n, *queues[n]), daemon=True) for n in CIRCUIT_NAMES]
    for worker in workers:
        worker.start()
    for _, answers in queues.values():
        answers.get()
    together, apart = [], []
    for _ in range(args.rounds):
        t = time.perf_counter()
        for orders, _ in queues.values():
            orders.put(True)
        for _, answers in queues.values():
            answers.get()
        together.append(time.perf_counter() - t)
        total = 0.0
        for orders, answers in queues.values():
            orders.put(True)
            total += answers.get()
        apart.append(total)
    for orders, _ in queues.values():
        orders.put(False)
    for worker in workers:
        worker.join()
    a, q = statistics.median(together), statistics.median(apart)
    print(f"concat_floor: three plain llama.cpp processes (no Ray) at once {a:.2f} s, one after another {q:.2f} s (median of {args.rounds}), ratio {a / q:.2f}")


def brain_overhead(url, client, args) -> float:
    """3. The brain's own overhead with instant circuits and lexical recall: a user with their
    key (recall and save) and a guest (no recall), taken in turn. Returns the user's p50."""
    for i in range(10):  # warm connections and code paths; gives the user memories to recall
        overhead_of(url, client, "/fake", bench_key(), i)
    user, guest, recalled = [], [], 0
    for i in range(10, 10 + args.overhead_requests):
        ms, body = overhead_of(url, client, "/fake", bench_key(), i)
        user.append(ms)
        recalled += bool(body["memories"])
        guest.append(overhead_of(url, client, "/fake", {}, i)[0])
    n = args.overhead_requests
    print(
        f"brain_overhead: p50 {percentile(user, 50):.1f} ms, p95 {percentile(user, 95):.1f} ms over {n} sequential requests with instant circuits, "
        f"as a user with a key: recall (lexical; {recalled} brought memories) and memory save included (target p50 <= 30 ms)"
    )
    print(
        f"brain_overhead_guest: p50 {percentile(guest, 50):.1f} ms, p95 {percentile(guest, 95):.1f} ms over {n} requests taken in turn with the above, as a guest: no recall"
    )
    return percentile(user, 50)


def brain_overhead_context(url, client, args) -> None:
    """3b. The same user, each request going on with one conversation: six earlier exchanges
    read back and put into every circuit's prompt."""
    conversation = None
    for i in range(7):  # six exchanges before the first timed one
        conversation = overhead_of(url, client, "/fake", bench_key(), i, conversation)[1]["conversation"]
    timed, contexts = [], []
    for i in range(7, 7 + args.overhead_requests):
        ms, body = overhead_of(url, client, "/fake", bench_key(), i, conversation)
        timed.append(ms)
        contexts.append(len(body["context"]))
    print(
        f"brain_overhead_context: p50 {percentile(timed, 50):.1f} ms, p95 {percentile(timed, 95):.1f} ms over {args.overhead_requests} requests "
        f"in one conversation with a {span(contexts)}-exchange context, lexical recall and instant circuits (target p50 <= 30 ms)"
    )


def span(counts: list[int]) -> str:
    return str(min(counts)) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"


def brain_overhead_e5(url, client, args, lexical_p50: float) -> None:
    """The same user's requests to an Echo whose recall also embeds the question with e5."""
    for i in range(10):
        overhead_of(url, client, "/fake_e5", bench_key(), i)
    # Recall in its steady state: the memories so far have their vectors, so every question
    # is embedded and searched both ways (new turns wait for a quiet moment, as in use).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        embedding = client.get(f"{url}/fake_e5/health").json()["memory"]["embedding"]
        if embedding["state"] == "ready" and embedding.get("embedded", 0) >= 20:  # the ten exchanges above
            break
        time.sleep(0.5)
    user, recalled = [], 0
    for i in range(10, 10 + args.overhead_requests):
        ms, body = overhead_of(url, client, "/fake_e5", bench_key(), i)
        user.append(ms)
        recalled += bool(body["memories"])
    print(
        f"brain_overhead_e5: p50 {percentile(user, 50):.1f} ms, p95 {percentile(user, 95):.1f} ms over {args.overhead_requests} requests, "
        f"as the user with a key, recall also embedding each question with e5 on the CPU ({recalled} brought memories; "
        f"{embedding.get('embedded', 0)} turns embedded before): e5 adds {percentile(user, 50) - lexical_p50:.1f} ms at p50"
    )


if __name__ == "__main__":
    main()
