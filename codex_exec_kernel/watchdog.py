"""The orphan watchdog: ends our process groups when their owner dies, however it dies.

A SIGKILLed kernel runs no hook, and ``PR_SET_PDEATHSIG`` cannot be set on a child
started by ``posix_spawn`` (and fires on the death of the spawning *thread*, not
process). So the owner starts this tiny process in a session of its own (out of
reach of the kernel's process-group signals) and keeps a pipe to its stdin; it
tells the watchdog each process group it starts (``+PGID``) and each that is gone
(``-PGID``). When the pipe reaches EOF — the owner exited, crashed or was killed —
the watchdog sends SIGHUP and SIGTERM to every group still registered, then SIGKILL
after a short grace, and exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from .pgroup import TERMINATE_SIGNALS, group_alive, signal_group


class Watchdog:
    """The owner's handle on its watchdog process. Thread-safe: any thread may register."""

    def __init__(self, grace: float = 1.0) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "codex_exec_kernel.watchdog", str(grace)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        assert self._proc.stdin is not None
        self._fd = self._proc.stdin.fileno()
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, line: str) -> None:
        with self._lock:
            try:
                os.write(self._fd, line.encode())
            except OSError:
                pass  # the watchdog is gone; nothing better to do

    def register(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def unregister(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def close(self) -> None:
        """Closing the pipe is the signal: the watchdog cleans up and exits."""
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass


def main(argv: list[str]) -> int:
    grace = float(argv[0]) if argv else 1.0
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    buf = b""
    while True:
        try:
            data = os.read(0, 65536)
        except InterruptedError:
            continue
        except OSError:
            data = b""
        if not data:
            break
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line[:1] == b"+" and line[1:].isdigit():
                groups.add(int(line[1:]))
            elif line[:1] == b"-" and line[1:].isdigit():
                groups.discard(int(line[1:]))
    groups = {g for g in groups if g > 1 and group_alive(g)}
    for pgid in groups:
        for signum in TERMINATE_SIGNALS:
            signal_group(pgid, signum)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        time.sleep(0.02)
        groups = {g for g in groups if group_alive(g)}
    for pgid in groups:
        signal_group(pgid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
