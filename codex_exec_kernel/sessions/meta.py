"""What a session directory records, and the strict reading of it.

``meta.json`` is validated field by field on read: a file of ``[]``, ``5``,
``{"size": 5}`` or ``"pid": 0`` is not "a session with odd values" but a corrupt
session, listed as such with the reason, so that one bad directory can never break
listing, attaching or deleting the others, and no forged pid is ever acted upon.

The exit ``record`` is a small file preallocated when the session is created and
rewritten in place: overwriting blocks a file already owns needs no free space, so
the exit code (and the fact that output was dropped) survives a full disk that
makes the atomic rewrite of ``meta.json`` fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

#: Size of the preallocated exit record; its JSON is padded with spaces to this size.
RECORD_SIZE = 4096
#: meta.json larger than this is not ours.
MAX_META_BYTES = 1 << 20
MAX_TERMINAL_SIDE = 10_000


class MetaError(ValueError):
    """Why a meta.json (or record) cannot be trusted; the text is the reason shown."""


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Fields:
    """Typed access to a JSON object, raising :class:`MetaError` naming the bad field."""

    def __init__(self, obj: Any, what: str) -> None:
        if not isinstance(obj, dict):
            raise MetaError(f"{what} is not a JSON object (it is {type(obj).__name__})")
        self.obj = obj
        self.what = what

    def bad(self, name: str, expected: str) -> MetaError:
        shown = json.dumps(self.obj.get(name))
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return MetaError(f"{self.what} field {name!r} must be {expected}, got {shown}")

    def string(self, name: str, *, optional: bool = False) -> Any:
        value = self.obj.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.bad(name, "a string")
        return value

    def integer(self, name: str, *, lo: int | None = None, optional: bool = True) -> Any:
        value = self.obj.get(name)
        if value is None and optional:
            return None
        if not _is_int(value) or (lo is not None and value < lo):
            raise self.bad(name, "an integer" + (f" >= {lo}" if lo is not None else ""))
        return value

    def timestamp(self, name: str, *, optional: bool = False) -> Any:
        value = self.string(name, optional=optional)
        if value is not None and parse_iso(value) is None:
            raise self.bad(name, "an ISO 8601 time")
        return value


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
    supervisor_start_ticks: int | None = None
    ended_at: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    status: str = "running"
    size: tuple[int, int] = (24, 80)
    #: The command as the user typed it (``%exec --bg CMD``); ``argv`` keeps the details.
    display: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "argv": self.argv, "cwd": self.cwd, "tty": self.tty,
            "pid": self.pid, "supervisorPid": self.supervisor_pid,
            "startTicks": self.start_ticks, "supervisorStartTicks": self.supervisor_start_ticks,
            "createdAt": self.created_at, "endedAt": self.ended_at,
            "exitCode": self.exit_code, "signal": self.signal, "status": self.status,
            "size": {"rows": self.size[0], "cols": self.size[1]}, "display": self.display,
        }  # fmt: skip

    @classmethod
    def from_json(cls, obj: Any, expected_id: str | None = None) -> SessionMeta:
        """Validate every field; :class:`MetaError` says which one is wrong and why."""
        f = _Fields(obj, "meta.json")
        sid = f.string("id")
        if expected_id is not None and sid != expected_id:
            raise MetaError(f"meta.json says id {sid[:80]!r}, but its directory is {expected_id!r}")
        argv = obj.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise f.bad("argv", "a non-empty list of strings")
        tty = obj.get("tty")
        if not isinstance(tty, bool):
            raise f.bad("tty", "true or false")
        size = obj.get("size", {"rows": 24, "cols": 80})
        sized = _Fields(size, "meta.json size")
        rows, cols = (
            sized.integer("rows", lo=1, optional=False),
            sized.integer("cols", lo=1, optional=False),
        )
        if rows > MAX_TERMINAL_SIDE or cols > MAX_TERMINAL_SIDE:
            raise f.bad("size", f"rows and cols of at most {MAX_TERMINAL_SIDE}")
        ended_at = f.timestamp("endedAt", optional=True)
        exit_code = f.integer("exitCode")
        if ended_at is not None and exit_code is None:
            raise f.bad("exitCode", "an integer once endedAt is set")
        return cls(
            id=sid, argv=list(argv), cwd=f.string("cwd"), tty=tty,
            created_at=f.timestamp("createdAt"),
            # pid 0 or 1 would make a signal hit our own group or everybody: never valid.
            pid=f.integer("pid", lo=2), supervisor_pid=f.integer("supervisorPid", lo=2),
            start_ticks=f.integer("startTicks", lo=0),
            supervisor_start_ticks=f.integer("supervisorStartTicks", lo=0),
            ended_at=ended_at, exit_code=exit_code, signal=f.string("signal", optional=True),
            status=f.string("status", optional=True) or "running", size=(rows, cols),
            display=f.string("display", optional=True),
        )  # fmt: skip


@dataclass(frozen=True)
class ExitRecord:
    """The preallocated record: the exit (once known) and how much output was dropped."""

    ended_at: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    dropped_bytes: int = 0
    dropped_reason: str | None = None

    def encode(self) -> bytes:
        data = json.dumps({
            "endedAt": self.ended_at, "exitCode": self.exit_code, "signal": self.signal,
            "droppedBytes": self.dropped_bytes, "droppedReason": self.dropped_reason,
        }).encode()  # fmt: skip
        return data.ljust(RECORD_SIZE, b" ")

    @classmethod
    def decode(cls, data: bytes) -> ExitRecord:
        try:
            obj = json.loads(data.decode("utf-8") or "{}") if data.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise MetaError(f"record is not valid JSON ({exc})") from None
        f = _Fields(obj, "record")
        ended_at = f.timestamp("endedAt", optional=True)
        exit_code = f.integer("exitCode")
        if ended_at is not None and exit_code is None:
            raise f.bad("exitCode", "an integer once endedAt is set")
        reason = f.string("droppedReason", optional=True)
        return cls(ended_at, exit_code, f.string("signal", optional=True),
                   f.integer("droppedBytes", lo=0) or 0, reason)  # fmt: skip
