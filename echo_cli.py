"""The `echo-server` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from echo.brain.users import ENABLE_HINT, origin_token
from echo.config import CONFIG_ENV, ConfigError, beside_memory, load_config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Echo: a self-hosted persona server with three circuits and a memory."""


@main.command("serve")
@click.option("--config", "-c", "config_file", envvar=CONFIG_ENV, help=f"YAML config (default: ${CONFIG_ENV} or configs/default.yaml).")
@click.option("--host", help="Address to listen on (default: the config's host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default: the config's port, 8000).")
@click.option("--address", envvar="RAY_ADDRESS", help="A running Ray cluster to join (default: start one here).")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    envvar="ECHO_METRICS_PORT",
    help="Where the Ray cluster started here serves Prometheus metrics (Echo's included) at /metrics.",
)
def serve_command(config_file: str | None, host: str | None, port: int | None, address: str | None, metrics_port: int) -> None:
    """Start Echo and keep it running until Ctrl-C."""
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    config = config.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})

    import ray
    from ray import serve

    from actors.memory_actor import release_memory_actors
    from serve_app import build_from_config, start_ray

    # Ctrl-C or `kill` at any moment, start-up included, ends in an orderly shutdown.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    context = start_ray(address, log_to_driver=False, **({} if address else {"_metrics_export_port": metrics_port}))
    try:
        try:
            app = build_from_config(config)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        # HTTP comes in at the head only (on a cluster, workers hold circuits, not clients).
        serve.start(proxy_location="HeadOnly", http_options={"host": config.host, "port": config.port})
        serve.run(app, name="echo", route_prefix="/")
        shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
        url = f"http://{shown}:{config.port}"
        click.echo(f"\nEcho is up at {url}/  (models load in the background: {url}/health)")
        click.echo(f"Try:  curl -s {url}/api/ask -H 'Content-Type: application/json' -d '{{\"prompt\": \"안녕, 오늘 어때?\"}}'")
        if not address:
            click.echo(f"Ray dashboard: http://{context.dashboard_url or '(not running)'}   metrics: http://127.0.0.1:{metrics_port}/metrics")
        if origin_token() is None:
            click.echo(f"Privileged commands (making projects) are disabled: {ENABLE_HINT}.")
        click.echo("Stop with Ctrl-C.\n")
        _report_when_ready(f"{url}/health", stop)
        stop.wait()
        click.echo("Stopping Echo...")
        if address:  # a shared cluster: its other apps stay; the index on disk makes the next start warm
            serve.delete("echo")
            release_memory_actors(config.memory_dir)
        else:
            serve.shutdown()
    finally:
        ray.shutdown()


@main.command("ask")
@click.argument("prompt")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, envvar="ECHO_URL", help="Where Echo listens.")
@click.option("--user", help="Whose conversation this is (default: origin with the token, else guest).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer as JSON at the end instead of streaming text.")
@click.option("--conversation", help="Go on with this conversation (an answer's `conversation`; default: the last one asked from here).")
@click.option("--new", "new", is_flag=True, help="Start a new conversation.")
def ask_command(prompt: str, url: str, user: str | None, as_json: bool, conversation: str | None, new: bool) -> None:
    """Ask a running Echo; the reply streams to the terminal. Asks from here go on with the
    last conversation (kept in ~/.cache/echo/conversation) until --new. The owner's token
    comes from $ECHO_ORIGIN_TOKEN, a user's key (see user-key) from $ECHO_USER_KEY, never
    from the command line."""
    from echo.ops.terminal import StreamError, render, sse_events

    state = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "echo" / "conversation"
    if not new and not conversation and state.is_file():
        conversation = state.read_text(encoding="utf-8").strip() or None
    payload = {"prompt": prompt, "stream": True, **({"user": user} if user else {}), **({"conversation": conversation} if conversation and not new else {})}
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if secret := os.environ.get("ECHO_USER_KEY", "").strip() or origin_token():
        headers["Authorization"] = f"Bearer {secret}"
    request = urllib.request.Request(f"{url.rstrip('/')}/api/ask", data=json.dumps(payload).encode("utf-8"), headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=600)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        raise click.ClickException(message) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach Echo at {url} ({getattr(exc, 'reason', exc)}): start it with `make serve`, or pass --url") from None
    with response:
        events = _remembering(sse_events(response), state)
        try:
            for text, to_stderr in render(events, as_json):
                click.echo(text, nl=False, err=to_stderr)
        except StreamError as exc:
            raise click.ClickException(str(exc)) from None


