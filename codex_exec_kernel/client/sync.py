"""The synchronous client: the asyncio implementation, driven from a private loop thread.

A thin twin, and honest about how: each :class:`ExecClient` starts one daemon thread
(``codex-exec-client``) running an asyncio loop; every method submits the async
twin's coroutine to it and blocks until it is done; :meth:`ExecClient.close` stops
the thread. httpx instead writes the I/O twice, natively per twin, because its sync
transport is plain sockets. Ours is not: the work is ordering each process's events
by seq, refilling gaps with ``process/read`` and acknowledging output under flow
control, over jupyter_client's asyncio channels. Two copies of that logic would
drift; one copy behind a loop thread cannot. The cost is one thread per client and
a thread hop per call (tens of microseconds, far below a kernel round trip).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from .aio import AsyncExecClient, AsyncProcess
from .models import Chunk, Output, ProcessInfo

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="codex-exec-client",
                                       daemon=True)  # fmt: skip
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Process:
    """Sync handle on a process; iterate it for :class:`Chunk` objects in seq order."""

    def __init__(self, runner: _LoopThread, proc: AsyncProcess) -> None:
        self._runner = runner
        self._proc = proc

    @property
    def process_id(self) -> str:
        return self._proc.process_id

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def exit_code(self) -> int | None:
        return self._proc.exit_code

    @property
    def signal(self) -> str | None:
        return self._proc.signal

    def __iter__(self) -> Iterator[Chunk]:
        agen = self._proc.__aiter__()
        while True:
            try:
                yield self._runner.run(agen.__anext__())
            except StopAsyncIteration:
                return

    def output(self, timeout: float | None = None) -> Output:
        return self._runner.run(self._proc.output(timeout))

    def wait(self, timeout: float | None = None) -> int | None:
        return self._runner.run(self._proc.wait(timeout))

    def write(self, data: bytes | str, write_id: str | None = None) -> str:
        return self._runner.run(self._proc.write(data, write_id))

    def close_stdin(self) -> str:
        return self._runner.run(self._proc.close_stdin())

    def resize(self, rows: int, cols: int) -> None:
        self._runner.run(self._proc.resize(rows, cols))

    def send_signal(self, name: str) -> None:
        self._runner.run(self._proc.send_signal(name))

    def terminate(self, grace_ms: int = 2000) -> bool:
        return self._runner.run(self._proc.terminate(grace_ms))

    def read(self, after_seq: int = 0, max_bytes: int | None = None, wait_ms: int = 0
             ) -> dict[str, Any]:  # fmt: skip
        return self._runner.run(self._proc.read(after_seq, max_bytes, wait_ms))


class ExecClient:
    """Drive a kernel's process table from ordinary (blocking) code.

    >>> with ExecClient.start() as client:        # starts a codex-exec kernel
    ...     print(client.run(["uname", "-a"]).stdout)
    """

    def __init__(self, runner: _LoopThread, client: AsyncExecClient) -> None:
        self._runner = runner
        self._client = client

    @classmethod
    def start(cls, kernel_name: str = "codex-exec", **kwargs: Any) -> ExecClient:
        """Start a new kernel (ended again by :meth:`close`) and connect to it."""
        return cls._open(lambda: AsyncExecClient.start(kernel_name, **kwargs))

    @classmethod
    def connect(cls, connection_file: str, **kwargs: Any) -> ExecClient:
        """Connect to a running kernel by its connection file."""
        return cls._open(lambda: AsyncExecClient.connect(connection_file, **kwargs))

    @classmethod
    def _open(cls, opener: Callable[[], Coroutine[Any, Any, AsyncExecClient]]) -> ExecClient:
        runner = _LoopThread()
        try:
            client = runner.run(opener())
        except BaseException:
            runner.stop()
            raise
        return cls(runner, client)

    @classmethod
    def connect_url(cls, url: str, *args: Any, **kwargs: Any) -> ExecClient:
        """Through a Jupyter server's websocket; parameters as
        ``AsyncExecClient.connect_url`` (``token``, ``kernel_id``, ...)."""
        return cls._open(lambda: AsyncExecClient.connect_url(url, *args, **kwargs))

    @property
    def server_info(self) -> dict[str, Any]:
        return self._client.server_info

    @property
    def kernel_id(self) -> str | None:
        """The kernel's id on the Jupyter server (``connect_url`` clients), else None."""
        return getattr(self._client, "kernel_id", None)

    @property
    def subshell_id(self) -> str | None:
        return self._client.subshell_id

    @property
    def kernel_manager(self) -> Any:
        return self._client.km

    def __enter__(self) -> ExecClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self, shutdown_kernel: bool | None = None) -> None:
        try:
            self._runner.run(self._client.close(shutdown_kernel), timeout=60)
        finally:
            self._runner.stop()

    def request(self, method: str, params: Any = None, buffers: list[bytes] | None = None,
                timeout: float | None = None) -> Any:  # fmt: skip
        return self._runner.run(self._client.request(method, params, buffers, timeout))

    def notify(self, method: str, params: Any = None) -> None:
        self._runner.loop.call_soon_threadsafe(self._client.notify, method, params)

    def exec(self, argv: list[str], **kwargs: Any) -> Process:
        return Process(self._runner, self._runner.run(self._client.exec(argv, **kwargs)))

    def attach(self, process_id: str, after_seq: int = 0) -> Process:
        return Process(self._runner, self._runner.run(self._client.attach(process_id, after_seq)))

    def list(self) -> list[ProcessInfo]:
        return self._runner.run(self._client.list())

    def run(self, argv: list[str], timeout: float | None = None, **kwargs: Any) -> Output:
        return self._runner.run(self._client.run(argv, timeout, **kwargs))
