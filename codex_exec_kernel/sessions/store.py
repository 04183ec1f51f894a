"""The on-disk store of background sessions: ids, paths, meta.json, status, selectors, logs.

Every face (CLI, protocol methods, magics, the supervisor itself) goes through
this module, so there is exactly one idea of what a session directory holds:

    <home>/sessions/<id>/        0700
        meta.json                0600  written atomically (tmp + rename)
        output.log               0600  every output byte, appended as it comes
        lock                     0600  flock'ed (exclusive) by the live supervisor
        sock                     0600  the supervisor's attach socket

Liveness is the lock, not a pid: a pid check is fooled by pid reuse after a reboot
or a SIGKILL, while a flock vanishes with the process that held it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from . import names

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: A session whose supervisor has not taken its lock yet counts as running this long.
STARTING_GRACE = 30.0
#: AF_UNIX paths longer than this are reached through /proc/self/fd (see socket_address).
_MAX_SUN_PATH = 100


class SessionError(Exception):
    """Base of every session error; the message is meant for a person."""


class InvalidSessionId(SessionError, ValueError):
    """Not ``[A-Za-z0-9_-]{1,64}``: refused before anything touches the disk."""


class SessionExists(SessionError):
    """Creating a session whose id is taken."""


class SessionNotFound(SessionError):
    """No session matches the id or selector."""


class AmbiguousSelector(SessionError):
    """A prefix that matches more than one session."""


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


def now_iso() -> str:
    """ISO 8601 UTC with microseconds: sortable as a string, readable by people."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell reused pids apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    try:
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member that is not a zombie.

    ``killpg(pgid, 0)`` also succeeds for zombies, and where init does not reap (some
    containers) an orphan's zombie lingers forever; so look at the members' states.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


@dataclass(frozen=True)
class SessionMeta:
    """What meta.json holds. ``status`` is the last writer's view; readers recompute it."""

    id: str
    argv: list[str]
    cwd: str
    tty: bool
    created_at: str
    pid: int | None = None
    supervisor_pid: int | None = None
    start_ticks: int | None = None
    ended_at: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    status: str = "running"
    size: tuple[int, int] = (24, 80)
    display: str | None = None  # the command as the user typed it (argv has the details)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "argv": self.argv, "cwd": self.cwd, "tty": self.tty,
            "pid": self.pid, "supervisorPid": self.supervisor_pid,
            "startTicks": self.start_ticks, "createdAt": self.created_at,
            "endedAt": self.ended_at, "exitCode": self.exit_code, "signal": self.signal,
            "status": self.status, "size": {"rows": self.size[0], "cols": self.size[1]},
            "display": self.display,
        }  # fmt: skip

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SessionMeta:
        size = obj.get("size") or {}
        return cls(
            id=str(obj["id"]),
            argv=[str(a) for a in obj.get("argv") or []],
            cwd=str(obj.get("cwd") or ""),
            tty=bool(obj.get("tty")),
            created_at=str(obj.get("createdAt") or ""),
            pid=obj.get("pid"),
            supervisor_pid=obj.get("supervisorPid"),
            start_ticks=obj.get("startTicks"),
            ended_at=obj.get("endedAt"),
            exit_code=obj.get("exitCode"),
            signal=obj.get("signal"),
            status=str(obj.get("status") or "running"),
            size=(int(size.get("rows", 24)), int(size.get("cols", 80))),
            display=str(obj["display"]) if obj.get("display") is not None else None,
        )


@dataclass(frozen=True)
class SessionInfo:
    """A session as listed: its meta, its live status and how much output it has logged."""

    meta: SessionMeta
    status: str
    output_bytes: int
    index: int = field(default=-1, compare=False)

    @property
    def id(self) -> str:
        return self.meta.id

    def to_json(self) -> dict[str, Any]:
        """The ``session/list`` entry (plus a few extra fields clients may ignore)."""
        m = self.meta
        return {
            "id": m.id, "pid": m.pid, "argv": m.argv, "tty": m.tty, "status": self.status,
            "exitCode": m.exit_code, "signal": m.signal, "createdAt": m.created_at,
            "endedAt": m.ended_at, "outputBytes": self.output_bytes, "cwd": m.cwd,
            "supervisorPid": m.supervisor_pid, "index": self.index, "display": m.display,
        }  # fmt: skip


