"""One reply from the circuits' answers: concat (in CONCAT_ORDER) or synthesize (the self
circuit rewrites the drafts, as mixture-of-agents aggregators do). The order is written
here only; clients learn it from the answer (the stream's start event)."""

from __future__ import annotations

from collections.abc import Mapping

from echo.llm.completion import Completion, Messages

CONCAT_ORDER = ("self", "emotion", "creation")


def concat(answers: Mapping[str, Completion]) -> str:
    """The drafts joined in CONCAT_ORDER, a blank line between."""
    return "\n\n".join(answers[n].text for n in CONCAT_ORDER if n in answers)


def synthesis_messages(system: str, prompt: str, answers: Mapping[str, Completion], conversation: Messages = ()) -> Messages:
    """The self circuit's messages for one reply from the drafts, with the conversation so far."""
    drafts = "\n\n".join(f"[{name}]\n{answers[name].text}" for name in CONCAT_ORDER if name in answers)
    return [
        {"role": "system", "content": system},
        *conversation,
        {
            "role": "user",
            "content": f"Question: {prompt}\n\nDrafts from your circuits:\n{drafts}\n\n"
            "Write one reply to the question that keeps the best of each draft. Do not mention the drafts.",
        },
    ]


class ConcatStream:
    """The circuits' tokens, arriving interleaved, as the text of a concat reply: the first
    circuit's as they come, the others' held until their turn, a blank line between.
    Streaming clients (the OpenAI route, the CLI) build it with the order the answer gives."""

    def __init__(self, order: tuple[str, ...] | list[str] = CONCAT_ORDER) -> None:
        self.order = tuple(order)
        self.tokens: dict[str, list[str]] = {name: [] for name in self.order}
        self.sent: dict[str, int] = {name: 0 for name in self.order}
        self.finished: set[str] = set()
        self.turn = 0
        self.any_sent = False

    def token(self, circuit: str, text: str) -> str:
        self.tokens[circuit].append(text)
        return self._flush()

    def finish(self, circuit: str, answered: bool) -> str:
        self.finished.add(circuit)
        if not answered:
            self.tokens[circuit] = []
        return self._flush()

    def _flush(self) -> str:
        out = []
        while self.turn < len(self.order):
            name = self.order[self.turn]
            new = self.tokens[name][self.sent[name] :]
            if new:
                if self.sent[name] == 0 and self.any_sent:
                    out.append("\n\n")
                out.extend(new)
                self.sent[name] += len(new)
                self.any_sent = True
            if name not in self.finished:
                break
            self.turn += 1
        return "".join(out)
