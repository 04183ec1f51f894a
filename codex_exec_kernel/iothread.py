"""The kernel's I/O thread: one long-lived thread with its own asyncio loop.

It owns every PTY and pipe fd and the whole process table, so nothing a cell does
(``time.sleep(60)``, a busy loop, ``input()``) can stop output, writes or acks.
Other threads (shell, subshells, control) only hand it work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from traitlets.config import Config

from .server import build_server

T = TypeVar("T")


class IOThread:
    """Runs the process table and its dispatcher on a private event loop."""

    def __init__(
        self,
        config: Config | None = None,
        server_name: str = "codex-exec",
        watchdog_grace: float | None = None,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = build_server(
            self.loop, config, server_name=server_name, watchdog_grace=watchdog_grace
        )
        self.table = self.server.table
        self.dispatcher = self.server.dispatcher
        self._thread = threading.Thread(target=self._run, name="codex-exec-io", daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the I/O loop, from any thread, without waiting. After
        :meth:`stop` the loop is closed and such calls are dropped (the table is gone)."""
        with contextlib.suppress(RuntimeError):  # "Event loop is closed"
            self.loop.call_soon_threadsafe(fn, *args)

    def run(self, fn: Callable[[], T], timeout: float | None = 10.0) -> T:
        """Run ``fn()`` on the I/O loop and wait for its result (never from the loop itself)."""
        if threading.current_thread() is self._thread:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def runner() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(runner)
        return future.result(timeout)

    def run_coroutine(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace: float | None = None) -> None:
        """End every process (grace, then SIGKILL) and stop the loop."""
        if not self._thread.is_alive():
            return
        try:
            wait = (grace if grace is not None else self.table.terminate_grace) + 2.0
            self.run_coroutine(self.table.shutdown(grace), timeout=wait)
        except Exception:
            self.loop.call_soon_threadsafe(self.table.kill_all_now)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=2.0)
        self.server.close()
        if not self._thread.is_alive():
            # The loop's selector (epoll) and self-pipe are fds: give them back now, not
            # whenever the garbage collector reaches the loop (a kernel restarts its
            # service without exiting; test_service_fds.py).
            self.loop.close()
