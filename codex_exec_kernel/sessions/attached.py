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

from ..backend import OutputSink, ProcessBackend
from . import wire
from .client import AttachClient
from .store import SessionStore

DETACHED_EXIT_CODE = -1


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
        self._sink: OutputSink | None = None
        self._task: asyncio.Task[None] | None = None
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._detached = False
        self._finished = False

    def start(self, sink: OutputSink) -> None:
        self._sink = sink
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
                stream = event.stream if event.stream in self.streams else self.streams[0]
                self._sink.on_output(stream, event.data)
        finally:
            self._finish(exit_event)

    def _finish(self, exit_event: wire.Exit | None) -> None:
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
