"""One entry of the process table: its event log, its subscribers, its flow control.

Every output chunk, the exit and the close take the next seq of one counter, in the
order they happen, so a client can always tell what it missed. The entry keeps the
newest output up to a byte cap (evicting whole chunks), coalesces what arrives in a
short window into one chunk, and, when a flow-controlled subscriber falls more than a
window behind, stops reading the child (``pause_reading``): the child then blocks on
write like in a real terminal. Bytes are never dropped to make room.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from .backend import ProcessBackend, ScreenSnapshot
from .protocol import LIMIT_REACHED, ProtocolError, invalid_params
from .screen.feeder import ScreenFeeder

if TYPE_CHECKING:
    from .table import ProcessTable


@dataclass(frozen=True)
class Event:
    """A numbered event: output (``stream`` + ``data``), ``exited`` or ``closed``."""

    seq: int
    kind: str  # "output" | "exited" | "closed"
    stream: str | None = None
    data: bytes = b""
    exit_code: int | None = None
    signal: str | None = None


class Subscriber(Protocol):
    """A connection's view as the entry needs it (see ``dispatcher.ConnectionState``)."""

    flow_control: bool

    @property
    def congested(self) -> bool: ...

    def deliver(self, process_id: str, event: Event) -> None: ...


@dataclass
class _SubState:
    acked: int  # highest seq the subscriber has acknowledged (flow control)


@dataclass
class _Mark:
    seq: int
    cum_after: int  # output bytes emitted up to and including this chunk
    length: int


@dataclass
class EntryInfo:
    argv: list[str]
    cwd: str
    tty: bool
    title: str | None = None
    size: tuple[int, int] = (24, 80)  # a PTY's size at start (rows, cols)
    started_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    )


