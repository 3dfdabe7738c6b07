"""The echo-server command line, for the commands that need no Ray."""

import json

import yaml
from click.testing import CliRunner

from echo.config import DEFAULT_CONFIG
from echo.memory.store import append_exchange, exchange_lines
from echo_cli import main
from tests.samples import CAT, NOW, TRIP, write


def config_in(tmp_path):
    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    data.update(memory_dir=str(tmp_path / "memory"), backup_dir=str(tmp_path / "memory_backup"))
    path = tmp_path / "echo.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_help_lists_the_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "serve" in result.output and "restore" in result.output


def test_restore_brings_back_a_lost_part(tmp_path):
    append_exchange(tmp_path / "memory", "u", exchange_lines("q", "a"), NOW, "UTC", backup_dir=tmp_path / "memory_backup")
    (tmp_path / "memory" / "day1124" / "u" / "part1.txt").unlink()
    result = CliRunner().invoke(main, ["restore", "--config", config_in(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "restored   day1124/u/part1.txt" in result.output and "1 restored" in result.output
    assert (tmp_path / "memory" / "day1124" / "u" / "part1.txt").read_text(encoding="utf-8").startswith("나의 말:\nq\n")


def test_restore_without_a_backup_or_with_a_bad_config_says_what_to_do(tmp_path):
    result = CliRunner().invoke(main, ["restore", "--config", config_in(tmp_path)])
    assert result.exit_code == 1 and "no backup at" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["restore", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_replay_and_search_from_the_shell(tmp_path):
    memory = tmp_path / "mem"
    write(memory, "day0901/origin/part1.txt", CAT)
    write(memory, "day0902/origin/part1.txt", TRIP)
    write(memory, "day0903/origin/part1.txt", b"\xff\xfe")
    runner = CliRunner()
    replayed = runner.invoke(main, ["replay", "--memory", str(memory), "--inline"])
    assert replayed.exit_code == 0, replayed.output
    assert "3 parts" in replayed.output and "4 turns" in replayed.output and (tmp_path / "mem_index" / "insight.json").is_file()
    assert "skipped day0903/origin/part1.txt: invalid UTF-8" in replayed.output

    found = runner.invoke(main, ["search", "고양이가", "--memory", str(memory), "--mode", "lexical", "--k", "1"])
    assert found.exit_code == 0 and "day0901/origin/part1.txt:1-2" in found.output
    as_json = runner.invoke(main, ["search", "Lisbon", "--memory", str(memory), "--mode", "lexical", "--json"])
    assert json.loads(as_json.output)[0]["path"] == "day0902/origin/part1.txt"
    queries = tmp_path / "queries.txt"
    queries.write_text("고양이\n\nLisbon\n", encoding="utf-8")
    batch = runner.invoke(main, ["search", "--memory", str(memory), "--mode", "lexical", "--queries", str(queries)])
    lines = [json.loads(line) for line in batch.output.splitlines()]
    assert [line["query"] for line in lines] == ["고양이", "Lisbon"] and all(line["results"] for line in lines)


def test_search_says_what_is_missing(tmp_path):
    runner = CliRunner()
    assert "give a QUERY, or --queries FILE" in runner.invoke(main, ["search", "--memory", str(tmp_path)]).output
    missing = runner.invoke(main, ["search", "x", "--memory", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "no memory folder at" in missing.output and "--memory DIR" in missing.output


def test_every_command_has_help():
    runner = CliRunner()
    commands = ["serve", "ask", "replay", "search", "distill", "plan", "doctor", "package", "restore", "user-key"]
    listed = runner.invoke(main, ["--help"]).output
    for command in commands:
        assert command in listed
        result = runner.invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command


def test_ask_without_a_server_says_how_to_start_one():
    result = CliRunner().invoke(main, ["ask", "안녕", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "cannot reach Echo at http://127.0.0.1:9" in result.output and "make serve" in result.output
    assert "Traceback" not in result.output


def test_replay_says_what_is_missing(tmp_path):
    result = CliRunner().invoke(main, ["replay", "--memory", str(tmp_path / "nope"), "--inline"])
    assert result.exit_code == 1 and "no memory folder at" in result.output and "Traceback" not in result.output
    broken = tmp_path / "echo.yaml"
    broken.write_text("port: not-a-number\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["replay", "--config", str(broken), "--inline"])
    assert result.exit_code == 1 and "port = 'not-a-number'" in result.output


def test_user_key_prints_the_key_the_owner_hands_a_user():
    from echo.brain.users import is_user

    result = CliRunner(env={"ECHO_ORIGIN_TOKEN": "owner-secret-123"}).invoke(main, ["user-key", "minji"])
    key = result.output.strip()
    assert result.exit_code == 0 and "owner-secret-123" not in result.output
    assert is_user(f"Bearer {key}", "owner-secret-123", "minji") and not is_user(f"Bearer {key}", "owner-secret-123", "sora")
    no_token = CliRunner(env={"ECHO_ORIGIN_TOKEN": ""}).invoke(main, ["user-key", "minji"])
    assert no_token.exit_code == 1 and "ECHO_ORIGIN_TOKEN" in no_token.output
    for bad in ("origin", "../x", ""):
        refused = CliRunner(env={"ECHO_ORIGIN_TOKEN": "owner-secret-123"}).invoke(main, ["user-key", bad])
        assert refused.exit_code == 1 and "not a user name" in refused.output


def test_ask_streams_the_reply_in_the_answers_order_and_keeps_the_conversation(tmp_path, monkeypatch):
    import http.server
    import threading

    def sse(name, data):
        return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    seen = []
    answer = "".join(
        [
            sse("start", {"route": "circuits", "merge": "concat", "order": ["emotion", "self"], "conversation": "conv-1", "context": [], "memories": []}),
            sse("token", {"circuit": "self", "text": "나는"}),
            sse("token", {"circuit": "emotion", "text": "반가워"}),
            sse("circuit_done", {"circuit": "emotion"}),
            sse("circuit_done", {"circuit": "self"}),
            sse("done", {"reply": "반가워\n\n나는", "conversation": "conv-1", "context": [{"prompt": "안녕"}], "memories": [], "failed": {}}),
        ]
    ).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        first = CliRunner().invoke(main, ["ask", "안녕", "--url", url])
        assert first.exit_code == 0, first.output
        assert first.stdout.startswith("반가워\n\n나는")  # emotion first: the order the answer gave
        assert "conversation: conv-1 (1 earlier exchanges" in first.stderr
        CliRunner().invoke(main, ["ask", "또 안녕", "--url", url])
        CliRunner().invoke(main, ["ask", "새로", "--url", url, "--new"])
        assert "conversation" not in seen[0] and seen[1]["conversation"] == "conv-1" and "conversation" not in seen[2]
    finally:
        server.shutdown()


def test_facts_from_the_shell_import_list_show_search_delete_undo(tmp_path):
    memory = tmp_path / "mem"
    write(memory, "day0902/origin/part1.txt", TRIP)
    file = tmp_path / "facts.jsonl"
    good = {
        "user": "origin",
        "text": "The owner travelled to Portugal in spring",
        "kind": "event",
        "cites": [{"path": "day0902/origin/part1.txt", "line_start": 1, "line_end": 1}],
    }
    bad = {**good, "cites": [{"path": "day0902/origin/part1.txt", "line_start": 9, "line_end": 9}]}
    file.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    runner = CliRunner()
    refused = runner.invoke(main, ["facts", "import", "--memory", str(memory), str(file)])
    assert refused.exit_code == 1 and "line 2: cite 1" in refused.output and "nothing imported" in refused.output
    file.write_text(json.dumps(good) + "\n", encoding="utf-8")
    done = runner.invoke(main, ["facts", "import", "--memory", str(memory), str(file)])
    assert done.exit_code == 0 and "1 facts added" in done.output, done.output
    assert (tmp_path / "mem_facts" / "facts.jsonl").is_file() and (tmp_path / "mem_backup" / "facts" / "facts.jsonl").is_file()
    listed = json.loads(runner.invoke(main, ["facts", "list", "--memory", str(memory), "--json"]).stdout)
    assert [f["text"] for f in listed] == [good["text"]]
    shown = runner.invoke(main, ["facts", "show", "--memory", str(memory), listed[0]["id"]])
    assert "day0902/origin/part1.txt:1  나의 말: I flew to Lisbon" in shown.output
    found = json.loads(runner.invoke(main, ["search", "--memory", str(memory), "--mode", "lexical", "--json", "Portugal"]).stdout)
    assert found[0]["path"] == "day0902/origin/part1.txt" and found[0]["fact"]["text"] == good["text"]  # the fact's word found its line
    gone = runner.invoke(main, ["facts", "delete", "--memory", str(memory), listed[0]["id"]])
    assert gone.exit_code == 0 and "forgotten" in gone.output
    assert json.loads(runner.invoke(main, ["facts", "list", "--memory", str(memory), "--json"]).stdout) == []
    back = runner.invoke(main, ["facts", "undo", "--memory", str(memory)])
    assert back.exit_code == 0 and good["text"] in back.output
    assert runner.invoke(main, ["facts", "undo", "--memory", str(memory)]).exit_code == 1  # nothing left to undo, and it says so


def test_distill_writes_facts_with_smollm2_and_a_second_run_finds_nothing_left(tmp_path):
    talk = "".join(f"나의 말:\nI moved to Busan for a job at a bakery, part {n}.\nChatGPT의 말:\nHow is it?\n" for n in range(3))
    write(tmp_path / "memory", "day0301/minji/part1.txt", talk)
    first = CliRunner().invoke(main, ["distill", "--config", config_in(tmp_path)])
    assert first.exit_code == 0, first.output
    assert "done: 1 of 1 windows distilled" in first.output and "SmolLM2-135M writes poor facts" in first.output
    ledger = [json.loads(line) for line in (tmp_path / "memory_facts" / "distilled.jsonl").read_text().splitlines()]
    assert [e["path"] for e in ledger] == ["day0301/minji/part1.txt"]
    facts = [json.loads(line) for line in (tmp_path / "memory_facts" / "facts.jsonl").read_text().splitlines()] if ledger[0].get("facts") else []
    assert all(f["source"] == "distilled" and f["cites"][0]["path"] == "day0301/minji/part1.txt" for f in facts)
    again = CliRunner().invoke(main, ["distill", "--config", config_in(tmp_path)])
    assert again.exit_code == 0 and "done: 1 of 1 windows distilled, 0 facts added" in again.output


def test_distill_while_another_distills_the_same_memory_says_so(tmp_path):
    from echo.memory.distill import distilling_lock

    write(tmp_path / "memory", "day0301/minji/part1.txt", "나의 말:\nhello\nChatGPT의 말:\nhi\n")
    with distilling_lock(tmp_path / "memory_facts"):
        busy = CliRunner().invoke(main, ["distill", "--config", config_in(tmp_path)])
    assert busy.exit_code == 1 and "another process is distilling this memory" in busy.output and "Traceback" not in busy.output


def test_conversations_lists_them_newest_first_and_shows_one_with_where_it_is_written(tmp_path):
    from datetime import timedelta

    from echo.memory.conversation import conversation_key
    from echo.memory.parsing import stamp_line

    memory = tmp_path / "memory"
    for minutes, user, key, prompt in (
        (0, "minji", "trip", "Plan my trip to Jeju"),
        (1, "sora", "tea", "I like green tea"),
        (2, "minji", "trip", "And the ferry?"),
    ):
        at = NOW + timedelta(minutes=minutes)
        append_exchange(memory, user, exchange_lines(prompt, "ok", stamp=stamp_line(at.isoformat(timespec="seconds"), conversation_key(key))), at, "UTC")
    runner = CliRunner()
    listed = runner.invoke(main, ["conversations", "--memory", str(memory)])
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.stdout.splitlines() if line]
    assert [row.split()[2] for row in rows] == ["minji", "sora"] and "2 exchanges  Plan my trip to Jeju" in rows[0]
    mine = json.loads(runner.invoke(main, ["conversations", "--memory", str(memory), "--user", "minji", "--json"]).stdout)
    assert mine["total"] == 1 and mine["conversations"][0]["id"] == conversation_key("trip")
    shown = runner.invoke(main, ["conversations", "--memory", str(memory), "show", conversation_key("trip")])
    assert shown.exit_code == 0 and "minji: Plan my trip to Jeju" in shown.output and "minji: And the ferry?" in shown.output
    assert "/minji/part1.txt:" in shown.output  # where each exchange is written
    unknown = runner.invoke(main, ["conversations", "--memory", str(memory), "show", "nope"])
    assert unknown.exit_code == 1 and "no conversation 'nope'" in unknown.output and "echo-server conversations" in unknown.output
