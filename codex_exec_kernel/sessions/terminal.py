"""``codex-exec session attach`` in a real terminal: raw mode, resize, detach keys.

Your terminal talks straight to the session's PTY, like ``tmux attach``: it starts
from the session's screen (the supervisor's snapshot, see screenstart.py), keystrokes
go in unchanged, output comes out unchanged, SIGWINCH resizes the session's PTY,
and a detach key (default ``Ctrl-\\`` or ``Ctrl-b d``) leaves it running. For a pipe
(non-tty) session the terminal stays in line mode: lines go to the child's stdin,
Ctrl-C interrupts the child and Ctrl-\\ (SIGQUIT) detaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Sequence

from . import wire
from .api import SessionManager
from .client import AttachClient
from .screenstart import FRESH_TERMINAL, SnapshotGate, TerminalModes


def parse_keys(spec: str) -> bytes:
    """tmux-like notation → bytes: ``"C-b d"`` is Ctrl-b then d; ``"C-\\\\"`` is 0x1c."""
    out = bytearray()
    for token in spec.split():
        if len(token) == 3 and token[:2] in ("C-", "c-", "^"):
            out.append(ord(token[2].upper()) ^ 0x40)
        elif len(token) == 2 and token[0] == "^":
            out.append(ord(token[1].upper()) ^ 0x40)
        elif len(token) == 1:
            out += token.encode()
        else:
            raise ValueError(f"cannot read key {token!r} in detach key {spec!r}")
    return bytes(out)


class DetachMatcher:
    """Finds a detach sequence in typed input, holding back a partial one until it resolves."""

    def __init__(self, sequences: Sequence[bytes]) -> None:
        self.sequences = [s for s in sequences if s]
        self.pending = b""

    def _is_prefix(self, data: bytes) -> bool:
        return any(s.startswith(data) for s in self.sequences)

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """``(bytes to forward, detach?)``; after a detach the rest of ``data`` is dropped."""
        out = bytearray()
        for byte in data:
            self.pending += bytes([byte])
            if self.pending in self.sequences:
                self.pending = b""
                return bytes(out), True
            if self._is_prefix(self.pending):
                continue
            out += self.pending[:-1]
            self.pending = self.pending[-1:]
            if not self._is_prefix(self.pending):
                out += self.pending
                self.pending = b""
        return bytes(out), False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            import select

            select.select([], [fd], [], 1.0)


def _terminal_size(fd: int) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


def _forward_file(fd: int, matcher: DetachMatcher, client: AttachClient) -> None:
    """Forward a non-pollable stdin (a file, /dev/null) up to its end or a detach key."""
    while data := os.read(fd, 65536):
        forward, wants_detach = matcher.feed(data)
        if forward:
            client.write(forward)
        if wants_detach:
            return


async def attach_terminal(
    manager: SessionManager,
    session_id: str,
    from_offset: int | None = None,
    detach_keys: Sequence[str] | None = None,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
) -> int:
    """Attach this process's terminal to a session until detach or exit.

    Returns 0 on detach, the session's exit code when it ends, 1 when it was lost.
    """
    keys = detach_keys if detach_keys is not None else manager.config.detach_keys
    matcher = DetachMatcher([parse_keys(k) for k in keys])
    client = await manager.attach(session_id, from_offset)
    loop = asyncio.get_running_loop()
    in_tty = os.isatty(stdin_fd)
    raw = in_tty and client.tty and client.live
    saved = termios.tcgetattr(stdin_fd) if in_tty else None
    detached = False

    def detach() -> None:
        nonlocal detached
        detached = True
        client.close()

    def on_stdin() -> None:
        try:
            data = os.read(stdin_fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # our input ended (a pipe): detach, after what we sent is flushed
            loop.remove_reader(stdin_fd)
            detach()
            return
        forward, wants_detach = matcher.feed(data)
        if forward:
            client.write(forward)
        if wants_detach:
            detach()

    def on_winch() -> None:
        size = _terminal_size(stdout_fd) or _terminal_size(stdin_fd)
        if size is not None:
            client.resize(*size)

    handlers: list[int] = []
    size = _terminal_size(stdout_fd) or _terminal_size(stdin_fd)
    if size is not None and 0 in size:
        size = None  # a terminal that has no size yet (0x0): the session's own
    # Start from the session's screen (before the resize below: the program then
    # redraws for our size), unless a replay from an offset was asked for.
    gate = SnapshotGate(client, *(size or (None, None))) if from_offset is None else None
    modes = TerminalModes()
    restore = raw and os.isatty(stdout_fd)
    try:
        if raw:
            tty.setraw(stdin_fd, termios.TCSANOW)
        if client.live:
            try:
                loop.add_reader(stdin_fd, on_stdin)
            except PermissionError:  # a regular file or /dev/null cannot be polled:
                _forward_file(stdin_fd, matcher, client)  # send it all, then detach
                detach()
            if client.tty:
                loop.add_signal_handler(signal.SIGWINCH, on_winch)
                handlers.append(signal.SIGWINCH)
                on_winch()
            elif in_tty:
                loop.add_signal_handler(signal.SIGQUIT, detach)
                loop.add_signal_handler(signal.SIGINT, lambda: client.signal(signal.SIGINT))
                handlers += [signal.SIGQUIT, signal.SIGINT]
        async for event in client.events():
            if gate is not None:  # a gate that asked no snapshot passes output as is
                data = gate.shown(event)
            else:
                data = event.data if isinstance(event, wire.Output) else None
            if data is None:
                continue
            if gate is not None and gate.snapshot is not None and event is gate.snapshot:
                modes.alternate = gate.snapshot.alternate_screen
                data = FRESH_TERMINAL + data
            else:
                modes.saw(data)
            _write_all(stdout_fd, data)
    finally:
        if restore:
            with contextlib.suppress(OSError):
                _write_all(stdout_fd, modes.restore())
        with contextlib.suppress(Exception):
            loop.remove_reader(stdin_fd)
        for signum in handlers:
            loop.remove_signal_handler(signum)
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        client.close()
    eol = "\r\n" if raw else "\n"
    if client.exit is not None:
        ended = client.exit
        how = f"signal {ended.signal}" if ended.signal else f"code {ended.exit_code}"
        sys.stderr.write(f"{eol}[session {client.session_id} exited with {how}]{eol}")
        return client.exit.exit_code
    if detached:
        sys.stderr.write(
            f"{eol}[detached from session {client.session_id}; it is still running. "
            f"Reattach with: codex-exec session attach {client.session_id}]{eol}"
        )
        return 0
    reason = client.lost_reason or f"session {client.session_id} was lost: its supervisor is gone"
    sys.stderr.write(f"{eol}[{reason}]{eol}")
    return 1