class ManagedProcess:
    """A process of the table. Lives on the table's loop; not thread-safe by design."""

    def __init__(
        self,
        table: ProcessTable,
        process_id: str,
        backend: ProcessBackend,
        info: EntryInfo,
    ) -> None:
        self.table = table
        self.process_id = process_id
        self.backend = backend
        self.info = info
        self.loop = table.loop
        self.next_seq = 1
        self.events: deque[Event] = deque()
        self.retained_bytes = 0
        self.first_retained_seq = 1
        self.exited = False
        self.exit_code: int | None = None
        self.signal: str | None = None
        self.closed = False
        self.failure: str | None = None
        #: Per-entry retention cap (e.g. %exec keeps more); None: the table's.
        self.retained_cap: int | None = None
        self.open_streams = set(backend.streams)
        self.subscribers: dict[Subscriber, _SubState] = {}
        self.write_ids: dict[str, None] = {}
        self._waiters: list[asyncio.Future[None]] = []
        # coalescing
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._pending_stream: str | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._expedite = False
        # flow control
        self._emitted_bytes = 0
        self._marks: deque[_Mark] = deque()
        self._paused = False
        self._removal: asyncio.TimerHandle | None = None
        # screen model (PTY entries whose backend keeps none itself)
        self.pty_size = info.size
        self.screen: ScreenFeeder | None = None
        if info.tty and not backend.keeps_screen:
            self.screen = table.new_screen(*info.size)

    # ------------------------------------------------------------------ sink
    def on_output(self, stream: str, data: bytes) -> None:
        cap = self.table.coalesce_max_bytes
        if self._pending_stream is not None and stream != self._pending_stream:
            self._flush()
        self._pending_stream = stream
        while data:
            room = cap - self._pending_len
            piece, data = data[:room], data[room:]
            self._pending.append(piece)
            self._pending_len += len(piece)
            if self._pending_len >= cap:
                self._flush()
                self._pending_stream = stream
        if self._pending and self._flush_handle is None:
            # The first output after a write answers it (an echoed keystroke, however
            # fast the typing): it goes out at once, one such flush per write. Other
            # output goes out at once when the last chunk left a window ago, else when
            # the window ends or the chunk is full: a flood makes few large messages.
            due = self._last_flush + self.table.coalesce_window
            if self._expedite or self.loop.time() >= due:
                self._expedite = False
                self._flush()
            else:
                self._flush_handle = self.loop.call_at(due, self._flush)

    # ------------------------------------------------------------------ control
    # Every action on a process goes through these, so the rules (closed entries take
    # no signal, a write is remembered for echo timing and deduplicated by writeId)
    # live here once, whoever acts: a protocol handler, a magic, the table.
    def write(self, data: bytes, write_id: str | None = None) -> str:
        """Queue input; the ``WriteStatus``: ``accepted`` or ``stdinClosed``.

        A repeated ``write_id`` is accepted again without writing twice. The first
        output after a write (its echo) is never held back by coalescing."""
        self.table.owner.check()
        if write_id is not None and not self.remember_write(write_id):
            return "accepted"
        queued = self.backend.queued_input_bytes
        if queued + len(data) > self.table.max_stdin_queue_bytes:
            raise ProtocolError(
                LIMIT_REACHED,
                f"{queued} bytes of input are still queued for {self.process_id!r}; "
                f"{len(data)} more would pass the limit of {self.table.max_stdin_queue_bytes}",
                {"queuedBytes": queued, "limit": self.table.max_stdin_queue_bytes},
            )
        self._expedite = True
        return "accepted" if self.backend.write(data) else "stdinClosed"

    def close_stdin(self) -> str:
        """End the input after what is queued: ``accepted`` or ``stdinClosed``."""
        self.table.owner.check()
        return "accepted" if self.backend.close_stdin() else "stdinClosed"

    def resize(self, rows: int, cols: int) -> None:
        """Set the terminal size; a pipe process has none (``-32602``)."""
        self.table.owner.check()
        if not self.info.tty:
            raise invalid_params(f"process {self.process_id!r} has no terminal to resize")
        if not self.closed:
            # Output read before the resize was drawn at the old size: it takes its
            # seq first, so the screen model resizes at the right point.
            self._flush()
            self.backend.resize(rows, cols)
            self.pty_size = (rows, cols)
            if self.screen is not None:
                self.screen.resize(rows, cols, self.next_seq - 1)

    async def snapshot(self, rows: int | None, cols: int | None) -> dict[str, Any]:
        """``process/snapshot``: bytes that redraw the screen on a fresh terminal and the
        seq they reflect; the output after that seq continues it exactly."""
        self.table.owner.check()
        if not self.info.tty:
            raise invalid_params(f"process {self.process_id!r} is not a tty")
        if self.backend.keeps_screen:
            snap, seq = await self.backend.snapshot(rows, cols)
        elif self.screen is None:
            raise invalid_params(f"process {self.process_id!r} has no screen model (it is off)")
        else:
            rows = rows or self.pty_size[0]
            cols = cols or self.pty_size[1]
            seq, chunk = await self.screen.snapshot(self.cut(), rows, cols)
            model = self.screen.model
            snap = ScreenSnapshot(chunk, rows, cols, model.alt_mode is not None, model.title)
        return {
            "processId": self.process_id,
            "seq": seq,
            "rows": snap.rows,
            "cols": snap.cols,
            "chunk": snap.chunk,
            "alternateScreen": snap.alternate_screen,
            "title": snap.title,
            "exited": self.exited,
            "closed": self.closed,
        }

    def cut(self) -> int:
        """Give the output gathered so far its seq now; the last seq taken."""
        self._flush()
        return self.next_seq - 1

    def send_signal(self, signum: int) -> None:
        """Signal the whole process group; a closed entry has none left to signal.

        (Not ``signal``: that attribute is the name of the signal that ended it.)"""
        self.table.owner.check()
        if not self.closed:
            self.backend.signal(signum)

    def terminate(self, grace: float) -> bool:
        """Ask it to end, SIGKILL after ``grace`` s; True when it was still running."""
        self.table.owner.check()
        if self.closed:
            return False
        return self.backend.terminate(grace) and not self.exited

    def kill_now(self) -> None:
        """End it at once, without grace (the owner is going away)."""
        self.backend.kill()

    def on_stream_eof(self, stream: str) -> None:
        self._flush()
        self.open_streams.discard(stream)
        self._maybe_close()

    def on_exit(self, exit_code: int, signal_name: str | None) -> None:
        self._flush()
        self.exited = True
        self.exit_code = exit_code
        self.signal = signal_name
        self._append(Event(self._take_seq(), "exited", exit_code=exit_code, signal=signal_name))
        self._maybe_close()

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        stream = self._pending_stream or "stdout"
        self._pending = []
        self._pending_len = 0
        self._pending_stream = None
        self._last_flush = self.loop.time()
        seq = self._take_seq()
        self._emitted_bytes += len(data)
        if self.screen is not None:
            self.screen.push(data, seq)
        if self._flow_subscribers():
            self._marks.append(_Mark(seq, self._emitted_bytes, len(data)))
        self._append(Event(seq, "output", stream=stream, data=data))
        self._update_pause()

    def _maybe_close(self) -> None:
        if self.closed or not self.exited or self.open_streams:
            return
        self.closed = True
        self._append(Event(self._take_seq(), "closed"))
        self._resume_if_paused()
        self.backend.close()
        self._removal = self.loop.call_later(self.table.retention_seconds, self._expire)
        self.table.entry_closed(self)

    def _expire(self) -> None:
        self.table.remove(self)

    # ------------------------------------------------------------------ log
    def _take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def _append(self, event: Event) -> None:
        self.events.append(event)
        self.retained_bytes += len(event.data)
        cap = self.retained_cap or self.table.retained_bytes
        # Evict the oldest events whole, always keeping the newest one.
        while self.retained_bytes > cap and len(self.events) > 1:
            old = self.events.popleft()
            self.retained_bytes -= len(old.data)
            self.first_retained_seq = self.events[0].seq
        for sub in list(self.subscribers):
            sub.deliver(self.process_id, event)
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def evict_output(self) -> int:
        """Give up every retained output chunk (oldest first, like retention: the deque
        stays consecutive); returns the bytes freed. The table calls this on closed
        entries when their total passes ``closed_retained_bytes``."""
        last_output = max(
            (i for i, e in enumerate(self.events) if e.kind == "output"), default=-1
        )
        freed = 0
        for _ in range(last_output + 1):
            freed += len(self.events.popleft().data)
        if self.events:
            self.first_retained_seq = self.events[0].seq
        self.retained_bytes -= freed
        return freed

    def events_after(self, after_seq: int) -> Iterator[Event]:
        if not self.events or self.events[-1].seq <= after_seq:
            return iter(())
        start = max(0, after_seq + 1 - self.events[0].seq)
        # seqs in the deque are consecutive: index arithmetic, no scan
        return (self.events[i] for i in range(start, len(self.events)))

    def wait_event(self) -> asyncio.Future[None]:
        """A future resolved by the next event. A caller that stops waiting before it
        comes removes it with :meth:`forget_waiter` (else polls would pile them up)."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self._waiters.append(fut)
        return fut

    def forget_waiter(self, fut: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(fut)
        except ValueError:
            pass  # already resolved and dropped

    async def read_wait(
        self, after_seq: int, max_bytes: int | None, wait: float
    ) -> dict[str, Any]:
        """:meth:`read`, waiting up to ``wait`` seconds for something to return."""
        deadline = self.loop.time() + wait
        while True:
            result = self.read(after_seq, max_bytes)
            remaining = deadline - self.loop.time()
            if self.readable(after_seq) or remaining <= 0:
                return result
            fut = self.wait_event()
            try:
                await asyncio.wait_for(fut, remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                self.forget_waiter(fut)

    # ------------------------------------------------------------------ subscribers
    def subscribe(self, sub: Subscriber, after_seq: int) -> None:
        """Replay retained events after ``after_seq``, then stream live ones."""
        self.table.owner.check()
        self.subscribers.pop(sub, None)
        for event in list(self.events_after(after_seq)):
            sub.deliver(self.process_id, event)
        if sub.flow_control and not self._marks and self._flow_subscribers() == []:
            self._rebuild_marks()
        self.subscribers[sub] = _SubState(acked=after_seq)
        self._prune_marks()
        self._update_pause()

    def unsubscribe(self, sub: Subscriber) -> None:
        self.table.owner.check()
        if self.subscribers.pop(sub, None) is not None:
            self._prune_marks()
            self._update_pause()

    def ack(self, sub: Subscriber, seq: int) -> None:
        self.table.owner.check()
        state = self.subscribers.get(sub)
        if state is None or seq <= state.acked:
            return
        state.acked = min(seq, self.next_seq - 1)
        self._prune_marks()
        self._update_pause()

    def _flow_subscribers(self) -> list[_SubState]:
        return [s for sub, s in self.subscribers.items() if sub.flow_control]

    def _rebuild_marks(self) -> None:
        """Marks for the retained output, so a new flow-controlled subscriber counts it."""
        cum = self._emitted_bytes - sum(len(e.data) for e in self.events)
        for e in self.events:
            if e.kind == "output":
                cum += len(e.data)
                self._marks.append(_Mark(e.seq, cum, len(e.data)))

    def _prune_marks(self) -> None:
        flows = self._flow_subscribers()
        if not flows:
            self._marks.clear()
            return
        low = min(s.acked for s in flows)
        while self._marks and self._marks[0].seq <= low:
            self._marks.popleft()

    def unacked_bytes(self) -> int:
        """Bytes emitted past the lowest acknowledgement of the flow-controlled subscribers."""
        if not self._marks:
            return 0
        first = self._marks[0]
        return self._emitted_bytes - (first.cum_after - first.length)

    def _update_pause(self) -> None:
        over = self.unacked_bytes() > self.table.flow_control_window
        congested = any(sub.congested for sub in self.subscribers)
        if (over or congested) and not self.closed:
            if not self._paused:
                self._paused = True
                self.backend.pause_reading()
        else:
            self._resume_if_paused()

    def _resume_if_paused(self) -> None:
        if self._paused:
            self._paused = False
            self.backend.resume_reading()

    def recheck_flow(self) -> None:
        """Called when a subscriber's congestion changes."""
        self._update_pause()

    # ------------------------------------------------------------------ views
    def read(self, after_seq: int, max_bytes: int | None) -> dict[str, Any]:
        self.table.owner.check()
        chunks: list[Event] = []
        total = 0
        for event in self.events_after(after_seq):
            if event.kind != "output":
                continue
            if chunks and max_bytes is not None and total + len(event.data) > max_bytes:
                break
            chunks.append(event)
            total += len(event.data)
            if max_bytes is not None and total >= max_bytes:
                break
        next_seq = chunks[-1].seq + 1 if chunks else self.next_seq
        return {
            "chunks": chunks,
            "nextSeq": next_seq,
            "exited": self.exited,
            "exitCode": self.exit_code,
            "closed": self.closed,
            "failure": self.failure,
            "firstRetainedSeq": self.first_retained_seq,
        }

    def readable(self, after_seq: int) -> bool:
        """Whether a read after ``after_seq`` has something to return without waiting:
        output, the close, or the exit."""
        if self.closed:
            return True
        if not self.has_event_after(after_seq):
            return False
        return self.exited or any(e.kind == "output" for e in self.events_after(after_seq))

    @property
    def pid(self) -> int:
        return self.backend.pid

    def has_event_after(self, after_seq: int) -> bool:
        return self.next_seq - 1 > after_seq

    def describe(self) -> dict[str, Any]:
        return {
            "processId": self.process_id,
            "pid": self.pid,
            "argv": self.info.argv,
            "cwd": self.info.cwd,
            "tty": self.info.tty,
            "title": self.info.title,
            "startedAt": self.info.started_at,
            "exited": self.exited,
            "exitCode": self.exit_code,
            "signal": self.signal,
            "closed": self.closed,
            "nextSeq": self.next_seq,
        }

    def remember_write(self, write_id: str) -> bool:
        """True when ``write_id`` is new. Keeps the newest ids only, bounded."""
        if write_id in self.write_ids:
            return False
        self.write_ids[write_id] = None
        if len(self.write_ids) > self.table.write_id_memory:
            self.write_ids.pop(next(iter(self.write_ids)))
        return True

    def cancel_removal(self) -> None:
        if self._removal is not None:
            self._removal.cancel()
            self._removal = None
