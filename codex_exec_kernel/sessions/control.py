"""Acting on a running session through its supervisor, never through a pid read from disk.

The supervisor holds the child (it is its parent, reaping it through a pidfd), so
asking it over the attach socket to signal or end the child's process group cannot
hit a stranger's processes, whatever ``meta.json`` says. The socket is reached
through the checked session directory fd, and its peer must be our own uid
(``SO_PEERCRED``): a socket served by anyone else is refused. To wait for (or, if
it hangs, kill) the supervisor we hold its pid as a pidfd opened *before* it
answered us on that socket, so the pidfd is proven to be that process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal as _signal
import socket
import struct
import time
from dataclasses import dataclass

from . import wire
from .errors import SessionControlError
from .files import socket_address
from .store import SessionStore

#: Far beyond any log: the supervisor clamps it to the end, so it sends no old output.
_NO_REPLAY = 1 << 62


class SessionUnreachable(SessionControlError):
    """The running session's supervisor cannot be talked to; the message says why."""


@dataclass
class SupervisorLink:
    """A connection to a session's supervisor: the socket and the peer's proven pid."""

    sock: socket.socket
    pid: int
    welcome: wire.Welcome | None = None
    pidfd: int | None = None

    def close(self) -> None:
        self.sock.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the socket's peer (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return pid, uid, gid


def connect_socket(store: SessionStore, session_id: str, timeout: float | None) -> socket.socket:
    """A connected socket to the session's supervisor, checked to be served by our uid.

    Raises :class:`SessionUnreachable` saying what happened (socket deleted, nobody
    listening, served by another user).
    """
    shown = store.paths(session_id).sock
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        with store.open_session(session_id) as dir_fd:
            try:
                sock.connect(socket_address(dir_fd))
            except FileNotFoundError:
                raise SessionUnreachable(
                    f"session {session_id}: its attach socket {shown} is missing (deleted?)"
                ) from None
            except ConnectionRefusedError:
                raise SessionUnreachable(
                    f"session {session_id}: nobody listens on its attach socket {shown}"
                ) from None
            except OSError as exc:
                reason = "not a socket" if exc.errno == errno.ENOTSOCK else exc.strerror
                raise SessionUnreachable(
                    f"session {session_id}: cannot connect to its attach socket {shown}: {reason}"
                ) from None
        _pid, uid, _gid = peer_credentials(sock)
        if uid != os.geteuid():
            raise SessionUnreachable(
                f"session {session_id}: its attach socket is served by uid {uid}, not by you "
                f"(uid {os.geteuid()}); refusing it"
            )
    except BaseException:
        sock.close()
        raise
    return sock


def _read_frames(sock: socket.socket, decoder: wire.FrameDecoder) -> list[wire.Message] | None:
    """The next messages (None at EOF)."""
    data = sock.recv(65536)
    if not data:
        return None
    return decoder.feed(data)


def open_link(store: SessionStore, session_id: str, timeout: float = 5.0) -> SupervisorLink:
    """Connect, hold the supervisor as a pidfd, and wait for its Welcome (which proves it)."""
    sock = connect_socket(store, session_id, timeout)
    pid, _uid, _gid = peer_credentials(sock)
    link = SupervisorLink(sock, pid)
    try:
        with contextlib.suppress(ProcessLookupError, OSError):
            link.pidfd = os.pidfd_open(pid)
        sock.sendall(wire.Hello(_NO_REPLAY).encode())
        decoder = wire.FrameDecoder()
        while link.welcome is None:
            try:
                messages = _read_frames(sock, decoder)
            except (OSError, wire.WireError) as exc:
                raise SessionUnreachable(f"session {session_id}: its supervisor: {exc}") from None
            if messages is None:
                raise SessionUnreachable(
                    f"session {session_id}: its supervisor closed the connection"
                )
            for msg in messages:
                if isinstance(msg, wire.Error):
                    raise SessionUnreachable(
                        f"session {session_id}: its supervisor refused: {msg.message}"
                    )
                if isinstance(msg, wire.Welcome):
                    link.welcome = msg
    except BaseException:
        link.close()
        raise
    return link


def _finish(link: SupervisorLink, deadline: float) -> None:
    """Half-close and read until the supervisor closes: it has applied what we sent."""
    with contextlib.suppress(OSError):
        link.sock.shutdown(socket.SHUT_WR)
    while (remaining := deadline - time.monotonic()) > 0:
        link.sock.settimeout(remaining)
        try:
            if not link.sock.recv(65536):
                return
        except (TimeoutError, OSError):
            return


def signal_session(store: SessionStore, session_id: str, signum: int, timeout: float = 5.0) -> None:
    """Ask the supervisor to send ``signum`` to the child's process group."""
    link = open_link(store, session_id, timeout)
    try:
        link.sock.sendall(wire.Signal(signum).encode())
        _finish(link, time.monotonic() + timeout)
    finally:
        link.close()


def stop_session(store: SessionStore, session_id: str, grace: float, timeout: float = 5.0) -> bool:
    """Ask the supervisor to end the child's group (grace, then SIGKILL) and to exit.

    Waits for the supervisor to exit; if it hangs past ``grace + timeout`` it is
    killed through its pidfd. Returns True when the supervisor is gone.
    """
    link = open_link(store, session_id, timeout)
    try:
        link.sock.sendall(wire.Terminate(grace).encode())
        deadline = time.monotonic() + grace + timeout
        if link.pidfd is None:
            _finish(link, deadline)
            return False
        if wait_pidfd(link.pidfd, deadline):
            return True
        with contextlib.suppress(ProcessLookupError, OSError):
            _signal.pidfd_send_signal(link.pidfd, _signal.SIGKILL)
        return wait_pidfd(link.pidfd, time.monotonic() + 2.0)
    finally:
        link.close()


def wait_pidfd(pidfd: int, deadline: float) -> bool:
    """Wait until the process behind ``pidfd`` has exited (the pidfd becomes readable)."""
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([pidfd], [], [], remaining)
        if ready:
            return True
    return False
