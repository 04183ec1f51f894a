"""The attach socket's wire format: small typed frames between a supervisor and its clients.

Why a private binary framing and not the JSON-RPC protocol: the socket carries raw
terminal bytes at full speed between two processes of ours on one machine, so a
fixed header plus raw payload avoids base64 and JSON on every chunk. Control
messages (hello, resize, exit...) are tiny JSON objects inside the same framing.

A frame is ``type:u8 length:u32be payload``. ``Output`` payloads are
``offset:u64be stream:u8 data`` where ``offset`` is the position of ``data`` in the
session's log, so a client always knows where it is and can re-attach from there.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

HEADER = struct.Struct(">BI")
OUTPUT_HEADER = struct.Struct(">QB")
#: Larger frames are a protocol error: nobody of ours sends more than a read's worth.
MAX_FRAME = 8 * 1024 * 1024
WIRE_VERSION = 1

STREAM_CODES = {"pty": 0, "stdout": 1, "stderr": 2}
STREAM_NAMES = {code: name for name, code in STREAM_CODES.items()}


class WireError(Exception):
    """The peer sent something that is not a frame of this format."""


class Message:
    """Base of every frame; subclasses set ``TYPE`` and encode their payload."""

    TYPE: ClassVar[int]

    def payload(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        body = self.payload()
        return HEADER.pack(self.TYPE, len(body)) + body


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Hello(Message):
    """Client → supervisor, first frame: where in the log to start (None: the default tail)."""

    TYPE: ClassVar[int] = 1
    from_offset: int | None = None
    version: int = WIRE_VERSION

    def payload(self) -> bytes:
        return _json({"version": self.version, "fromOffset": self.from_offset})


@dataclass(frozen=True)
class Welcome(Message):
    """Supervisor → client, first frame: who the session is and where output starts."""

    TYPE: ClassVar[int] = 2
    session_id: str
    pid: int
    tty: bool
    offset: int
    size: int
    #: The supervisor keeps a screen model and answers :class:`SnapshotRequest`
    #: (absent from supervisors that predate it: clients must not ask those).
    screen: bool = False

    def payload(self) -> bytes:
        return _json(
            {"id": self.session_id, "pid": self.pid, "tty": self.tty,
             "offset": self.offset, "size": self.size, "screen": self.screen}
        )  # fmt: skip


@dataclass(frozen=True)
class Output(Message):
    """Supervisor → client: bytes of the log at ``offset``, from ``stream``."""

    TYPE: ClassVar[int] = 3
    offset: int
    stream: str
    data: bytes

    def payload(self) -> bytes:
        return OUTPUT_HEADER.pack(self.offset, STREAM_CODES[self.stream]) + self.data


@dataclass(frozen=True)
class Exit(Message):
    """Supervisor → client, last frame: the child ended and the client has all its output."""

    TYPE: ClassVar[int] = 4
    exit_code: int
    signal: str | None
    size: int

    def payload(self) -> bytes:
        return _json({"exitCode": self.exit_code, "signal": self.signal, "size": self.size})


@dataclass(frozen=True)
class Input(Message):
    """Client → supervisor: bytes for the child's terminal or stdin."""

    TYPE: ClassVar[int] = 5
    data: bytes

    def payload(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class Resize(Message):
    TYPE: ClassVar[int] = 6
    rows: int
    cols: int

    def payload(self) -> bytes:
        return _json({"rows": self.rows, "cols": self.cols})


@dataclass(frozen=True)
class Signal(Message):
    """Client → supervisor: signal the child's process group."""

    TYPE: ClassVar[int] = 7
    signum: int

    def payload(self) -> bytes:
        return _json({"signal": self.signum})


@dataclass(frozen=True)
class CloseStdin(Message):
    """Client → supervisor: end the child's input (pipe closed, or VEOF on a tty)."""

    TYPE: ClassVar[int] = 8

    def payload(self) -> bytes:
        return b""


@dataclass(frozen=True)
class Error(Message):
    """Supervisor → client: the request was refused; the connection closes after it."""

    TYPE: ClassVar[int] = 9
    message: str

    def payload(self) -> bytes:
        return _json({"message": self.message})


@dataclass(frozen=True)
class Terminate(Message):
    """Client → supervisor: end the child's process group (SIGHUP+SIGTERM+SIGCONT, SIGKILL
    after ``grace`` seconds), then exit. How ``session delete`` ends a running session
    without trusting a pid from disk."""

    TYPE: ClassVar[int] = 10
    grace: float

    def payload(self) -> bytes:
        return _json({"grace": self.grace})


@dataclass(frozen=True)
class SnapshotRequest(Message):
    """Client → supervisor: the screen for a fresh terminal of ``rows`` x ``cols``
    (absent: the session's size). Answered by one :class:`Snapshot` in the output order."""

    TYPE: ClassVar[int] = 11
    rows: int | None = None
    cols: int | None = None

    def payload(self) -> bytes:
        return _json({"rows": self.rows, "cols": self.cols})


SNAPSHOT_HEADER = struct.Struct(">I")


@dataclass(frozen=True)
class Snapshot(Message):
    """Supervisor → client: bytes that redraw the screen as the log up to ``offset``
    left it. Sent right after the Output frames that end at ``offset``, so the next
    Output frame continues it. Payload: ``json_length:u32be json chunk``."""

    TYPE: ClassVar[int] = 12
    offset: int
    rows: int
    cols: int
    alternate_screen: bool
    title: str
    chunk: bytes

    def payload(self) -> bytes:
        head = _json({"offset": self.offset, "rows": self.rows, "cols": self.cols,
                      "alternateScreen": self.alternate_screen, "title": self.title})  # fmt: skip
        return SNAPSHOT_HEADER.pack(len(head)) + head + self.chunk


def _size_field(obj: dict[str, Any], name: str) -> int | None:
    value = _int(obj, name, optional=True)
    if value is not None and not 1 <= value <= 10_000:
        raise WireError(f"{name} must be between 1 and 10000")
    return value  # type: ignore[no-any-return]


def _decode_snapshot(payload: bytes) -> Snapshot:
    if len(payload) < SNAPSHOT_HEADER.size:
        raise WireError("short snapshot frame")
    (length,) = SNAPSHOT_HEADER.unpack_from(payload)
    end = SNAPSHOT_HEADER.size + length
    if end > len(payload):
        raise WireError("snapshot header longer than its frame")
    obj = _obj(payload[SNAPSHOT_HEADER.size : end])
    title = obj.get("title")
    return Snapshot(_int(obj, "offset"), _int(obj, "rows"), _int(obj, "cols"),
                    bool(obj.get("alternateScreen")), title if isinstance(title, str) else "",
                    payload[end:])  # fmt: skip


def _obj(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"bad JSON payload: {exc}") from None
    if not isinstance(value, dict):
        raise WireError("JSON payload must be an object")
    return value


def _int(obj: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    value = obj.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireError(f"{name} must be an integer")
    return value


def decode(kind: int, payload: bytes) -> Message:
    """One frame's message; :class:`WireError` when it is malformed."""
    if kind == Hello.TYPE:
        obj = _obj(payload)
        return Hello(_int(obj, "fromOffset", optional=True), _int(obj, "version"))
    if kind == Welcome.TYPE:
        obj = _obj(payload)
        return Welcome(str(obj["id"]), _int(obj, "pid"), bool(obj["tty"]),
                       _int(obj, "offset"), _int(obj, "size"),
                       obj.get("screen") is True)  # fmt: skip
    if kind == Output.TYPE:
        if len(payload) < OUTPUT_HEADER.size:
            raise WireError("short output frame")
        offset, code = OUTPUT_HEADER.unpack_from(payload)
        if code not in STREAM_NAMES:
            raise WireError(f"unknown stream code {code}")
        return Output(offset, STREAM_NAMES[code], payload[OUTPUT_HEADER.size :])
    if kind == Exit.TYPE:
        obj = _obj(payload)
        sig = obj.get("signal")
        return Exit(_int(obj, "exitCode"), sig if isinstance(sig, str) else None, _int(obj, "size"))
    if kind == Input.TYPE:
        return Input(payload)
    if kind == Resize.TYPE:
        obj = _obj(payload)
        return Resize(_int(obj, "rows"), _int(obj, "cols"))
    if kind == Signal.TYPE:
        return Signal(_int(_obj(payload), "signal"))
    if kind == CloseStdin.TYPE:
        return CloseStdin()
    if kind == Terminate.TYPE:
        grace = _obj(payload).get("grace")
        if not isinstance(grace, (int, float)) or isinstance(grace, bool) or not 0 <= grace <= 3600:
            raise WireError("grace must be a number of seconds between 0 and 3600")
        return Terminate(float(grace))
    if kind == SnapshotRequest.TYPE:
        obj = _obj(payload)
        return SnapshotRequest(_size_field(obj, "rows"), _size_field(obj, "cols"))
    if kind == Snapshot.TYPE:
        return _decode_snapshot(payload)
    if kind == Error.TYPE:
        return Error(str(_obj(payload).get("message", "")))
    raise WireError(f"unknown frame type {kind}")


class FrameDecoder:
    """Incremental decoder: feed it whatever the socket gave, get whole messages back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise WireError(f"frame of {length} bytes is larger than {MAX_FRAME}")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            payload = bytes(self._buf[HEADER.size : end])
            del self._buf[:end]
            out.append(decode(kind, payload))
        return out
