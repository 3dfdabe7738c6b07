"""What the benchmarks and the tests share: a free local port, the percentile of a sample,
and waiting for something to happen.

Imported as bench.common: the bench scripts put the repository root on sys.path first, and
pytest runs from it.
"""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (q from 0 to 100) by the nearest rank; NaN for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def wait_until(check, timeout: float, what: str, every: float = 0.1):
    """check()'s first truthy result, asked every `every` seconds; TimeoutError after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {timeout}s")
