"""What the benchmarks and the tests share: a free local port, the percentile of a sample,
and waiting for something to happen.

Imported as bench.common: the bench scripts put the repository root on sys.path first, and
pytest runs from it.
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's ephemeral
    range: ports are taken seconds or minutes before Serve or HAProxy bind them, and a port from
    that range could meanwhile go to any outgoing connection or Ray worker."""
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ranges.read_text().split()[0]) if ranges.is_file() else 0
    while True:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", random.randrange(max(1024, low - 12_000), low) if low > 2048 else 0))
            except OSError:
                continue
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
