"""An asyncio client of a session: attach to the supervisor's socket, or replay an ended log.

Used by the CLI's ``attach``, the protocol's ``session/attach`` backend and the
magics. Output arrives as :class:`wire.Output` events, then one :class:`wire.Exit`
when the session ended; the event stream simply stops on detach or when the
supervisor vanished (a lost session).

Backpressure: events wait in a bounded queue; when it is full we stop reading the
socket, the supervisor's send to us then waits, and it keeps logging to disk
regardless. So a slow consumer costs nothing but its own lag.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

from . import wire
from .control import SessionUnreachable, connect_socket
from .errors import CorruptSession
from .store import SessionMeta, SessionStore

QUEUE_HIGH = 64  # events (each at most 256 KiB) before we pause the socket
QUEUE_LOW = 16
REPLAY_CHUNK = 256 * 1024
Event = wire.Output | wire.Exit | wire.Snapshot


class _AttachProtocol(asyncio.Protocol):
    def __init__(self, client: AttachClient) -> None:
        self.client = client
        self.decoder = wire.FrameDecoder()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except wire.WireError as exc:
            self.client._fail(str(exc))
            return
        for msg in messages:
            self.client._on_message(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._on_lost()


class AttachClient:
    """One attachment to one session. Make it with :meth:`open`; iterate :meth:`events`."""

    def __init__(self, store: SessionStore, session_id: str) -> None:
        self.store = store
        self.session_id = session_id
        self.welcome: wire.Welcome | None = None
        self.exit: wire.Exit | None = None
        self.error: str | None = None
        self.live = False  # connected to a supervisor (else: replaying an ended log)
        self.offset = 0  # log offset of the next byte we will yield
        self._protocol: _AttachProtocol | None = None
        self._queue: deque[Event] = deque()
        self._changed = asyncio.Event()
        self._welcomed: asyncio.Future[wire.Welcome] | None = None
        self._ended = False  # no more events will come
        self._paused = False
        self._stdin_closed = False
        self._replay_from: int | None = None
        self.meta: SessionMeta | None = None
        #: Why this is a replay of a session that should be running (socket deleted,
        #: attach refused...), or why a live attach ended without an exit; None if neither.
        self.lost_reason: str | None = None

    # -- opening
    @classmethod
    async def open(
        cls,
        store: SessionStore,
        session_id: str,
        from_offset: int | None = None,
        *,
        default_tail: int = 64 * 1024,
    ) -> AttachClient:
        """Attach to a running session, or prepare a replay of an ended/lost one's log.

        Raises :class:`SessionNotFound` for an unknown id.
        """
        info = store.get(session_id)
        if info.status == "corrupt":
            raise CorruptSession(info.id, info.problem or "unreadable")
        client = cls(store, info.id)
        client.meta = info.meta
        if info.status == "running":
            try:
                await client._connect(from_offset)
                return client
            except SessionUnreachable as exc:
                client.lost_reason = str(exc)
            except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
                client.lost_reason = f"session {info.id}: attaching failed: {exc}"
        elif info.status == "lost":
            client.lost_reason = (
                f"session {info.id} was lost: its supervisor is gone without recording an exit"
            )
        # Ended (or it ended while we connected): replay the log from the file.
        client.meta = store.read_meta(info.id) or info.meta
        size = store.log_size(info.id)
        start = size - default_tail if from_offset is None else from_offset
        client._replay_from = min(max(start, 0), size)
        client.offset = client._replay_from
        return client

    async def _connect(self, from_offset: int | None) -> None:
        loop = asyncio.get_running_loop()
        sock = await asyncio.to_thread(connect_socket, self.store, self.session_id, 5.0)
        sock.setblocking(False)
        self._welcomed = loop.create_future()
        try:
            _t, proto = await loop.create_unix_connection(lambda: _AttachProtocol(self), sock=sock)
        except BaseException:
            sock.close()
            raise
        self._protocol = proto
        self._send(wire.Hello(from_offset))
        try:
            welcome = await asyncio.wait_for(asyncio.shield(self._welcomed), 10.0)
        except BaseException:
            self.close()
            raise
        self.welcome = welcome
        self.offset = welcome.offset
        self.live = True

    # -- what we know
    @property
    def tty(self) -> bool:
        if self.welcome is not None:
            return self.welcome.tty
        return bool(self.meta and self.meta.tty)

    @property
    def pid(self) -> int:
        if self.welcome is not None:
            return self.welcome.pid
        return (self.meta.pid if self.meta else None) or -1

    @property
    def screen(self) -> bool:
        """Attached to a supervisor that keeps a screen model (answers snapshots)."""
        return self.live and self.welcome is not None and self.welcome.screen

    @property
    def connected(self) -> bool:
        p = self._protocol
        return p is not None and p.transport is not None and not p.transport.is_closing()

    # -- protocol callbacks
    def _on_message(self, msg: wire.Message) -> None:
        if isinstance(msg, wire.Welcome):
            if self._welcomed is not None and not self._welcomed.done():
                self._welcomed.set_result(msg)
        elif isinstance(msg, (wire.Output, wire.Exit, wire.Snapshot)):
            if isinstance(msg, wire.Exit):
                self.exit = msg
            self._queue.append(msg)
            if len(self._queue) >= QUEUE_HIGH:
                self._pause_transport()
            self._changed.set()
        elif isinstance(msg, wire.Error):
            self._fail(msg.message)

    def _fail(self, message: str) -> None:
        self.error = message
        self.lost_reason = f"session {self.session_id}: the supervisor refused: {message}"
        if self._welcomed is not None and not self._welcomed.done():
            self._welcomed.set_exception(SessionUnreachable(self.lost_reason))
        self.close()

    def _on_lost(self) -> None:
        if not self._ended and self.exit is None and self.lost_reason is None:
            self.lost_reason = (
                f"session {self.session_id}: its supervisor closed the connection without "
                f"recording an exit (it was killed or crashed)"
            )
        self._ended = True
        if self._welcomed is not None and not self._welcomed.done():
            self._welcomed.set_exception(ConnectionError("the supervisor closed the connection"))
        self._changed.set()

    def _pause_transport(self) -> None:
        p = self._protocol
        if not self._paused and p is not None and p.transport is not None:
            self._paused = True
            with contextlib.suppress(Exception):
                p.transport.pause_reading()

    def _resume_transport(self) -> None:
        p = self._protocol
        if self._paused and p is not None and p.transport is not None:
            self._paused = False
            with contextlib.suppress(Exception):
                p.transport.resume_reading()

    # -- events
    async def events(self) -> AsyncIterator[Event]:
        """Output events from the offset on, then Exit if the session ended.

        Stops without Exit on detach (:meth:`close`) or when the supervisor vanished.
        """
        if self._replay_from is not None:
            async for event in self._replay():
                yield event
            return
        while True:
            if self._queue:
                event = self._queue.popleft()
                if len(self._queue) <= QUEUE_LOW:
                    self._resume_transport()
                if isinstance(event, wire.Output):
                    self.offset = event.offset + len(event.data)
                yield event
                if isinstance(event, wire.Exit):
                    self.close()
                    return
                continue
            if self._ended:
                return
            self._changed.clear()
            await self._changed.wait()

    async def _replay(self) -> AsyncIterator[Event]:
        stream = "pty" if self.tty else "stdout"
        while not self._ended:
            data, offset, _size = self.store.read_log(self.session_id, self.offset, REPLAY_CHUNK)
            if not data:
                break
            self.offset = offset + len(data)
            yield wire.Output(offset, stream, data)
            await asyncio.sleep(0)
        if self._ended:
            return
        meta = self.store.read_meta(self.session_id) or self.meta
        self._ended = True
        if meta is not None and meta.ended_at is not None:
            self.exit = wire.Exit(meta.exit_code or 0, meta.signal, self.offset)
            yield self.exit

    # -- input and control (no-ops once detached or replaying)
    def _send(self, msg: wire.Message) -> bool:
        if not self.connected or self.exit is not None:
            return False
        assert self._protocol is not None and self._protocol.transport is not None
        self._protocol.transport.write(msg.encode())
        return True

    def write(self, data: bytes) -> bool:
        if self._stdin_closed:
            return False
        return self._send(wire.Input(bytes(data))) if data else self.connected

    def close_stdin(self) -> bool:
        if self._stdin_closed:
            return False
        ok = self._send(wire.CloseStdin())
        self._stdin_closed = ok or self._stdin_closed
        return ok

    def resize(self, rows: int, cols: int) -> bool:
        return self._send(wire.Resize(rows, cols))

    def signal(self, signum: int) -> bool:
        return self._send(wire.Signal(signum))

    def request_snapshot(self, rows: int | None, cols: int | None) -> bool:
        """Ask for a :class:`wire.Snapshot`; it comes among the events, after the output
        it reflects (only when :attr:`screen`)."""
        return self.screen and self._send(wire.SnapshotRequest(rows, cols))

    @property
    def stdin_open(self) -> bool:
        return self.connected and not self._stdin_closed and self.exit is None

    def close(self) -> None:
        """Detach: the session goes on. The events iterator ends."""
        self._ended = True
        p = self._protocol
        if p is not None and p.transport is not None and not p.transport.is_closing():
            p.transport.close()
        self._changed.set()
