"""`echo-server ask` in a terminal: the answer's server-sent events as text, the reply as it
streams (concat in the order the answer gives), then its memories, failures and conversation."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from echo.brain.merge import ConcatStream

Output = tuple[str, bool]  # text, and whether it goes to stderr (notes) rather than stdout (the reply)


class StreamError(Exception):
    """The stream ended with Echo's error event."""


def sse_events(lines: Iterable[bytes]) -> Iterator[tuple[str, dict]]:
    """(event name, data) from a text/event-stream body read line by line."""
    name = "message"
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            yield name, json.loads(line[len("data: ") :])


def render(events: Iterable[tuple[str, dict]], as_json: bool = False) -> Iterator[Output]:
    """What the terminal shows of an answer's events; StreamError for Echo's error event."""
    order, live, printed = None, False, False
    for name, event in events:
        if name == "error":
            raise StreamError(event["error"]["message"])
        if as_json:
            if name == "done":
                yield json.dumps(event, ensure_ascii=False, indent=1) + "\n", False
            continue
        piece = ""
        if name == "start":
            live = event.get("merge") == "concat"  # a synthesized reply is not the drafts: it comes whole
            order = ConcatStream(event["order"])
        elif not live and name in ("token", "circuit_done", "circuit_failed"):
            continue
        elif name == "token":
            piece = order.token(event["circuit"], event["text"])
        elif name in ("circuit_done", "circuit_failed"):
            piece = order.finish(event["circuit"], name == "circuit_done")
        elif name == "done":
            yield ("" if printed else event["reply"]) + "\n", False
            for memory in event.get("memories") or []:
                yield f"  remembered: {memory.get('date') or memory['day']} {memory['path']}:{memory['line_start']}-{memory['line_end']}\n", True
            if event.get("failed"):
                yield f"  degraded: {', '.join(event['failed'])} failed\n", True
            yield f"  conversation: {event['conversation']} ({len(event.get('context') or [])} earlier exchanges in the prompt)\n", True
        if piece:
            printed = True
            yield piece, False
