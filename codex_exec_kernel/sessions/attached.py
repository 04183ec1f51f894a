"""A background session as a process-table entry (``session:<id>``), for ``session/attach``.

The table only needs a :class:`ProcessBackend`; this one is an :class:`AttachClient`
underneath. Output maps to ``pty`` (tty sessions) or ``stdout``/``stderr``; writes,
resizes, signals and closeStdin go to the supervisor as socket messages.

``terminate()`` on the entry *detaches*: the socket closes, the session runs on.
The entry then closes like any process: stream EOFs, then an exit whose code is the
session's recorded exit code if it has ended by then, else ``-1`` with signal null.
When the supervisor vanishes under us (a lost session) the same rule applies.
Flow control: :meth:`pause_reading` stops consuming the socket; the supervisor
keeps logging the child's output to disk, so the child never blocks on us.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from ..backend import OutputSink, ProcessBackend, ScreenSnapshot
from ..protocol import invalid_params
from . import wire
from .client import AttachClient
from .store import SessionStore

DETACHED_EXIT_CODE = -1
#: How long a snapshot may take the supervisor (it feeds its model in slices first).
SNAPSHOT_TIMEOUT = 60.0


class CuttingSink(OutputSink, Protocol):
    """The table entry: :meth:`cut` gives the seq of everything delivered so far."""

    def cut(self) -> int: ...


class AttachedSessionBackend(ProcessBackend):
    """Table backend over one attach connection (or a replay of an ended session's log)."""

    def __init__(
        self, client: AttachClient, store: SessionStore, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.client = client
        self.store = store
        self.loop = loop
        self.pid = client.pid
        self.tty = client.tty
        self.streams = ("pty",) if self.tty else ("stdout", "stderr")
        self._sink: CuttingSink | None = None
        self._snapshots: deque[asyncio.Future[tuple[ScreenSnapshot, int]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._detached = False
        self._finished = False

    @property
    def keeps_screen(self) -> bool:  # type: ignore[override]
        """The supervisor keeps the model (a replay of an ended session: the entry does)."""
        return self.client.screen

    def start(self, sink: OutputSink) -> None:
        self._sink = sink  # type: ignore[assignment]  # a ManagedProcess
        self._task = self.loop.create_task(self._pump())

    async def _pump(self) -> None:
        exit_event: wire.Exit | None = None
        try:
            async for event in self.client.events():
                if not self._resumed.is_set():
                    await self._resumed.wait()
                if isinstance(event, wire.Exit):
                    exit_event = event
                    break
                assert self._sink is not None
                if isinstance(event, wire.Snapshot):
                    self._answer_snapshot(event)
                    continue
                stream = event.stream if event.stream in self.streams else self.streams[0]
                self._sink.on_output(stream, event.data)
        finally:
            self._finish(exit_event)

    def _answer_snapshot(self, event: wire.Snapshot) -> None:
        """The supervisor's snapshot follows the output it reflects, all of which the
        entry has by now: its seq is the entry's last."""
        assert self._sink is not None
        seq = self._sink.cut()
        snap = ScreenSnapshot(event.chunk, event.rows, event.cols, event.alternate_screen,
                              event.title)  # fmt: skip
        while self._snapshots:
            fut = self._snapshots.popleft()
            if not fut.done():
                fut.set_result((snap, seq))
                return

    async def snapshot(self, rows: int | None, cols: int | None) -> tuple[ScreenSnapshot, int]:
        fut: asyncio.Future[tuple[ScreenSnapshot, int]] = self.loop.create_future()
        if self._finished or not self.client.request_snapshot(rows, cols):
            raise invalid_params(f"session {self.client.session_id} is no longer attached")
        self._snapshots.append(fut)
        try:
            return await asyncio.wait_for(fut, SNAPSHOT_TIMEOUT)
        except asyncio.TimeoutError:
            raise invalid_params(f"session {self.client.session_id}: no snapshot") from None

    def _fail_snapshots(self) -> None:
        error = invalid_params(f"session {self.client.session_id} ended before its snapshot")
        while self._snapshots:
            fut = self._snapshots.popleft()
            if not fut.done():
                fut.set_exception(error)

    def _finish(self, exit_event: wire.Exit | None) -> None:
        self._fail_snapshots()
        if self._finished or self._sink is None:
            return
        self._finished = True
        self.client.close()
        if exit_event is not None:
            code, sig = exit_event.exit_code, exit_event.signal
        else:
            meta = self.store.read_meta(self.client.session_id)
            if meta is not None and meta.ended_at is not None and meta.exit_code is not None:
                code, sig = meta.exit_code, meta.signal
            else:
                code, sig = DETACHED_EXIT_CODE, None
        for stream in self.streams:
            self._sink.on_stream_eof(stream)
        self._sink.on_exit(code, sig)

    # -- flow control
    def pause_reading(self) -> None:
        self._resumed.clear()

    def resume_reading(self) -> None:
        self._resumed.set()

    # -- input and control
    def write(self, data: bytes) -> bool:
        return self.client.write(data)

    def close_stdin(self) -> bool:
        return self.client.close_stdin()

    @property
    def stdin_open(self) -> bool:
        return self.client.stdin_open

    def resize(self, rows: int, cols: int) -> None:
        self.client.resize(rows, cols)

    def signal(self, signum: int) -> None:
        self.client.signal(signum)

    def terminate(self, grace: float) -> bool:
        """Detach (the session keeps running); True when we were still attached."""
        attached = not self._detached and not self._finished
        self._detached = True
        self.client.close()
        self._resumed.set()  # a paused pump must see the end
        return attached

    def kill(self) -> None:
        """A background session is not ours to end: let go of it at once."""
        self.terminate(0.0)

    def close(self) -> None:
        self._fail_snapshots()
        self._detached = True
        self._finished = True  # the entry is closed: no more sink calls
        self.client.close()
        self._resumed.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()


async def attach_backend(
    store: SessionStore, session_id: str, from_offset: int | None, default_tail: int
) -> AttachedSessionBackend:
    """Connect to the session (or prepare its replay) on the running loop."""
    client = await AttachClient.open(store, session_id, from_offset, default_tail=default_tail)
    return AttachedSessionBackend(client, store, asyncio.get_running_loop())
