"""A reply's text as its tokens arrive: the bytes of each token become text once they form
whole UTF-8 characters, and text that may be the start of a stop string is held back until
the next tokens say whether it is one (a stop string can span several tokens)."""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextStream:
    """feed() each token's bytes and show what it returns; stopped is set at a stop string,
    which (with anything after it) is never shown."""

    def __init__(self, stops: Sequence[str] = ()):
        self._stops = [s for s in stops if s]
        # Bytes that are not UTF-8 are dropped, as llama-cpp-python's completions drop them.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self._text = ""
        self._shown = 0  # characters of _text already returned
        self.stopped = False

    @property
    def text(self) -> str:
        """Everything shown so far."""
        return self._text[: self._shown]

    def feed(self, piece: bytes) -> str:
        """The text newly safe to show once this token's bytes are added."""
        if self.stopped:
            return ""
        self._text += self._decoder.decode(piece)
        # A stop string cannot start in text already shown: its start would have been held back.
        found = [i for i in (self._text.find(s, self._shown) for s in self._stops) if i >= 0]
        if found:
            self.stopped = True
            return self._show(min(found))
        return self._show(len(self._text) - self._held_back())

    def flush(self) -> str:
        """What is left to show when the reply ends without a stop string."""
        if self.stopped:
            return ""
        self._text += self._decoder.decode(b"", final=True)
        return self._show(len(self._text))

    def _held_back(self) -> int:
        """The length of the longest end of the text that begins a stop string."""
        longest = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(self._text) - self._shown), longest, -1):
                if self._text.endswith(stop[:n]):
                    longest = n
                    break
        return longest

    def _show(self, end: int) -> str:
        piece = self._text[self._shown : end]
        self._shown = end
        if self.stopped:
            self._text = self._text[:end]
        return piece
