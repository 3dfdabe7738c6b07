"""The slots of a batched engine: each is one sequence of llama.cpp's KV cache, with its own
share of the cache, and remembers the tokens it holds so that the next request whose prompt
starts the same way (every request of a circuit starts with the same system prompt) skips
evaluating that part again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens a and b share from the start."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass(eq=False)
class Slot:
    seq: int  # llama.cpp's sequence id
    cached: list[int] = field(default_factory=list)  # the tokens in this sequence's KV cache, in order
    request: Any = None  # the request generating here; None when free
    pending: list[int] = field(default_factory=list)  # tokens to evaluate in the next batch
    last_used: int = 0  # when it was last taken (a counter): ties go to the longest unused

    @property
    def free(self) -> bool:
        return self.request is None

    def reusable(self, prompt: Sequence[int]) -> int:
        """The prompt tokens this slot can keep. The last prompt token is always evaluated
        again, since its logits give the first token of the answer."""
        return max(0, min(common_prefix(self.cached, prompt), len(prompt) - 1))


def pick_slot(slots: Sequence[Slot], prompt: Sequence[int]) -> Slot | None:
    """The free slot that already holds the longest start of the prompt (among equals, the
    one unused the longest); None when every slot is busy."""
    free = [s for s in slots if s.free]
    if not free:
        return None
    return max(free, key=lambda s: (s.reusable(prompt), -s.last_used))
