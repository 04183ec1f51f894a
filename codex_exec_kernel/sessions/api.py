"""The Python API of background sessions: what the CLI, the protocol methods and magics call.

Synchronous functions (create, list, resolve, logs, signal, delete) plus
:meth:`SessionManager.attach`, which returns an asyncio :class:`AttachClient`.
A manager holds no state beyond its configuration: every call reads the store, so
several processes (kernels, shells) can manage the same sessions at once.
"""

from __future__ import annotations

import contextlib
import os
import signal as _signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ..pgroup import end_group, group_alive
from ..protocol import SpawnSpec
from .client import AttachClient
from .config import SessionConfig
from .control import SessionUnreachable, signal_session, stop_session, wait_pidfd
from .errors import SessionControlError, SessionError
from .launch import create_session
from .pidproof import group_remains_are_sessions, is_same_process
from .store import (
    SessionInfo,
    SessionMeta,
    SessionNotFound,
    SessionStore,
    validate_id,
)

FOLLOW_POLL = 0.05


@dataclass(frozen=True)
class LogChunk:
    """A slice of a session's log: ``data`` starts at ``offset``; ``size`` is the whole log."""

    data: bytes
    offset: int
    size: int

    @property
    def next_offset(self) -> int:
        return self.offset + len(self.data)