def _remembering(events, state: Path):
    """The events, keeping the conversation they belong to for the next ask."""
    for name, event in events:
        if name in ("start", "done"):
            _remember_conversation(state, event["conversation"])
        yield name, event


def _remember_conversation(state: Path, conversation: str) -> None:
    try:
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(conversation, encoding="utf-8")
    except OSError as exc:  # the answer still comes; only the next ask starts anew
        click.echo(f"  (conversation not kept in {state}: {exc.strerror})", err=True)


@main.command("restore")
@click.option("--config", "-c", "config_file", envvar=CONFIG_ENV, help=f"YAML config (default: ${CONFIG_ENV} or configs/default.yaml).")
def restore_command(config_file: str | None) -> None:
    """Rebuild memory/ from memory_backup/, never removing a line memory/ has."""
    from echo.memory.store import restore

    try:
        config = load_config(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not config.backup_dir.is_dir():
        raise click.ClickException(f"no backup at {config.backup_dir}: nothing to restore from (backup_dir in the config)")
    report = restore(config.memory_dir, config.backup_dir)
    for path in report.restored:
        click.echo(f"restored   {path}")
    for path in report.conflicts:
        click.echo(f"conflict   {path}: differs from its backup; left as it is (compare the two by hand)", err=True)
    click.echo(f"{len(report.restored)} restored, {len(report.unchanged)} already whole, {len(report.conflicts)} conflicts")
    back, kept = _fact_store(config, config.memory_dir).restore_from_backup()
    click.echo(f"facts: {back} brought back, {kept} already there")
    if report.conflicts:
        sys.exit(1)


def _memory_folders(config_file: str | None, memory: str | None, index: str | None):
    """(config, memory folder, index folder): --memory and --index override the config; a
    --memory without --index keeps its index beside it, in <memory>_index."""
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    memory_dir = Path(memory).expanduser().resolve() if memory else config.memory_dir
    if index:
        index_dir = Path(index).expanduser().resolve()
    else:
        index_dir = beside_memory(memory_dir, "index") if memory else config.index_dir
    if not memory_dir.is_dir():
        raise click.ClickException(f"no memory folder at {memory_dir} (fix: pass --memory DIR, or set memory_dir in the config)")
    return config, memory_dir, index_dir


MEMORY_OPTIONS = [
    click.option("--config", "-c", "config_file", envvar=CONFIG_ENV, help=f"YAML config (default: ${CONFIG_ENV} or configs/default.yaml)."),
    click.option("--memory", "memory", metavar="DIR", help="The memory folder (default: the config's memory_dir)."),
    click.option("--index", "index", metavar="DIR", help="Where its index lives (default: the config's index_dir, or <DIR>_index beside --memory)."),
]


def memory_options(function):
    for option in reversed(MEMORY_OPTIONS):
        function = option(function)
    return function


def _fact_store(config, memory_dir: Path):
    """The facts of memory_dir: the config's store, or the one beside a --memory folder."""
    from echo.memory.facts import FactStore

    if memory_dir == config.memory_dir:
        return FactStore(config.facts_dir, config.backup_dir / "facts", config.facts.undo_minutes)
    return FactStore(beside_memory(memory_dir, "facts"), beside_memory(memory_dir, "backup") / "facts", config.facts.undo_minutes)


def _embed_all(config, index_dir: Path) -> None:
    from echo.memory.dense import load_embedder
    from echo.memory.search import MemorySearch

    search = MemorySearch(
        index_dir, load_embedder(config.recall.embedding_model, config.recall.embedding_threads, config.recall.embedding_n_gpu_layers), config.timezone
    )
    todo = len(search.vectors.missing(search.turns["hash"]))
    started = time.perf_counter()
    with click.progressbar(length=todo, label="embedding", file=sys.stderr) as bar:
        search.embed_pending(chunk=256, on_chunk=bar.update)
    click.echo(f"embedded {todo} turns in {time.perf_counter() - started:.1f}s with {search.embedder.name}")


@main.command("replay")
@memory_options
@click.option("--force", is_flag=True, help="Rebuild everything instead of only what changed.")
@click.option("--inline", is_flag=True, help="Read the parts in this process instead of a Ray Data pipeline.")
@click.option("--embed", is_flag=True, help="Also embed every turn for dense search now (the server does it in the background).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole insight as JSON.")
def replay_command(config_file: str | None, memory: str | None, index: str | None, force: bool, inline: bool, embed: bool, as_json: bool) -> None:
    """Take memory/ in: turns table, search index and insight.json (only what changed, unless --force)."""
    from echo.memory.replay import replay

    config, memory_dir, index_dir = _memory_folders(config_file, memory, index)
    if inline:
        insight = replay(memory_dir, index_dir, force=force, markers=config.markers)
    else:
        from pipelines.ray_data_replay import replay_with_ray_data
        from serve_app import start_ray

        start_ray(None, include_dashboard=False, log_to_driver=False)
        insight = replay_with_ray_data(memory_dir, index_dir, force=force, markers=config.markers)
    if embed and config.recall.embedding_model != "off":
        _embed_all(config, index_dir)
    if as_json:
        click.echo(json.dumps(insight, ensure_ascii=False, indent=1))
        return
    last = insight["last_replay"]
    click.echo(
        f"{insight['parts']} parts, {insight['lines']} lines, {insight['turns']} turns "
        f"({insight['duplicates_dropped']} duplicates dropped), days {insight['first_day']}..{insight['last_day']}"
    )
    click.echo(f"this replay: {last['parts_read']} parts read, {last['parts_removed']} removed, {last['lines_read']} lines in {last['seconds']}s")
    for skipped in insight["skipped"]:
        click.echo(f"skipped {skipped['path']}: {skipped['reason']}", err=True)
    click.echo(f"index: {index_dir}")


@main.command("search")
@memory_options
@click.argument("query", required=False)
@click.option("--k", "k", type=click.IntRange(1, 100), default=10, show_default=True, help="How many turns to return.")
@click.option("--mode", type=click.Choice(["hybrid", "lexical", "dense"]), default="hybrid", show_default=True)
@click.option("--user", help="Only this user's memories.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--queries", type=click.File("r", encoding="utf-8"), help="A file with one query a line; prints one JSON line per query.")
@click.option("--since", help="Only memories from this day on: a date (2025-05-01) or a date and time (2025-05-01T14:30).")
@click.option("--before", help="Only memories from before this day (or date and time): 2025-06-01 for everything up to May.")
def search_command(config_file, memory, index, query, k, mode, user, as_json, queries, since, before) -> None:
    """Search the memory, with each turn's citation (path:lines)."""
    from echo.memory.dates import parse_bound
    from echo.memory.dense import load_embedder
    from echo.memory.lexical import LexicalIndex
    from echo.memory.replay import replay
    from echo.memory.search import MemorySearch

    if not query and queries is None:
        raise click.UsageError("give a QUERY, or --queries FILE with one query a line")
    config, memory_dir, index_dir = _memory_folders(config_file, memory, index)
    try:
        bounds = {name: parse_bound(name, value, config.timezone) for name, value in (("since", since), ("before", before))}
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not LexicalIndex.exists(index_dir / "lexical"):
        click.echo(f"no index at {index_dir} yet: replaying {memory_dir} first", err=True)
        replay(memory_dir, index_dir, markers=config.markers)
    embedder = None
    if mode != "lexical" and config.recall.embedding_model != "off":
        embedder = load_embedder(config.recall.embedding_model, config.recall.embedding_threads, config.recall.embedding_n_gpu_layers)
    search = MemorySearch(index_dir, embedder, config.timezone, facts=_fact_store(config, memory_dir), memory_dir=memory_dir)
    if embedder is not None:
        search.embed_pending(facts_only=True)  # facts are few, and each stands for its lines: embedded before searching
    if embedder is not None and search.embedded() < len(search.turns["hash"]):
        click.echo(f"note: {search.embedded()} of {len(search.turns['hash'])} turns have vectors so far (echo-server replay --embed adds the rest)", err=True)
    if queries is not None:
        for line in queries:
            if line.strip():
                results = [m.as_dict() for m in search.search(line.strip(), k, user, mode, **bounds)]
                click.echo(json.dumps({"query": line.strip(), "results": results}, ensure_ascii=False))
        return
    results = search.search(query, k, user, mode, **bounds)
    if as_json:
        click.echo(json.dumps([m.as_dict() for m in results], ensure_ascii=False, indent=1))
        return
    if not results:
        click.echo("nothing found")
    for m in results:
        first = " ".join(m.text.split())[:100]
        click.echo(f"{m.score:8.4f}  {m.path}:{m.line_start}-{m.line_end}  {m.date or m.day} {m.user}/{m.speaker}  {first}")


@main.group("facts")
def facts_group() -> None:
    """What Echo knows about people: facts citing their lines (the owner's data, in <memory>_facts/)."""


def _desk(config_file, memory, index):
    from echo.memory.facts import FactDesk

    config, memory_dir, _ = _memory_folders(config_file, memory, index)
    return FactDesk(_fact_store(config, memory_dir), memory_dir, config.timezone)


def _print_facts(facts: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(facts, ensure_ascii=False, indent=1))
        return
    for f in facts:
        marks = "".join(m for m, on in ((" [stale]", f["stale"]), (f" [superseded by {f['superseded_by']}]", f["superseded_by"])) if on)
        cite = f["cites"][0]
        click.echo(
            f"{f['id']}  {f['date'] or '-':10}  {f['user']}/{f['about']}  {f['kind']:10}  {cite['path']}:{cite['line_start']}-{cite['line_end']}  {f['text']}{marks}"
        )


@facts_group.command("import")
@memory_options
@click.argument("file", type=click.File("rb"))
def facts_import_command(config_file, memory, index, file) -> None:
    """Import FILE (JSON Lines, one fact a line; - for stdin): all of it or nothing."""
    desk = _desk(config_file, memory, index)
    answer = desk.run("import", lines=file)
    if "problems" in answer:
        for problem in answer["problems"]:
            click.echo(f"{file.name}: {problem}", err=True)
        raise click.ClickException(f"nothing imported: fix the {len(answer['problems'])} lines above and import the file again")
    done = answer["result"]
    click.echo(f"{done['added']} facts added, {done['unchanged']} already there, {done['forgotten']} forgotten before (not added again): {desk.store.path}")


@facts_group.command("list")
@memory_options
@click.option("--user", help="Only this user's facts.")
@click.option("--kind", help="Only this kind: profile, preference, event, plan, other.")
@click.option("--q", "query", default="", help="Only facts holding these words.")
@click.option("--deleted", is_flag=True, help="The forgotten ones instead (undoable for a while).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
def facts_list_command(config_file, memory, index, user, kind, query, deleted, limit, as_json) -> None:
    """List facts, newest first."""
    page = _desk(config_file, memory, index).list(user, query, kind, deleted, limit)
    _print_facts(page["facts"], as_json)
    if not as_json:
        click.echo(f"{len(page['facts'])} of {page['total']} facts", err=True)


@facts_group.command("show")
@memory_options
@click.argument("fact_id")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def facts_show_command(config_file, memory, index, fact_id, as_json) -> None:
    """One fact, with the lines it cites."""
    desk = _desk(config_file, memory, index)
    found = desk.show(None, fact_id)
    if found is None:
        raise click.ClickException(f"no fact {fact_id!r}: see `echo-server facts list`")
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=1))
        return
    _print_facts([found], False)
    for cite in found["cites"]:
        lines = desk.parts.lines(cite["path"]) or []
        for number in range(cite["line_start"], min(cite["line_end"], len(lines)) + 1):
            click.echo(f"    {cite['path']}:{number}  {lines[number - 1]}")


