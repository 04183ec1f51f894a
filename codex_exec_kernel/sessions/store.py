"""The on-disk store of background sessions: ids, paths, meta.json, status, selectors, logs.

Every face (CLI, protocol methods, magics, the supervisor itself) goes through
this module, so there is exactly one idea of what a session directory holds:

    <home>/                      ours, not writable by group/others, not a symlink
      sessions/                  0700, same checks
        <id>/                    0700, same checks
            meta.json            0600  written atomically (O_EXCL tmp + fsync + rename)
            record               0600  4 KiB preallocated; exit + dropped output, in place
            output.log           0600  every output byte, appended as it comes
            lock                 0600  flock'ed (exclusive) by the live supervisor
            sock                 0600  the supervisor's attach socket

Every directory is opened with O_NOFOLLOW and checked on its fd (:mod:`.trust`);
every file is opened relative to that fd with O_NOFOLLOW. A session whose files
cannot be read or trusted is listed as ``corrupt`` with the reason and can be
deleted; it never breaks the others.

Liveness is the lock, not a pid: a pid check is fooled by pid reuse after a reboot
or a SIGKILL, while a flock vanishes with the process that held it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from ..protocol import SESSION_ID_PATTERN
from . import names
from .errors import (
    AmbiguousSelector,
    CorruptSession,
    InvalidSessionId,
    SessionError,
    SessionExists,
    SessionNotFound,
    UnsafeStore,
)
from .files import (
    LOCK,
    LOG,
    META,
    RECORD,
    SOCK,
    SUPERVISOR_LOG,
    lock_held,
    log_size_at,
    missing_at,
    read_record,
    remove_entry,
    tail_offset_at,
    write_json_at,
)
from .meta import (
    MAX_META_BYTES,
    ExitRecord,
    MetaError,
    SessionMeta,
    now_iso,
    parse_iso,
)
from .pidproof import process_start_ticks
from .trust import (
    closing_fd,
    describe_open_error,
    dir_problem,
    ensure_dir,
    ensure_home,
    open_dir,
    open_file,
)

__all__ = [
    "AmbiguousSelector", "CorruptSession", "ExitRecord", "InvalidSessionId", "SessionError",
    "SessionExists", "SessionInfo", "SessionMeta", "SessionNotFound", "SessionStore",
    "UnsafeStore", "lock_held", "now_iso", "parse_iso", "process_start_ticks",
    "validate_id",
]  # fmt: skip

ID_PATTERN = SESSION_ID_PATTERN
#: A session whose supervisor has not taken its lock yet counts as running this long.
STARTING_GRACE = 30.0
#: AF_UNIX paths longer than this are reached through /proc/self/fd (see socket_address).
_MAX_SUN_PATH = 100


def validate_id(value: Any) -> str:
    """The id itself, or :class:`InvalidSessionId` saying why not (no path can escape)."""
    if not isinstance(value, str):
        raise InvalidSessionId(f"session id must be a string, got {type(value).__name__}")
    if not ID_PATTERN.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidSessionId(
            f"invalid session id {shown!r}: use 1 to 64 characters from A-Z a-z 0-9 _ -"
        )
    return value


@dataclass(frozen=True)
class SessionInfo:
    """A session as listed: its meta, its live status and how much output it has logged.

    ``status`` is ``running``, ``exited``, ``lost`` or ``corrupt`` (then ``problem``
    says why, and ``meta`` is a placeholder holding only the id). ``dropped_bytes``
    counts output the supervisor could not log (full disk).
    """

    meta: SessionMeta
    status: str
    output_bytes: int
    index: int = field(default=-1, compare=False)
    problem: str | None = None
    dropped_bytes: int = 0
    dropped_reason: str | None = None

    @property
    def id(self) -> str:
        return self.meta.id

    @property
    def log_note(self) -> str | None:
        """``log truncated (disk full)`` when output was dropped, else None."""
        if not self.dropped_bytes:
            return None
        return f"log truncated ({self.dropped_reason or 'write failed'})"

    def to_json(self) -> dict[str, Any]:
        """The ``session/list`` entry (plus a few extra fields clients may ignore)."""
        m = self.meta
        return {
            "id": m.id, "pid": m.pid, "argv": m.argv, "tty": m.tty, "status": self.status,
            "exitCode": m.exit_code, "signal": m.signal, "createdAt": m.created_at,
            "endedAt": m.ended_at, "outputBytes": self.output_bytes, "cwd": m.cwd,
            "supervisorPid": m.supervisor_pid, "index": self.index, "problem": self.problem,
            "droppedBytes": self.dropped_bytes, "logNote": self.log_note, "display": m.display,
        }  # fmt: skip


@dataclass(frozen=True)
class SessionPaths:
    """The files of one session directory, as paths (for people and messages).

    The store itself opens them relative to a checked directory fd, never by path.
    """

    dir: str

    @property
    def meta(self) -> str:
        return os.path.join(self.dir, META)

    @property
    def record(self) -> str:
        return os.path.join(self.dir, RECORD)

    @property
    def log(self) -> str:
        return os.path.join(self.dir, LOG)

    @property
    def lock(self) -> str:
        return os.path.join(self.dir, LOCK)

    @property
    def sock(self) -> str:
        return os.path.join(self.dir, SOCK)

    @property
    def supervisor_log(self) -> str:
        return os.path.join(self.dir, SUPERVISOR_LOG)


def _iso_of(seconds: float) -> str:
    when = datetime.fromtimestamp(seconds, timezone.utc)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


class SessionStore:
    """One home's sessions directory. Stateless apart from its path: safe to make anywhere."""

    def __init__(self, home: str) -> None:
        self.home = os.path.abspath(home)
        self.root = os.path.join(self.home, "sessions")

    # -- layout
    def paths(self, session_id: str) -> SessionPaths:
        return SessionPaths(os.path.join(self.root, validate_id(session_id)))

    @contextlib.contextmanager
    def open_root(self, *, create: bool = False) -> Iterator[int | None]:
        """The checked fd of ``<home>/sessions``; None when there is no store yet.

        Refuses (:class:`UnsafeStore`, one line saying how to fix it) a home or
        sessions directory that is a symlink, not ours, or writable by others.
        """
        fd: int | None = None
        try:
            home_fd = ensure_home(self.home) if create else open_dir(self.home)
            with closing_fd(home_fd):
                opener = ensure_dir if create else open_dir
                fd = opener("sessions", dir_fd=home_fd, shown=self.root)
        except FileNotFoundError:
            fd = None
        except OSError as exc:
            raise UnsafeStore(
                f"cannot open the session store {self.root}: {exc.strerror or exc}"
            ) from None
        if fd is None:
            yield None
            return
        with closing_fd(fd):
            yield fd

    def ensure_root(self) -> None:
        """Create ``<home>/sessions`` (0700) if needed, and check it."""
        with self.open_root(create=True):
            pass

    def _open_session_at(self, root: int, session_id: str) -> int:
        """The checked fd of a session directory: SessionNotFound or CorruptSession."""
        shown = self.paths(session_id).dir
        try:
            st = os.stat(session_id, dir_fd=root, follow_symlinks=False)
        except FileNotFoundError:
            raise SessionNotFound(f"no session {session_id!r}") from None
        problem = dir_problem(st)
        if problem is not None:
            raise CorruptSession(session_id, f"its directory {problem}")
        try:
            return open_dir(session_id, dir_fd=root, shown=shown)
        except FileNotFoundError:
            raise SessionNotFound(f"no session {session_id!r}") from None
        except OSError as exc:  # UnsafeStore included: it changed under us
            raise CorruptSession(session_id, f"cannot open its directory: {exc}") from None

    def open_session_fd(self, session_id: str) -> int:
        """The checked fd of one session's directory (the caller closes it)."""
        validate_id(session_id)
        with self.open_root() as root:
            if root is None:
                raise SessionNotFound(f"no session {session_id!r}")
            return self._open_session_at(root, session_id)

    @contextlib.contextmanager
    def open_session(self, session_id: str) -> Iterator[int]:
        """The checked fd of one session's directory, for reading and writing its files."""
        with closing_fd(self.open_session_fd(session_id)) as fd:
            yield fd

    def exists(self, session_id: str) -> bool:
        return os.path.lexists(self.paths(session_id).dir)

    def reserve_at(self, root: int, session_id: str | None) -> str:
        """Take an id by creating its directory in the checked ``root`` (atomic)."""
        if session_id is not None:
            validate_id(session_id)
            try:
                os.mkdir(session_id, 0o700, dir_fd=root)
            except FileExistsError:
                raise SessionExists(f"session {session_id!r} already exists") from None
            return session_id
        while True:
            name = names.generate(self.exists)
            try:
                os.mkdir(name, 0o700, dir_fd=root)
            except FileExistsError:
                continue  # somebody took it between the check and the mkdir
            return name

    def reserve(self, session_id: str | None) -> str:
        """Take an id by creating its directory (atomic); generate one when None."""
        with self.open_root(create=True) as root:
            assert root is not None
            return self.reserve_at(root, session_id)

    def remove(self, session_id: str) -> None:
        """Remove a session's directory (or whatever non-directory sits at its name)."""
        validate_id(session_id)
        with self.open_root() as root:
            if root is not None:
                remove_entry(root, session_id, self.paths(session_id).dir)

    # -- meta
    def write_meta(self, meta: SessionMeta, dir_fd: int | None = None) -> None:
        if dir_fd is not None:
            write_json_at(dir_fd, META, meta.to_json())
            return
        with self.open_session(meta.id) as fd:
            write_json_at(fd, META, meta.to_json())

    def load_meta(self, session_id: str, dir_fd: int) -> SessionMeta:
        """The validated meta of the session in ``dir_fd``, or :class:`CorruptSession`."""
        try:
            fd = open_file(META, os.O_RDONLY | os.O_NONBLOCK, dir_fd)
        except OSError as exc:
            raise CorruptSession(session_id, describe_open_error(exc, META)) from None
        with closing_fd(fd):
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CorruptSession(session_id, f"{META} is not a regular file")
            if st.st_size > MAX_META_BYTES:
                raise CorruptSession(session_id, f"{META} is larger than {MAX_META_BYTES} bytes")
            data = os.pread(fd, MAX_META_BYTES + 1, 0)
        if not data.strip():
            raise CorruptSession(session_id, f"{META} is empty")
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptSession(session_id, f"{META} is not valid JSON ({exc})") from None
        try:
            return SessionMeta.from_json(obj, session_id)
        except MetaError as exc:
            raise CorruptSession(session_id, str(exc)) from None

    def read_meta(self, session_id: str) -> SessionMeta | None:
        """The meta (with the exit from the record if only that has it), or None when the
        session is missing, unreadable or corrupt."""
        try:
            with self.open_session(session_id) as fd:
                return self._current(session_id, fd, self.load_meta(session_id, fd))
        except (SessionError, OSError):
            return None

    def _current(self, session_id: str, fd: int, meta: SessionMeta) -> SessionMeta:
        """``meta`` completed by the exit record (the exit survives a full disk there)."""
        if meta.ended_at is not None:
            return meta
        record = read_record(fd)
        if record is None or record.ended_at is None:
            return meta
        return replace(meta, ended_at=record.ended_at, exit_code=record.exit_code,
                       signal=record.signal, status="exited")  # fmt: skip

    def _status_at(self, session_id: str, fd: int, meta: SessionMeta) -> tuple[str, SessionMeta]:
        """``running`` / ``exited`` / ``lost``, decided by the exit record and the lock."""
        if meta.ended_at is not None:
            return "exited", meta
        if lock_held(LOCK, fd):
            return "running", meta
        # It may have ended between our reads; and where meta.json could not be rewritten
        # (a full disk), the record has the exit.
        with contextlib.suppress(CorruptSession):
            meta = self.load_meta(session_id, fd)
        meta = self._current(session_id, fd, meta)
        if meta.ended_at is not None:
            return "exited", meta
        if meta.supervisor_pid is None and _age(fd) < STARTING_GRACE:
            return "running", meta  # still starting: the supervisor has not taken its lock yet
        return "lost", meta

    def status(self, meta: SessionMeta) -> str:
        try:
            with self.open_session(meta.id) as fd:
                return self._status_at(meta.id, fd, meta)[0]
        except SessionNotFound:
            return "lost"

    def supervised(self, session_id: str) -> bool:
        """Whether a live supervisor holds the session's lock (running, or corrupt but alive)."""
        try:
            with self.open_session(session_id) as fd:
                return lock_held(LOCK, fd)
        except (SessionError, OSError):
            return False

    def log_size(self, session_id: str) -> int:
        try:
            with self.open_session(session_id) as fd:
                return log_size_at(fd)
        except (SessionError, OSError):
            return 0

    def _info_at(self, root: int, session_id: str) -> SessionInfo | None:
        try:
            fd = self._open_session_at(root, session_id)
        except SessionNotFound:
            return None
        except CorruptSession as exc:
            return self._corrupt(root, session_id, exc.reason, None)
        with closing_fd(fd):
            try:
                meta = self.load_meta(session_id, fd)
            except CorruptSession as exc:
                if missing_at(META, fd) and _age(fd) < STARTING_GRACE:
                    return None  # being created: its meta.json comes in a moment
                reason = exc.reason
                if lock_held(LOCK, fd):
                    reason += "; its supervisor is still running"
                return self._corrupt(root, session_id, reason, fd)
            status, meta = self._status_at(session_id, fd, meta)
            record = read_record(fd)
            dropped = record.dropped_bytes if record is not None else 0
            return SessionInfo(
                meta, status, log_size_at(fd), dropped_bytes=dropped,
                dropped_reason=record.dropped_reason if record is not None else None,
            )  # fmt: skip

    @staticmethod
    def _corrupt(root: int, session_id: str, reason: str, fd: int | None) -> SessionInfo:
        try:
            created = _iso_of(os.stat(session_id, dir_fd=root, follow_symlinks=False).st_mtime)
        except OSError:
            created = ""
        meta = SessionMeta(id=session_id, argv=[], cwd="", tty=False, created_at=created,
                           status="corrupt")  # fmt: skip
        size = log_size_at(fd) if fd is not None else 0
        return SessionInfo(meta, "corrupt", size, problem=reason)

    def info(self, session_id: str) -> SessionInfo | None:
        """The session as listed (``corrupt`` with a reason if need be); None if missing."""
        validate_id(session_id)
        with self.open_root() as root:
            return None if root is None else self._info_at(root, session_id)

    def ids(self) -> list[str]:
        with self.open_root() as root:
            return [] if root is None else _ids_at(root)

    def list(self) -> list[SessionInfo]:
        """Every session (corrupt ones too), newest first, each with its index (0 = newest)."""
        with self.open_root() as root:
            if root is None:
                return []
            infos = [info for sid in _ids_at(root) if (info := self._info_at(root, sid))]
        infos.sort(key=lambda i: (i.meta.created_at, i.meta.id), reverse=True)
        return [replace(info, index=n) for n, info in enumerate(infos)]

    def get(self, session_id: str) -> SessionInfo:
        info = self.info(validate_id(session_id))
        if info is None:
            raise SessionNotFound(f"no session {session_id!r}")
        return info

    # -- selectors
    def resolve(self, selector: str) -> SessionInfo:
        """An index (0 = newest), an exact id, or a unique id prefix → that session."""
        infos = self.list()
        if not infos:
            raise SessionNotFound(f"no session matches {selector!r}: there are no sessions")
        if selector.isdigit():
            n = int(selector)
            if n < len(infos):
                return infos[n]
            by_id = [i for i in infos if i.id == selector]
            if by_id:
                return by_id[0]
            raise SessionNotFound(
                f"no session at index {n}: there are {len(infos)} (0 is the newest)"
            )
        exact = [i for i in infos if i.id == selector]
        if exact:
            return exact[0]
        matches = [i for i in infos if i.id.startswith(selector)] if selector else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(i.id for i in matches)
            raise AmbiguousSelector(f"{selector!r} is ambiguous: it matches {shown}")
        shown = ", ".join(i.id for i in infos[:20]) + (" ..." if len(infos) > 20 else "")
        raise SessionNotFound(f"no session matches {selector!r}; sessions: {shown}")

    # -- logs
    @contextlib.contextmanager
    def open_log(self, session_id: str) -> Iterator[int | None]:
        """A read fd of the session's log (None when there is no log yet)."""
        with self.open_session(session_id) as dir_fd:
            try:
                fd = open_file(LOG, os.O_RDONLY | os.O_NONBLOCK, dir_fd)
            except FileNotFoundError:
                fd = None
            except OSError as exc:
                raise CorruptSession(session_id, describe_open_error(exc, LOG)) from None
        if fd is None:
            yield None
            return
        with closing_fd(fd):
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CorruptSession(session_id, f"{LOG} is not a regular file")
            yield fd

    def read_log(self, session_id: str, offset: int, max_bytes: int) -> tuple[bytes, int, int]:
        """``(data, offset, size)``: up to ``max_bytes`` at ``offset`` (clamped to the size)."""
        with self.open_log(session_id) as fd:
            if fd is None:
                return b"", 0, 0
            size = os.fstat(fd).st_size
            offset = min(max(offset, 0), size)
            data = os.pread(fd, min(max_bytes, size - offset), offset) if size > offset else b""
        return data, offset, size

    def tail_offset(self, session_id: str, lines: int) -> int:
        """Offset of the start of the last ``lines`` lines of the log."""
        with self.open_log(session_id) as fd:
            if fd is None:
                return 0
            size = os.fstat(fd).st_size
            return size if lines <= 0 else tail_offset_at(fd, size, lines)


def _ids_at(root: int) -> list[str]:
    return [e for e in os.listdir(root) if ID_PATTERN.fullmatch(e)]


def _age(dir_fd: int) -> float:
    try:
        return time.time() - os.fstat(dir_fd).st_mtime
    except OSError:
        return float("inf")