@dataclass(frozen=True)
class SessionPaths:
    """The files of one session directory."""

    dir: str

    @property
    def meta(self) -> str:
        return os.path.join(self.dir, "meta.json")

    @property
    def log(self) -> str:
        return os.path.join(self.dir, "output.log")

    @property
    def lock(self) -> str:
        return os.path.join(self.dir, "lock")

    @property
    def sock(self) -> str:
        return os.path.join(self.dir, "sock")

    @property
    def supervisor_log(self) -> str:
        return os.path.join(self.dir, "supervisor.log")

    @contextlib.contextmanager
    def socket_address(self) -> Iterator[str]:
        """An AF_UNIX address for ``sock``, valid inside the ``with``.

        ``sun_path`` holds ~108 bytes and homes can be deep (pytest tmp dirs), so a
        long path is reached through an open fd of the directory:
        ``/proc/self/fd/N/sock`` is short and Linux resolves it like the real path.
        """
        if len(os.fsencode(self.sock)) <= _MAX_SUN_PATH:
            yield self.sock
            return
        dirfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield f"/proc/self/fd/{dirfd}/sock"
        finally:
            os.close(dirfd)

    def connect(self, timeout: float | None = 5.0) -> socket.socket:
        """A connected, blocking socket to the supervisor (OSError when nobody listens)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            with self.socket_address() as address:
                sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock


def write_json_atomic(path: str, obj: dict[str, Any]) -> None:
    """Write ``obj`` to ``path`` through a tmp file and a rename: readers never see half a file."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def lock_held(path: str) -> bool:
    """Whether some process holds an exclusive flock on ``path`` (i.e. a live supervisor)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # also drops our shared lock
    return False


class SessionStore:
    """One home's sessions directory. Stateless apart from its path: safe to make anywhere."""

    def __init__(self, home: str) -> None:
        self.home = os.path.abspath(home)
        self.root = os.path.join(self.home, "sessions")

    # -- layout
    def paths(self, session_id: str) -> SessionPaths:
        return SessionPaths(os.path.join(self.root, validate_id(session_id)))

    def ensure_root(self) -> None:
        """Create ``<home>/sessions`` (0700 for what we create)."""
        for path in (self.home, self.root):
            try:
                os.makedirs(path, mode=0o700, exist_ok=False)
            except FileExistsError:
                pass
        os.chmod(self.root, 0o700)

    def exists(self, session_id: str) -> bool:
        return os.path.lexists(self.paths(session_id).dir)

    def reserve(self, session_id: str | None) -> str:
        """Take an id by creating its directory (atomic); generate one when None."""
        self.ensure_root()
        if session_id is not None:
            paths = self.paths(session_id)
            try:
                os.mkdir(paths.dir, 0o700)
            except FileExistsError:
                raise SessionExists(f"session {session_id!r} already exists") from None
            os.chmod(paths.dir, 0o700)
            return session_id
        while True:
            name = names.generate(self.exists)
            try:
                os.mkdir(self.paths(name).dir, 0o700)
            except FileExistsError:
                continue  # somebody took it between the check and the mkdir
            os.chmod(self.paths(name).dir, 0o700)
            return name

    def remove(self, session_id: str) -> None:
        shutil.rmtree(self.paths(session_id).dir, ignore_errors=True)

    # -- meta
    def write_meta(self, meta: SessionMeta) -> None:
        write_json_atomic(self.paths(meta.id).meta, meta.to_json())

    def read_meta(self, session_id: str) -> SessionMeta | None:
        """The meta, or None when the directory or its meta.json is missing or unreadable."""
        try:
            with open(self.paths(session_id).meta, encoding="utf-8") as f:
                obj = json.load(f)
            return SessionMeta.from_json(obj)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def status(self, meta: SessionMeta) -> str:
        """``running`` / ``exited`` / ``lost``, decided by the exit record and the lock."""
        if meta.ended_at is not None:
            return "exited"
        paths = self.paths(meta.id)
        if lock_held(paths.lock):
            return "running"
        again = self.read_meta(meta.id)  # it may have ended between our two reads
        if again is not None and again.ended_at is not None:
            return "exited"
        if meta.supervisor_pid is None and _age(paths.dir) < STARTING_GRACE:
            return "running"  # still starting: the supervisor has not taken its lock yet
        return "lost"

    def log_size(self, session_id: str) -> int:
        try:
            return os.stat(self.paths(session_id).log).st_size
        except OSError:
            return 0

    def info(self, session_id: str) -> SessionInfo | None:
        meta = self.read_meta(session_id)
        if meta is None:
            return None
        status = self.status(meta)
        if status == "exited":
            meta = self.read_meta(session_id) or meta
        return SessionInfo(meta, status, self.log_size(session_id))

    def ids(self) -> list[str]:
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return [e for e in entries if ID_PATTERN.fullmatch(e)]

    def list(self) -> list[SessionInfo]:
        """Every readable session, newest first, each with its index (0 = newest)."""
        infos = [info for sid in self.ids() if (info := self.info(sid)) is not None]
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
    def read_log(self, session_id: str, offset: int, max_bytes: int) -> tuple[bytes, int, int]:
        """``(data, offset, size)``: up to ``max_bytes`` at ``offset`` (clamped to the size)."""
        try:
            fd = os.open(self.paths(session_id).log, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return b"", 0, 0
        try:
            size = os.fstat(fd).st_size
            offset = min(max(offset, 0), size)
            data = os.pread(fd, min(max_bytes, size - offset), offset) if size > offset else b""
        finally:
            os.close(fd)
        return data, offset, size

    def tail_offset(self, session_id: str, lines: int) -> int:
        """Offset of the start of the last ``lines`` lines of the log."""
        size = self.log_size(session_id)
        if lines <= 0:
            return size
        path = self.paths(session_id).log
        with open(path, "rb") as f:
            pos = size
            # A trailing newline ends the last line; it does not start a new one.
            f.seek(max(size - 1, 0))
            skip_last = size > 0 and f.read(1) == b"\n"
            count = 0
            while pos > 0:
                start = max(0, pos - 65536)
                f.seek(start)
                block = f.read(pos - start)
                end = len(block)
                if pos == size and skip_last:
                    end -= 1
                idx = end
                while True:
                    idx = block.rfind(b"\n", 0, idx)
                    if idx < 0:
                        break
                    count += 1
                    if count == lines:
                        return start + idx + 1
                pos = start
        return 0


def _age(path: str) -> float:
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return float("inf")