@facts_group.command("delete")
@memory_options
@click.argument("fact_ids", nargs=-1, required=True)
def facts_delete_command(config_file, memory, index, fact_ids) -> None:
    """Forget facts (the lines stay in memory; `facts undo` brings them back for a while)."""
    removed = _desk(config_file, memory, index).delete(None, list(fact_ids), "origin")
    for f in removed:
        click.echo(f"forgotten  {f['id']}  {f['text']}")
    missing = set(fact_ids) - {f["id"] for f in removed}
    if missing:
        raise click.ClickException(f"no such fact (or forgotten already): {', '.join(sorted(missing))}")


@facts_group.command("undo")
@memory_options
@click.option("--user", help="Only this user's last forgetting (default: the last of anyone's).")
def facts_undo_command(config_file, memory, index, user) -> None:
    """Bring back the facts forgotten last, within the undo window (facts.undo_minutes)."""
    restored = _desk(config_file, memory, index).undo(user)
    for f in restored:
        click.echo(f"restored   {f['id']}  {f['text']}")
    if not restored:
        raise click.ClickException("nothing to undo: no fact was forgotten within the undo window (facts.undo_minutes)")


@main.group("conversations", invoke_without_command=True)
@memory_options
@click.option("--user", help="Only this user's conversations.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, help="Skip this many of the newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
@click.pass_context
def conversations_group(context, config_file, memory, index, user, limit, offset, as_json) -> None:
    """Conversations Echo had, newest first, read from memory/. Go on with one by its id:
    `echo-server ask --conversation ID` (as its user: --user, with their key or the owner's token)."""
    context.obj = (config_file, memory, index)
    if context.invoked_subcommand is not None:
        return
    conversations = _conversation_index(config_file, memory, index)
    total, page = conversations.listing(user, limit, offset)
    if as_json:
        click.echo(json.dumps({"total": total, "conversations": [c.as_dict() for c in page]}, ensure_ascii=False, indent=1))
        return
    for c in page:
        click.echo(f"{c.id}  {c.last}  {c.user}  {c.exchanges:4} exchanges  {c.title}")
    click.echo(f"{len(page)} of {total} conversations" + (f" (from the {offset + 1}th)" if offset else ""), err=True)


def _conversation_index(config_file, memory, index):
    from echo.memory.conversation import ConversationIndex
    from echo.memory.store import scan_parts

    config, memory_dir, _ = _memory_folders(config_file, memory, index)
    conversations = ConversationIndex(memory_dir, config.markers)
    conversations.refresh(scan_parts(memory_dir)[0])
    return conversations


@conversations_group.command("show")
@click.argument("conversation_id")
@click.option("--user", help="Whose conversation, when several users have one with this id.")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
@click.pass_obj
def conversations_show_command(folders, conversation_id, user, as_json) -> None:
    """One conversation's exchanges, oldest first, with where each is written."""
    from echo.memory.conversation import conversation_key, is_key

    config_file, memory, index = folders
    conversations = _conversation_index(config_file, memory, index)
    key = conversation_id if is_key(conversation_id) else conversation_key(conversation_id)
    found = conversations.find(key, user)
    if not found:
        raise click.ClickException(f"no conversation {conversation_id!r}" + (f" of {user}" if user else "") + ": see `echo-server conversations`")
    if len(found) > 1:
        raise click.ClickException(f"users {', '.join(sorted(c.user for c in found))} each have a conversation {conversation_id!r}: add --user")
    summary = found[0]
    exchanges = conversations.exchanges(summary)
    if as_json:
        click.echo(json.dumps({"conversation": summary.as_dict(), "exchanges": [e.as_dict() for e in exchanges]}, ensure_ascii=False, indent=1))
        return
    click.echo(f"{summary.id}  {summary.user}  {summary.started} – {summary.last}  {summary.exchanges} exchanges  {summary.title}")
    for e in exchanges:
        click.echo(f"\n[{e.at}]  {e.path}:{e.line_start}-{e.line_end}")
        click.echo(f"  {summary.user}: {e.prompt}")
        click.echo(f"  echo: {e.reply}")


@main.command("distill")
@memory_options
@click.option("--slots", type=click.IntRange(1, 64), help="Windows in flight at once (default: distill.slots, or the circuit's n_parallel).")
def distill_command(config_file: str | None, memory: str | None, index: str | None, slots: int | None) -> None:
    """Distill the memory into facts with the config's distill.circuit, here, without a server:
    every window not distilled yet (Ctrl-C stops; the next run goes on from there)."""
    from echo.config import EMBEDDED_MODEL, fit_to_hardware
    from echo.llm.completion import KVCacheFullError
    from echo.llm.engine import load_engine
    from echo.llm.models import check_models
    from echo.memory.distill import CircuitUnavailable, DistillBusy, Distiller, WindowTooLong, distilling_lock

    config, memory_dir, _ = _memory_folders(config_file, memory, index)
    config, _ = fit_to_hardware(config, 0)
    d = config.distill
    circuit = config.circuits[d.circuit]
    store = _fact_store(config, memory_dir)
    try:
        distiller = Distiller(config, store, circuit.n_ctx, memory_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if circuit.engine == "llama" and circuit.model == EMBEDDED_MODEL:
        click.echo("note: the embedded SmolLM2-135M writes poor facts; use it to try distillation, not to keep them", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    engine = load_engine(circuit, check_models(config).get(d.circuit))
    slots = slots or d.slots or circuit.n_parallel

    def complete(messages, response_format, halt):
        try:
            done = engine.chat(messages, max_tokens=d.max_tokens, greedy=True, response_format=response_format, cancel=halt)
        except KVCacheFullError as exc:
            raise WindowTooLong(str(exc)) from None
        return done.text, done.prompt_tokens, done.completion_tokens

    shown = {"at": 0.0}
    tty = sys.stderr.isatty()

    def show(progress: dict) -> None:
        if not tty and time.monotonic() - shown["at"] < 10 and progress["state"] == "distilling":
            return
        shown["at"] = time.monotonic()
        click.echo(("\r" if tty else "") + _distill_line(progress), err=True, nl=not tty)

    try:
        with distilling_lock(store.path.parent):
            result = distiller.run(complete, slots, stop, show)
    except (DistillBusy, CircuitUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        getattr(engine, "close", lambda: None)()
    if tty:
        click.echo("", err=True)
    dropped = ", ".join(f"{n} {why}" for why, n in result["dropped"].items()) or "none"
    click.echo(
        f"{result['state']}: {result['windows_done']} of {result['windows']} windows distilled, {result['facts_added']} facts added "
        f"({result['facts_known_already']} already known; dropped: {dropped}; {result['windows_failed']} windows failed), "
        f"{result['windows_open']} waiting for their conversation to go quiet"
    )
    if result["state"] == "stopped":
        click.echo("run `echo-server distill` again to go on where it stopped", err=True)
        sys.exit(130)


def _distill_line(p: dict) -> str:
    eta = f"{p['eta_s'] // 60:.0f} min left" if p.get("eta_s") is not None else "time left: measuring"
    return (
        f"distill: parts {p['parts_done']}/{p['parts']}  windows {p['windows_done']}/{p['windows']}  facts +{p['facts_added']}  "
        f"{p['tokens_per_s']:.0f} tokens/s  {eta}"
    )


@main.command("plan")
@click.option("--config", "-c", "config_file", envvar=CONFIG_ENV, help=f"YAML config (default: ${CONFIG_ENV} or configs/default.yaml).")
@click.option("--gpu-gb", type=click.FloatRange(1, 10_000), default=48.0, show_default=True, help="The GPU's memory in GB (an A40: 48).")
@click.option("--lines", type=click.IntRange(1), help="Estimate the first distillation for a memory of this many lines like the config's (default: its own).")
def plan_command(config_file: str | None, gpu_gb: float, lines: int | None) -> None:
    """Will the circuits fit on one GPU? Read from the GGUF headers, weights never loaded. And
    how long the first distillation of the memory would take on an A40."""
    from echo.llm.plan import PlanError, plan, render
    from echo.ops.distill_plan import estimate, render_estimate

    try:
        config = load_config(config_file)
        result = plan(config, int(gpu_gb * 10**9))
    except (ConfigError, PlanError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render(result))
    guess = estimate(config, config.memory_dir, lines)
    click.echo(render_estimate(config, guess) if guess else f"distill: no parts in {config.memory_dir} to measure the first distillation by")
    if not result.fits:
        click.echo("Fix: fewer slots (n_parallel), fewer GPU layers (n_gpu_layers), a shorter n_ctx, a smaller quantization, or a bigger GPU.", err=True)
        sys.exit(1)


@main.command("rehearse")
@click.option("--config", "-c", "config_file", envvar=CONFIG_ENV, help=f"The deployment's YAML config (default: ${CONFIG_ENV} or configs/default.yaml).")
@click.option("--max-tokens", type=click.IntRange(8, 4096), default=48, show_default=True, help="Each circuit's answers capped at this many tokens.")
@click.option("--keep", is_flag=True, help="Keep the rehearsal's folder (its memory, facts, projects) instead of removing it.")
def rehearse_command(config_file: str | None, max_tokens: int, keep: bool) -> None:
    """Boot a deployment's config here before paying for its GPU: the embedded model stands in
    for each GGUF that is missing, GPU shares are zero, and a fresh folder holds its memory.
    Asks each route once and prints what worked; exit code 0 only when all did."""
    import secrets
    import shutil
    import socket
    import tempfile

    from echo.config import REPO_ROOT
    from echo.ops.rehearse import ray_resources, rehearsal_config, run_checks

    try:
        config = load_config(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    def free_port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    home = Path(tempfile.mkdtemp(prefix="echo-rehearsal-"))
    rehearsed, notes = rehearsal_config(config, home, free_port(), max_tokens)
    if not rehearsed.manifest_dir.is_dir():
        rehearsed = rehearsed.model_copy(update={"manifest_dir": REPO_ROOT / "manifest"})
        notes.append(f"manifest: {config.manifest_dir} is not here: Echo's own manifest/ stands in")
    click.echo(f"REHEARSAL of {config_path_shown(config_file)}: this deployment booted here, NOT with its real models")
    for note in notes:
        click.echo(f"  - {note}")
    token = secrets.token_hex(16)
    os.environ["ECHO_ORIGIN_TOKEN"] = token  # the rehearsal's own owner, before Ray starts: never the real one
    cpus = sum(c.num_cpus * (c.autoscaling.min_replicas if c.autoscaling else c.replicas or 1) for c in rehearsed.circuits.values()) + 2

    import ray
    from ray import serve

    from serve_app import build_from_config, side_by_side, start_ray

    os.environ.update(side_by_side())  # beside the real Echo, if it runs here: before Ray starts

    url = f"http://127.0.0.1:{rehearsed.port}"
    checks = []
    try:
        start_ray(num_cpus=max(os.cpu_count() or 1, int(cpus + 0.999)), resources=ray_resources(rehearsed), include_dashboard=False, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": rehearsed.port})
        serve.run(build_from_config(rehearsed), name="echo", route_prefix="/")
        health = _wait_health(url, 900)
        for name, circuit in health["circuits"].items():
            checks.append(
                (f"boot: circuit {name}", circuit["state"] == "ready", circuit.get("reason") or f"{circuit.get('model')}, {circuit['load']['slots']} slots")
            )
        memory = _wait_memory(url, 300)
        checks.append(("boot: memory", memory["replay"]["state"] == "ready", f"replay {memory['replay']['state']}, embedding {memory['embedding']['state']}"))
        if rehearsed.distill.enabled:
            distill = memory.get("distill") or {}
            checks.append(("boot: distiller", distill.get("state") not in (None, "off", "failed"), distill.get("reason") or distill.get("state", "absent")))

        def post(path: str, body: dict, bearer: str | None) -> dict:
            request = urllib.request.Request(
                f"{url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json", "Authorization": f"Bearer {bearer}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=900) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                raise RuntimeError(f"HTTP {exc.code}: {exc.read().decode('utf-8', 'replace')[:200]}") from None

        checks += [(c.route, c.ok, c.detail) for c in run_checks(post, token)]
    except Exception as exc:
        checks.append(("boot", False, f"{type(exc).__name__}: {exc}"[:400]))
    finally:
        serve.shutdown()
        ray.shutdown()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    for route, ok, detail in checks:
        click.echo(f"{'ok    ' if ok else 'FAILED'} {route}: {detail}")
    failed = [route for route, ok, _ in checks if not ok]
    click.echo(f"rehearsal: {len(checks) - len(failed)} of {len(checks)} worked" + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


def config_path_shown(config_file: str | None) -> str:
    from echo.config import config_path

    return str(config_path(config_file))


def _wait_health(url: str, timeout_s: float) -> dict:
    """/health once no circuit is loading (each ready or failed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
                health = json.loads(response.read())
            if not any(c["state"] in ("loading", "unreachable") for c in health["circuits"].values()):
                return health
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(1)
    raise TimeoutError(f"the circuits were still loading after {timeout_s:.0f} s")


def _wait_memory(url: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    memory: dict = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
            memory = json.loads(response.read())["memory"]
        if memory.get("replay", {}).get("state") in ("ready", "failed"):
            return memory
        time.sleep(1)
    return memory


@main.command("doctor")
@click.option("--config", "-c", "config_file", envvar=CONFIG_ENV, help=f"YAML config (default: ${CONFIG_ENV} or configs/default.yaml).")
@click.option("--address", envvar="RAY_ADDRESS", help="The Ray cluster Echo will join: each node is asked what it holds (default: none, it starts one).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=8080, show_default=True, envvar="ECHO_METRICS_PORT")
def doctor_command(config_file: str | None, address: str | None, metrics_port: int) -> None:
    """Check the tree, models, memory, manifest, token, ports and Ray: can Echo start?"""
    from actors.node_probe import cluster_nodes
    from echo.config import REPO_ROOT
    from echo.ops.doctor import diagnose

    findings = diagnose(REPO_ROOT, config_file, address, metrics_port, lambda config: cluster_nodes(address, config))
    marks = {"ok": "ok   ", "warn": "WARN ", "error": "ERROR"}
    for finding in findings:
        click.echo(f"{marks[finding.level]} {finding.what}" + (f"\n      fix: {finding.fix}" if finding.fix else ""))
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warn" for f in findings)
    click.echo(f"{errors} errors, {warnings} warnings: " + ("Echo cannot start until the errors are fixed" if errors else "Echo can start"))
    sys.exit(1 if errors else 0)


@main.command("package")
@click.option("--out", "out", default="dist/echo.zip", show_default=True, help="Where to write the zip.")
@click.option("--with-memory", is_flag=True, help="Also pack memory/ (the owner's conversations: private).")
def package_command(out: str, with_memory: bool) -> None:
    """Build the zip to upload to a RunPod pod: the same tree gives the same bytes."""
    from echo.config import REPO_ROOT
    from echo.ops.package import PackageError, build_package, package_files

    total = len(package_files(REPO_ROOT, with_memory))
    with click.progressbar(length=total, label="packing", file=sys.stderr) as bar:
        try:
            packed = build_package(REPO_ROOT, Path(out).resolve(), with_memory, on_file=lambda _: bar.update(1))
        except PackageError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{packed.path}: {packed.files} files, {packed.size / 1024:.0f} KiB" + (" (memory/ included: keep it private)" if with_memory else ""))


def _report_when_ready(health_url: str, stop: threading.Event, timeout_s: float = 600) -> None:
    """Print each circuit's state until all are ready, one failed, or Echo is stopping."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline and not stop.is_set():
        try:
            with urllib.request.urlopen(health_url, timeout=10) as response:
                health = json.load(response)
        except OSError:
            stop.wait(1)
            continue
        states = {name: c.get("state") for name, c in health["circuits"].items()}
        if states != last:
            click.echo("circuits: " + ", ".join(f"{n} {s}" for n, s in states.items()))
            last = states
        failed = {n: c.get("reason") for n, c in health["circuits"].items() if c.get("state") == "failed"}
        if failed:
            for name, reason in failed.items():
                click.echo(f"circuit {name} failed: {reason}", err=True)
            return
        if health["status"] == "ready":
            return
        stop.wait(1)


@main.command("user-key")
@click.argument("user")
def user_key_command(user: str) -> None:
    """Print USER's key: with it, and that user name, Echo recalls USER's memories for them.

    A user name alone is only a claim, so without the key Echo answers without memories. The
    key comes from $ECHO_ORIGIN_TOKEN: a new token revokes every key."""
    from echo.brain.users import ORIGIN_USER, USER_RULE, is_user_name, user_key

    token = origin_token()
    if token is None:
        raise click.ClickException(f"user keys are made from the owner's token: {ENABLE_HINT}")
    if not is_user_name(user) or user == ORIGIN_USER:
        raise click.ClickException(f"{user!r} is not a user name Echo takes: {USER_RULE}, not 'origin'")
    click.echo(user_key(token, user))


if __name__ == "__main__":
    sys.exit(main())