class SessionManager:
    """Create, list, read, signal, delete and attach to the sessions of one home."""

    def __init__(self, config: SessionConfig | None = None) -> None:
        self.config = config or SessionConfig()
        self.store = SessionStore(self.config.home)

    # -- create / inspect
    def create(
        self,
        spec: SpawnSpec,
        *,
        session_id: str | None = None,
        base_env: Mapping[str, str] | None = None,
        default_cwd: str | None = None,
        display: str | None = None,
    ) -> SessionInfo:
        """Start ``spec`` as a background session; returns once the child runs.

        The environment and cwd follow ``process/start``'s rules (``envpolicy.resolve``)
        against this process's environment (or ``base_env``) and cwd (or
        ``default_cwd``). Raises InvalidSessionId, SessionExists or LaunchError.
        """
        meta = create_session(
            self.store, self.config, spec, session_id=session_id, base_env=base_env,
            default_cwd=default_cwd, display=display,
        )  # fmt: skip
        return self.store.get(meta.id)

    def list(self) -> list[SessionInfo]:
        """Every session, newest first (``info.index`` 0 is the newest)."""
        return self.store.list()

    def get(self, session_id: str) -> SessionInfo:
        """The session with exactly this id (SessionNotFound otherwise)."""
        return self.store.get(session_id)

    def resolve(self, selector: str) -> SessionInfo:
        """An index, an exact id or a unique prefix → the session (clear errors otherwise)."""
        return self.store.resolve(selector)

    # -- logs
    def read_log(self, session_id: str, offset: int = 0, max_bytes: int = 1 << 20) -> LogChunk:
        self.store.get(session_id)
        data, start, size = self.store.read_log(session_id, offset, max_bytes)
        return LogChunk(data, start, size)

    def tail_offset(self, session_id: str, lines: int) -> int:
        """Where the last ``lines`` lines of the log begin."""
        self.store.get(session_id)
        return self.store.tail_offset(session_id, lines)

    def follow(
        self, session_id: str, offset: int = 0, *, poll: float = FOLLOW_POLL
    ) -> Iterator[LogChunk]:
        """Log chunks from ``offset`` on, as they are written, until the session is over."""
        self.store.get(session_id)
        while True:
            over = self.store.info(session_id) is None or self.status(session_id) != "running"
            while True:
                chunk = self.read_log_raw(session_id, offset)
                if not chunk.data:
                    break
                offset = chunk.next_offset
                yield chunk
            if over:
                return
            time.sleep(poll)

    def read_log_raw(self, session_id: str, offset: int, max_bytes: int = 1 << 20) -> LogChunk:
        data, start, size = self.store.read_log(session_id, offset, max_bytes)
        return LogChunk(data, start, size)

    def status(self, session_id: str) -> str:
        return self.store.get(session_id).status

    # -- control
    def signal(self, session_id: str, signum: int) -> bool:
        """Signal the session's process group through its supervisor; False when it is not
        running. The pid in meta.json is never used: the supervisor holds the child."""
        check_signal_number(signum)
        info = self.store.get(session_id)
        if info.status in ("exited", "lost") or not self.store.supervised(session_id):
            return False
        try:
            signal_session(self.store, session_id, signum)
        except SessionUnreachable:
            if self.store.get(session_id).status in ("exited", "lost"):
                return False  # it ended meanwhile (its supervisor is on its way out)
            raise
        return True

    def delete(self, session_id: str, grace: float | None = None) -> None:
        """End the session's process group (grace, then SIGKILL) and remove its directory.

        Works for running, exited, lost and corrupt sessions. A running one is ended by
        its own supervisor (asked over its socket); what is left of the group of an
        ended one (a grandchild) is ended too, once proven to still be the session's.
        """
        grace = self.config.delete_grace if grace is None else grace
        info = self.store.get(session_id)
        if self.store.supervised(session_id):
            try:
                stop_session(self.store, session_id, grace)
            except SessionUnreachable as exc:
                if not self._ends_by_itself(session_id):
                    self._stop_unreachable(info.meta, exc, grace)
        meta = self.store.read_meta(session_id) or info.meta
        pgid = meta.pid
        if info.status != "corrupt" and pgid is not None and group_alive(pgid) \
                and group_remains_are_sessions(pgid, meta.start_ticks):  # fmt: skip
            end_group(pgid, grace)
        self.store.remove(session_id)

    def _ends_by_itself(self, session_id: str, timeout: float = 3.0) -> bool:
        """An exited session's supervisor has removed its socket and is exiting: wait for
        its lock to go rather than signal anything."""
        if self.store.get(session_id).status != "exited":
            return False
        deadline = time.monotonic() + timeout
        while self.store.supervised(session_id) and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.store.supervised(session_id)

    def _stop_unreachable(self, meta: SessionMeta, why: SessionError, grace: float) -> None:
        """The supervisor holds the lock but its socket is gone: signal it only if its pid
        is proven by the start time recorded when it began."""
        pid = meta.supervisor_pid
        if pid is None or not is_same_process(pid, meta.supervisor_start_ticks):
            raise SessionControlError(
                f"{why}; and its supervisor's pid is not proven, so nothing was signalled "
                f"(find the process holding {self.store.paths(meta.id).lock} with fuser)"
            )
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return  # gone already
        try:
            if not is_same_process(pid, meta.supervisor_start_ticks):
                return  # it exited before we held it
            with contextlib.suppress(OSError):
                _signal.pidfd_send_signal(pidfd, _signal.SIGTERM)
            if not wait_pidfd(pidfd, time.monotonic() + grace + 3.0):
                with contextlib.suppress(OSError):
                    _signal.pidfd_send_signal(pidfd, _signal.SIGKILL)
                wait_pidfd(pidfd, time.monotonic() + 2.0)
        finally:
            os.close(pidfd)

    # -- attach
    async def attach(self, session_id: str, from_offset: int | None = None) -> AttachClient:
        """An :class:`AttachClient` on the session (live, or a replay once it has ended)."""
        validate_id(session_id)
        return await AttachClient.open(
            self.store, session_id, from_offset, default_tail=self.config.attach_tail_bytes
        )


def check_signal_number(signum: int) -> int:
    """A signal number we may send (1 .. NSIG-1), else ValueError saying the range."""
    if not 0 < signum < _signal.NSIG:
        raise ValueError(f"signal {signum} is out of range: use 1 to {_signal.NSIG - 1}")
    return signum


__all__ = ["LogChunk", "SessionManager", "SessionNotFound"]
