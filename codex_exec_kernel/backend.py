"""What a process-table entry runs on: a local child's fds, or something else.

The table (seq numbers, retention, coalescing, flow control, subscribers) does not
care where bytes come from. A :class:`ProcessBackend` produces output and an exit
into an :class:`OutputSink` and carries writes, resizes and signals the other way.
:class:`LocalBackend` is a child started by :mod:`.spawn`, read with
``loop.add_reader`` (no thread per process) and reaped through a pidfd; the
background sessions provide another backend that talks to a session's supervisor.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from .pgroup import TERMINATE_SIGNALS, group_alive, signal_group
from .spawn import SpawnedChild, decode_wait_status, set_winsize

READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class ScreenSnapshot:
    """A redraw of a screen (``process/snapshot``'s payload, without the seq)."""

    chunk: bytes
    rows: int
    cols: int
    alternate_screen: bool
    title: str


class OutputSink(Protocol):
    """Receives what a backend produces, on the table's event loop."""

    def on_output(self, stream: str, data: bytes) -> None: ...

    def on_stream_eof(self, stream: str) -> None: ...

    def on_exit(self, exit_code: int, signal_name: str | None) -> None: ...


class ProcessBackend(ABC):
    """One running thing behind a table entry. All methods run on the table's loop."""

    pid: int
    tty: bool
    #: The output streams this backend will end, each with ``on_stream_eof``.
    streams: tuple[str, ...]

    @abstractmethod
    def start(self, sink: OutputSink) -> None:
        """Begin delivering output and the exit to ``sink``."""

    @abstractmethod
    def pause_reading(self) -> None:
        """Stop taking output (flow control): the producer then blocks, nothing is dropped."""

    @abstractmethod
    def resume_reading(self) -> None: ...

    @abstractmethod
    def write(self, data: bytes) -> bool:
        """Queue bytes for the child's input, in order. False when input is closed."""

    @abstractmethod
    def close_stdin(self) -> bool:
        """End the child's input after what is queued. False when it was already closed."""

    @property
    @abstractmethod
    def stdin_open(self) -> bool: ...

    #: True when the backend keeps the screen model itself (a background session's
    #: supervisor): the entry then keeps none and asks :meth:`snapshot`.
    keeps_screen: bool = False

    async def snapshot(self, rows: int | None, cols: int | None) -> tuple[ScreenSnapshot, int]:
        """The screen as the backend's own model has it and the entry's seq it reflects
        (only if ``keeps_screen``; None sizes: the process's own)."""
        raise NotImplementedError

    @property
    def queued_input_bytes(self) -> int:
        """Input accepted but not yet taken by the child (bounded by the table)."""
        return 0

    @abstractmethod
    def resize(self, rows: int, cols: int) -> None: ...

    @abstractmethod
    def signal(self, signum: int) -> None:
        """Signal the child's whole process group."""

    @abstractmethod
    def terminate(self, grace: float) -> bool:
        """Ask it to end, forcibly after ``grace`` seconds. True when it was running."""

    @abstractmethod
    def kill(self) -> None:
        """End it now, without grace: the table's owner is going away."""

    @abstractmethod
    def close(self) -> None:
        """Release every resource; called once the entry is closed or the table shuts down."""


class LocalBackend(ProcessBackend):
    """A child of ours: PTY master or pipes on the loop, exit seen through a pidfd."""

    def __init__(self, child: SpawnedChild, tty: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.child = child
        self.pid = child.pid
        self.tty = tty
        self.loop = loop
        self.streams = ("pty",) if tty else ("stdout", "stderr")
        self._sink: OutputSink | None = None
        self._readers: dict[int, str] = {}
        self._paused = False
        self._exited = False
        self._pidfd: int | None = None
        self._poll_handle: asyncio.TimerHandle | None = None
        self._kill_handle: asyncio.TimerHandle | None = None
        self._pending: deque[bytes] = deque()  # input not yet taken by the child
        self._pending_bytes = 0
        self._writing = False
        self._stdin_open = tty or child.stdin_fd is not None
        self._eof_after_pending = False

    # -- output
    def start(self, sink: OutputSink) -> None:
        self._sink = sink
        fds = (
            {self.child.pty_fd: "pty"}
            if self.tty
            else {self.child.stdout_fd: "stdout", self.child.stderr_fd: "stderr"}
        )
        self._readers = {fd: name for fd, name in fds.items() if fd is not None}
        for fd in self._readers:
            self.loop.add_reader(fd, self._on_readable, fd)
        try:
            self._pidfd = os.pidfd_open(self.pid)
            self.loop.add_reader(self._pidfd, self._reap)
        except (AttributeError, OSError):  # pragma: no cover - kernels before 5.3
            self._poll_exit()

    def _on_readable(self, fd: int) -> None:
        """Drain what is there (a PTY read returns ~4 KiB): one loop turn, one sink call."""
        assert self._sink is not None
        pieces: list[bytes] = []
        total = 0
        eof = False
        while total < READ_SIZE:
            try:
                data = os.read(fd, READ_SIZE - total)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO: a Linux PTY master's end of stream
                    raise
                data = b""
            if not data:
                eof = True
                break
            pieces.append(data)
            total += len(data)
        if pieces:
            self._sink.on_output(
                self._readers[fd], pieces[0] if len(pieces) == 1 else b"".join(pieces)
            )
        if not eof or fd not in self._readers:
            return
        name = self._readers.pop(fd)
        self.loop.remove_reader(fd)
        if fd != self.child.pty_fd:  # a PTY master stays open for writes until close()
            os.close(fd)
        self._sink.on_stream_eof(name)

    def pause_reading(self) -> None:
        if not self._paused:
            self._paused = True
            for fd in self._readers:
                self.loop.remove_reader(fd)

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            for fd in self._readers:
                self.loop.add_reader(fd, self._on_readable, fd)

    # -- exit
    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # somebody else reaped it: report an unknown status
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return
        if self._pidfd is not None:
            self.loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self._exited = True
        if not self.tty and self.child.stdin_fd is not None and self._stdin_open:
            self._close_input()
        assert self._sink is not None
        self._sink.on_exit(*decode_wait_status(status))

    def _poll_exit(self) -> None:  # pragma: no cover - fallback without pidfd
        self._reap()
        if not self._exited:
            self._poll_handle = self.loop.call_later(0.05, self._poll_exit)

    # -- input
    @property
    def stdin_open(self) -> bool:
        return self._stdin_open and not self._exited

    def _input_fd(self) -> int | None:
        return self.child.pty_fd if self.tty else self.child.stdin_fd

    def write(self, data: bytes) -> bool:
        if not self.stdin_open or self._eof_after_pending:
            return False
        if data:
            self._pending.append(data)
            self._pending_bytes += len(data)
            self._flush_input()
        return True

    @property
    def queued_input_bytes(self) -> int:
        return self._pending_bytes

    def close_stdin(self) -> bool:
        if not self.stdin_open or self._eof_after_pending:
            return False
        if self.tty:
            # The terminal's EOF character (VEOF, normally ^D), as a user would type it.
            eof = termios_veof(self.child.pty_fd)
            self._pending.append(eof)
            self._pending_bytes += len(eof)
            self._flush_input()
            return True
        self._eof_after_pending = True
        self._flush_input()
        return True

    def _flush_input(self) -> None:
        fd = self._input_fd()
        while self._pending and fd is not None:
            data = self._pending[0]
            try:
                n = os.write(fd, data)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.EIO, errno.EBADF):
                    self._pending.clear()
                    self._pending_bytes = 0
                    self._close_input()
                    return
                raise
            self._pending_bytes -= n
            if n < len(data):
                self._pending[0] = data[n:]
            else:
                self._pending.popleft()
        if self._pending and fd is not None:
            if not self._writing:
                self._writing = True
                self.loop.add_writer(fd, self._on_writable)
            return
        if self._writing and fd is not None:
            self._writing = False
            self.loop.remove_writer(fd)
        if self._eof_after_pending:
            self._close_input()

    def _on_writable(self) -> None:
        self._flush_input()

    def _close_input(self) -> None:
        self._stdin_open = False
        if not self.tty and self.child.stdin_fd is not None:
            if self._writing:
                self.loop.remove_writer(self.child.stdin_fd)
                self._writing = False
            os.close(self.child.stdin_fd)
            self.child.stdin_fd = None

    # -- control
    def resize(self, rows: int, cols: int) -> None:
        if self.child.pty_fd is not None:
            set_winsize(self.child.pty_fd, rows, cols)

    def signal(self, signum: int) -> None:
        signal_group(self.pid, signum)

    def terminate(self, grace: float) -> bool:
        running = not self._exited
        for signum in TERMINATE_SIGNALS:
            signal_group(self.pid, signum)
        if self._kill_handle is None:
            self._kill_handle = self.loop.call_later(grace, self._kill_if_left)
        return running

    def _kill_if_left(self) -> None:
        self._kill_handle = None
        if group_alive(self.pid):
            signal_group(self.pid, signal.SIGKILL)

    def kill(self) -> None:
        signal_group(self.pid, signal.SIGKILL)

    def close(self) -> None:
        for fd in list(self._readers):
            self.loop.remove_reader(fd)
            if fd != self.child.pty_fd:
                os.close(fd)
        self._readers.clear()
        input_fd = self._input_fd()
        if self._writing and input_fd is not None:
            self.loop.remove_writer(input_fd)
        if self._pidfd is not None:
            self.loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._poll_handle is not None:
            self._poll_handle.cancel()
        for attr in ("pty_fd", "stdin_fd"):
            fd = getattr(self.child, attr)
            if fd is not None:
                os.close(fd)
                setattr(self.child, attr, None)


def termios_veof(fd: int | None) -> bytes:
    import termios

    if fd is None:
        return b"\x04"
    try:
        cc = termios.tcgetattr(fd)[6]
        eof = cc[termios.VEOF]
        return eof if isinstance(eof, bytes) else bytes([eof])
    except termios.error:
        return b"\x04"
