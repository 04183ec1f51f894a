"""Waiting on conditions with deadlines (never fixed sleeps), and process liveness."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01,
               message: str = "condition") -> object:
    """Poll ``predicate`` until truthy; fail the test at the deadline. Never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def pid_alive(pid: int | None) -> bool:
    """A live process that is not a zombie (init here does not reap orphans)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def wait_gone(pids: list[int], timeout: float = 2.0) -> None:
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout,
               message=f"pids {pids} to end")
