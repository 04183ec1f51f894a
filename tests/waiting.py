"""Waiting on conditions with deadlines (never fixed sleeps), and process liveness.

Every deadline of the suite goes through :func:`scaled`: a deadline only decides how
long a *failing* test waits, so on a slow or loaded machine (a 2-core box with a load
average of 10) raise ``CODEX_EXEC_TEST_TIMEOUT_SCALE`` rather than editing numbers.
The default, 2, already doubles the figures written in the tests.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

SCALE_ENV = "CODEX_EXEC_TEST_TIMEOUT_SCALE"
DEFAULT_SCALE = 2.0


def timeout_scale() -> float:
    """The factor applied to every deadline (``CODEX_EXEC_TEST_TIMEOUT_SCALE``, default 2)."""
    raw = os.environ.get(SCALE_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_SCALE
    except ValueError:
        raise ValueError(f"{SCALE_ENV} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{SCALE_ENV} must be positive, got {raw!r}")
    return value


def scaled(seconds: float) -> float:
    """``seconds`` times the suite's timeout scale: use it for every deadline."""
    return seconds * timeout_scale()


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01,
               message: str = "condition") -> object:
    """Poll ``predicate`` until truthy; fail the test at the (scaled) deadline. Never a
    fixed sleep."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:g}s waiting for {message}")
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


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    """Wait until ``url`` answers (any HTTP status), failing early if ``proc`` dies."""
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)  # polling interval while the server starts
    raise RuntimeError(f"{url} did not answer in {timeout} s:\n{log.read_text()[-4000:]}")
