"""Thread ownership, checked rather than only stated.

The process table, its entries, the dispatcher and the connections belong to the
thread that runs their event loop (the kernel's I/O thread, or ``codex-exec
serve``'s main thread): other threads hand them work with ``call_soon_threadsafe``.
As ipykernel's subshell manager asserts which thread it is on, each of these objects
checks it in debug and test runs (``CODEX_EXEC_CHECK_THREADS=1``; the test suite
sets it), so a call from the wrong thread fails loudly instead of racing quietly.
Off by default: the check sits on the hot path of every output chunk.
"""

from __future__ import annotations

import asyncio
import os
import threading

ENV_VAR = "CODEX_EXEC_CHECK_THREADS"


class WrongThreadError(AssertionError):
    """An object that belongs to one event loop's thread was used from another."""


def checks_enabled() -> bool:
    return os.environ.get(ENV_VAR, "") not in ("", "0")


class LoopOwner:
    """Asserts that its owner is used on the thread running ``loop``."""

    __slots__ = ("enabled", "loop", "name")

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self.loop = loop
        self.name = name
        self.enabled = checks_enabled()

    def check(self) -> None:
        if not self.enabled:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self.loop:
            raise WrongThreadError(
                f"{self.name} used on thread {threading.current_thread().name!r}, "
                "not on the thread of its event loop"
            )
