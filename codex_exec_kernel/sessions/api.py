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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from ..protocol import EnvPolicy
from ..spawn import signal_group
from .client import AttachClient
from .config import SessionConfig
from .launch import create_session
from .store import (
    SessionInfo,
    SessionMeta,
    SessionNotFound,
    SessionStore,
    group_alive,
    lock_held,
    process_start_ticks,
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
        argv: Sequence[str],
        *,
        session_id: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        env_policy: EnvPolicy | None = None,
        tty: bool = False,
        size: tuple[int, int] = (24, 80),
        arg0: str | None = None,
        base_env: Mapping[str, str] | None = None,
        display: str | None = None,
    ) -> SessionInfo:
        """Start ``argv`` as a background session; returns once the child runs.

        ``env``/``env_policy`` follow ``process/start``'s rules against this process's
        environment (or ``base_env``). Raises InvalidSessionId, SessionExists or LaunchError.
        """
        meta = create_session(
            self.store, self.config, argv, session_id=session_id, cwd=cwd, env=env,
            env_policy=env_policy, tty=tty, size=size, arg0=arg0, base_env=base_env,
            display=display,
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
        """Signal the session's process group; False when it is not running."""
        info = self.store.get(session_id)
        if info.status != "running" or info.meta.pid is None:
            return False
        return signal_group(info.meta.pid, signum)

    def delete(self, session_id: str, grace: float | None = None) -> None:
        """End the session's process group (grace, then SIGKILL) and remove its directory.

        Works for running, exited and lost sessions; what is left of the group of an
        ended one (a grandchild) is ended too, once we are sure it is still ours.
        """
        grace = self.config.delete_grace if grace is None else grace
        info = self.store.get(session_id)
        meta = info.meta
        paths = self.store.paths(session_id)
        if meta.pid is not None and _group_is_ours(meta, info.status):
            _end_group(meta.pid, grace)
        if info.status == "running" and meta.supervisor_pid is not None:
            self._stop_supervisor(meta.supervisor_pid, paths.lock, grace)
        self.store.remove(session_id)

    @staticmethod
    def _stop_supervisor(pid: int, lock: str, grace: float) -> None:
        """Wait for a running session's supervisor to exit (it does once the child is
        gone); nudge it with SIGTERM and force it with SIGKILL if it hangs. The pid is
        the supervisor's: the session was running, so its lock was held."""
        if lock_held(lock):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, _signal.SIGTERM)
            deadline = time.monotonic() + grace + 3.0
            while lock_held(lock) and time.monotonic() < deadline:
                time.sleep(0.01)
            if lock_held(lock):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, _signal.SIGKILL)
        # The lock goes first on its way out; let the process finish exiting too.
        deadline = time.monotonic() + 2.0
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.005)

    # -- attach
    async def attach(self, session_id: str, from_offset: int | None = None) -> AttachClient:
        """An :class:`AttachClient` on the session (live, or a replay once it has ended)."""
        validate_id(session_id)
        return await AttachClient.open(
            self.store, session_id, from_offset, default_tail=self.config.attach_tail_bytes
        )


def _group_is_ours(meta: SessionMeta, status: str) -> bool:
    """Whether process group ``meta.pid`` is still the session's, despite pid reuse.

    While the supervisor lives (running) it is. Otherwise: a pid that is some group's
    id cannot be handed to a new process, so if nobody has that pid the group is the
    original one's remains; if somebody has it, its start time must be the child's.
    """
    assert meta.pid is not None
    if not group_alive(meta.pid):
        return False
    if status == "running":
        return True
    ticks = process_start_ticks(meta.pid)
    if ticks is None:
        return not os.path.exists(f"/proc/{meta.pid}")
    return meta.start_ticks is not None and ticks == meta.start_ticks


def _running(pid: int) -> bool:
    """A live process that is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _end_group(pgid: int, grace: float) -> None:
    for signum in (_signal.SIGHUP, _signal.SIGTERM, _signal.SIGCONT):
        signal_group(pgid, signum)
    deadline = time.monotonic() + grace
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if group_alive(pgid):
        signal_group(pgid, _signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.01)


__all__ = ["LogChunk", "SessionManager", "SessionNotFound"]
