"""Wire types of the codex-exec protocol (``docs/protocol.md``) and their validation.

Everything that crosses a transport is checked here, before any process is looked
up, so a malformed call always gets ``-32602`` whatever id it names, and nothing
downstream ever sees an unchecked value. The transports differ only in how bytes
travel (base64 strings on stdio, binary buffers on a comm); :func:`decode_bytes`
and :func:`encode_bytes` are the one place that difference lives.
"""

from __future__ import annotations

import binascii
import json
import math
import os
import re
import signal as _signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# pybase64 (SIMD base64): ~15 GB/s to decode and ~3 GB/s or more to encode a 64 KiB chunk
# on this machine, against ~0.2-0.3 and ~0.25-1 GB/s for the stdlib's binascii; the base64 of
# the stdio transport was the one codec cost left once lines are built by hand
# (benchmarks/README.md, "codec").
import pybase64

PROTOCOL_VERSION = "codex-exec.v1"
#: The Jupyter comm target the kernel registers and every client opens.
COMM_TARGET = "codex.exec"
#: Process ids of attached background sessions (``session:<id>``); reserved for them.
SESSION_PROCESS_PREFIX = "session:"

# JSON-RPC error codes used by the protocol.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
LIMIT_REACHED = -32010

#: Largest id (process, write, session) we accept: ids are keys, not payloads.
MAX_ID_LENGTH = 256
#: Upper bound of the total size of argv and env, the kernel's own ARG_MAX order.
MAX_ARGV_BYTES = 2 * 1024 * 1024
MAX_ROWS_COLS = 10_000
MAX_WAIT_MS = 3_600_000

#: Signal names of the protocol mapped to their numbers.
SIGNALS: dict[str, int] = {
    "interrupt": _signal.SIGINT,
    "terminate": _signal.SIGTERM,
    "kill": _signal.SIGKILL,
    "hangup": _signal.SIGHUP,
    "quit": _signal.SIGQUIT,
    "stop": _signal.SIGSTOP,
    "continue": _signal.SIGCONT,
    "usr1": _signal.SIGUSR1,
    "usr2": _signal.SIGUSR2,
    "winch": _signal.SIGWINCH,
}


class ProtocolError(Exception):
    """An error answered to the caller as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def invalid_params(message: str) -> ProtocolError:
    return ProtocolError(INVALID_PARAMS, message)


def invalid_request(message: str) -> ProtocolError:
    return ProtocolError(INVALID_REQUEST, message)


# --------------------------------------------------------------------------- bytes


def decode_bytes(value: Any, buffers: Buffers, name: str = "chunk") -> bytes:
    """Turn a bytes field (base64 string or ``{"buffer": i}``) into bytes."""
    if isinstance(value, str):
        try:
            return pybase64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise invalid_params(f"{name}: not valid base64 ({exc})") from None
    if isinstance(value, Mapping) and set(value) == {"buffer"}:
        index = value["buffer"]
        if not _is_int(index) or not 0 <= index < len(buffers):
            raise invalid_params(
                f"{name}: buffer index {index!r} does not name one of the "
                f"{len(buffers)} binary buffers of this message"
            )
        return bytes(buffers[index])
    raise invalid_params(f'{name}: expected a base64 string or {{"buffer": i}}')


def b64encode(data: bytes | bytearray | memoryview) -> bytes:
    """Standard base64 with padding, as bytes (the one encoder every transport uses)."""
    return pybase64.b64encode(data)


def encode_bytes(data: bytes, buffers: list[bytes] | None) -> Any:
    """Encode bytes for the wire: a buffer reference when ``buffers`` is a list, else base64."""
    if buffers is None:
        return b64encode(data).decode("ascii")
    buffers.append(data)
    return {"buffer": len(buffers) - 1}


# --------------------------------------------------------------------------- field readers


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


Buffers = Sequence[bytes | memoryview]


def _text(name: str, value: str) -> str:
    """A string that can cross to the OS and back: JSON allows lone surrogates
    (``"\\ud800"``), UTF-8 and therefore argv, env and paths do not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid_params(f"{name} is not valid Unicode (a lone surrogate)") from None
    return value


class FieldReader:
    """Reads typed fields out of a params object, raising -32602 with the field's name.

    Public so that extensions (``session/*``) declare their params the same way."""

    def __init__(self, params: Any) -> None:
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise invalid_params("params must be an object")
        self.params = params

    def has(self, name: str) -> bool:
        return self.params.get(name) is not None

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        max_len: int = MAX_ID_LENGTH,
        allow_empty: bool = False,
    ) -> str | None:
        value = self.params.get(name)
        if value is None:
            if required:
                raise invalid_params(f"{name} is required")
            return None
        if not isinstance(value, str):
            raise invalid_params(f"{name} must be a string")
        if not value and not allow_empty:
            raise invalid_params(f"{name} must not be empty")
        if len(value) > max_len:
            raise invalid_params(f"{name} is longer than {max_len} characters")
        if "\0" in value:
            raise invalid_params(f"{name} must not contain NUL")
        return _text(name, value)

    def integer(
        self,
        name: str,
        *,
        default: int | None = None,
        required: bool = False,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int | None:
        value = self.params.get(name)
        if value is None:
            if required:
                raise invalid_params(f"{name} is required")
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid_params(f"{name} must be an integer")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise invalid_params(f"{name} must be between {lo} and {hi}, got {value}")
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.params.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise invalid_params(f"{name} must be a boolean")
        return value

    def string_list(self, name: str, *, required: bool = False) -> list[str] | None:
        value = self.params.get(name)
        if value is None:
            if required:
                raise invalid_params(f"{name} is required")
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid_params(f"{name} must be a list of strings")
        return [_text(name, v) for v in value]

    def string_map(self, name: str) -> dict[str, str] | None:
        value = self.params.get(name)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise invalid_params(f"{name} must be an object of strings")
        out: dict[str, str] = {}
        for key, val in value.items():
            if not isinstance(key, str) or not isinstance(val, str):
                raise invalid_params(f"{name} must map strings to strings")
            if not key or "=" in key or "\0" in key or "\0" in val:
                raise invalid_params(f"{name}: invalid variable {key!r} (empty, '=' or NUL)")
            out[_text(name, key)] = _text(name, val)
        return out

    def process_id(self, name: str = "processId") -> str:
        value = self.string(name, required=True)
        assert value is not None
        return value


# --------------------------------------------------------------------------- params


@dataclass(frozen=True)
class EnvPolicy:
    """How a child's environment is built from the server's (see :mod:`.envpolicy`)."""

    inherit: str = "all"
    ignore_default_excludes: bool = False
    exclude: tuple[str, ...] = ()
    set: Mapping[str, str] = field(default_factory=dict)
    include_only: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: Any) -> EnvPolicy:
        r = FieldReader(value) if isinstance(value, Mapping) else None
        if r is None:
            raise invalid_params("envPolicy must be an object")
        inherit = r.string("inherit") or "all"
        if inherit not in ("all", "core", "none"):
            raise invalid_params('envPolicy.inherit must be "all", "core" or "none"')
        return cls(
            inherit=inherit,
            ignore_default_excludes=r.boolean("ignoreDefaultExcludes"),
            exclude=tuple(_globs(r, "exclude")),
            set=r.string_map("set") or {},
            include_only=tuple(_globs(r, "includeOnly")),
        )


def _globs(r: FieldReader, name: str) -> list[str]:
    try:
        return r.string_list(name) or []
    except ProtocolError:
        raise invalid_params(f"envPolicy.{name} must be a list of glob strings") from None


def _check_argv(argv: list[str] | None, name: str = "argv") -> list[str]:
    if not argv:
        raise invalid_params(f"{name} must be a non-empty list of strings")
    if any("\0" in a for a in argv):
        raise invalid_params(f"{name} must not contain NUL")
    if sum(len(a) + 1 for a in argv) > MAX_ARGV_BYTES:
        raise invalid_params(f"{name} is larger than {MAX_ARGV_BYTES} bytes")
    return argv


def _check_cwd(cwd: str | None) -> str | None:
    if cwd is not None and not os.path.isabs(cwd):
        raise invalid_params(f"cwd must be an absolute path, got {cwd!r}")
    return cwd


def _size(r: FieldReader) -> tuple[int, int]:
    value = r.params.get("size")
    if value is None:
        return (24, 80)
    sr = FieldReader(value) if isinstance(value, Mapping) else None
    if sr is None:
        raise invalid_params("size must be an object {rows, cols}")
    rows = sr.integer("rows", required=True, lo=1, hi=MAX_ROWS_COLS)
    cols = sr.integer("cols", required=True, lo=1, hi=MAX_ROWS_COLS)
    assert rows is not None and cols is not None
    return (rows, cols)


@dataclass(frozen=True)
class SpawnSpec:
    """What to run and how: shared by ``process/start`` and ``session/create``."""

    argv: list[str]
    cwd: str | None = None
    env: dict[str, str] | None = None
    env_policy: EnvPolicy | None = None
    tty: bool = False
    pipe_stdin: bool = False
    arg0: str | None = None
    size: tuple[int, int] = (24, 80)

    @classmethod
    def read(cls, r: FieldReader) -> SpawnSpec:
        argv = _check_argv(r.string_list("argv", required=True))
        env = r.string_map("env")
        if env is not None and sum(len(k) + len(v) + 2 for k, v in env.items()) > MAX_ARGV_BYTES:
            raise invalid_params(f"env is larger than {MAX_ARGV_BYTES} bytes")
        policy = EnvPolicy.parse(r.params["envPolicy"]) if r.has("envPolicy") else None
        return cls(
            argv=argv,
            cwd=_check_cwd(r.string("cwd", max_len=4096)),
            env=env,
            env_policy=policy,
            tty=r.boolean("tty"),
            pipe_stdin=r.boolean("pipeStdin"),
            arg0=r.string("arg0", max_len=4096, allow_empty=True),
            size=_size(r),
        )


@dataclass(frozen=True)
class InitializeParams:
    client_name: str
    flow_control: bool = False

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> InitializeParams:
        r = FieldReader(params)
        return cls(
            client_name=r.string("clientName", required=True) or "",
            flow_control=r.boolean("flowControl"),
        )


@dataclass(frozen=True)
class StartParams:
    spec: SpawnSpec
    process_id: str | None = None
    title: str | None = None

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> StartParams:
        r = FieldReader(params)
        process_id = r.string("processId")
        if process_id is not None and process_id.startswith(SESSION_PROCESS_PREFIX):
            raise invalid_params(
                f"processId: the prefix {SESSION_PROCESS_PREFIX!r} is reserved for sessions"
            )
        return cls(
            spec=SpawnSpec.read(r),
            process_id=process_id,
            title=r.string("title", max_len=4096, allow_empty=True),
        )


@dataclass(frozen=True)
class ReadParams:
    process_id: str
    after_seq: int = 0
    max_bytes: int | None = None
    wait_ms: int = 0

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> ReadParams:
        r = FieldReader(params)
        after = r.integer("afterSeq", default=0, lo=0)
        wait = r.integer("waitMs", default=0, lo=0, hi=MAX_WAIT_MS)
        max_bytes = r.integer("maxBytes", lo=1)
        assert after is not None and wait is not None
        return cls(r.process_id(), after, max_bytes, wait)


@dataclass(frozen=True)
class WriteParams:
    process_id: str
    chunk: bytes
    write_id: str | None = None

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> WriteParams:
        r = FieldReader(params)
        if "chunk" not in r.params:
            raise invalid_params("chunk is required")
        chunk = decode_bytes(r.params["chunk"], buffers)
        write_id = r.string("writeId")
        return cls(r.process_id(), chunk, write_id)


@dataclass(frozen=True)
class ProcessRef:
    process_id: str

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> ProcessRef:
        return cls(FieldReader(params).process_id())


@dataclass(frozen=True)
class ResizeParams:
    process_id: str
    rows: int
    cols: int

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> ResizeParams:
        r = FieldReader(params)
        rows = r.integer("rows", required=True, lo=1, hi=MAX_ROWS_COLS)
        cols = r.integer("cols", required=True, lo=1, hi=MAX_ROWS_COLS)
        assert rows is not None and cols is not None
        return cls(r.process_id(), rows, cols)


@dataclass(frozen=True)
class SnapshotParams:
    """``process/snapshot``: the screen for a fresh terminal of ``rows`` x ``cols``
    (both absent: the process's current size)."""

    process_id: str
    rows: int | None = None
    cols: int | None = None

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> SnapshotParams:
        r = FieldReader(params)
        rows = r.integer("rows", lo=1, hi=MAX_ROWS_COLS)
        cols = r.integer("cols", lo=1, hi=MAX_ROWS_COLS)
        return cls(r.process_id(), rows, cols)


def parse_signal(r: FieldReader) -> int:
    name = r.string("signal", required=True)
    if name not in SIGNALS:
        raise invalid_params(f"signal must be one of {', '.join(SIGNALS)}; got {name!r}")
    return SIGNALS[name]


@dataclass(frozen=True)
class SignalParams:
    process_id: str
    signum: int

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> SignalParams:
        r = FieldReader(params)
        signum = parse_signal(r)
        return cls(r.process_id(), signum)


@dataclass(frozen=True)
class TerminateParams:
    process_id: str
    grace_ms: int = 2000

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> TerminateParams:
        r = FieldReader(params)
        grace = r.integer("graceMs", default=2000, lo=0, hi=MAX_WAIT_MS)
        assert grace is not None
        return cls(r.process_id(), grace)


@dataclass(frozen=True)
class SubscribeParams:
    process_id: str
    after_seq: int = 0

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> SubscribeParams:
        r = FieldReader(params)
        after = r.integer("afterSeq", default=0, lo=0)
        assert after is not None
        return cls(r.process_id(), after)


@dataclass(frozen=True)
class AckParams:
    process_id: str
    seq: int

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> AckParams:
        r = FieldReader(params)
        seq = r.integer("seq", required=True, lo=0)
        assert seq is not None
        return cls(r.process_id(), seq)


@dataclass(frozen=True)
class NoParams:
    """Params of a method that takes none (``process/list``): absent or an object."""

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> NoParams:
        FieldReader(params)
        return cls()


# --------------------------------------------------------------------------- session/* params

#: What a background session's id may be: it names a directory, so nothing can escape.
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

MAX_LOG_CHUNK = 16 * 1024 * 1024
DEFAULT_LOG_CHUNK = 1024 * 1024


def _session_id(r: FieldReader, *, required: bool = True) -> str | None:
    value = r.string("id", required=required)
    if value is not None and not SESSION_ID_PATTERN.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise invalid_params(
            f"invalid session id {shown!r}: use 1 to 64 characters from A-Z a-z 0-9 _ -"
        )
    return value


def _required_id(r: FieldReader) -> str:
    session_id = _session_id(r)
    assert session_id is not None
    return session_id


@dataclass(frozen=True)
class SessionCreateParams:
    spec: SpawnSpec
    session_id: str | None = None

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> SessionCreateParams:
        r = FieldReader(params)
        return cls(SpawnSpec.read(r), _session_id(r, required=False))


@dataclass(frozen=True)
class SessionAttachParams:
    session_id: str
    from_offset: int | None = None

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> SessionAttachParams:
        r = FieldReader(params)
        return cls(_required_id(r), r.integer("fromOffset", lo=0))


@dataclass(frozen=True)
class SessionLogsParams:
    session_id: str
    offset: int = 0
    max_bytes: int = DEFAULT_LOG_CHUNK

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> SessionLogsParams:
        r = FieldReader(params)
        session_id = _required_id(r)
        offset = r.integer("offset", default=0, lo=0)
        max_bytes = r.integer("maxBytes", default=DEFAULT_LOG_CHUNK, lo=1)
        assert offset is not None and max_bytes is not None
        return cls(session_id, offset, min(max_bytes, MAX_LOG_CHUNK))


@dataclass(frozen=True)
class SessionSignalParams:
    signum: int
    session_id: str

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> SessionSignalParams:
        r = FieldReader(params)
        return cls(session_id=_required_id(r), signum=parse_signal(r))


@dataclass(frozen=True)
class SessionDeleteParams:
    session_id: str
    grace_ms: int | None = None  # None: the configured SessionConfig.delete_grace

    @classmethod
    def parse(cls, params: Any, buffers: Buffers = ()) -> SessionDeleteParams:
        r = FieldReader(params)
        session_id = _required_id(r)
        return cls(session_id, r.integer("graceMs", lo=0, hi=MAX_WAIT_MS))


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Message:
    """One parsed JSON-RPC message: a request (id set), a notification, or a response."""

    method: str | None
    params: Any
    id: Any = None
    is_request: bool = False
    result: Any = None
    error: Any = None

    @classmethod
    def parse(cls, obj: Any) -> Message:
        if not isinstance(obj, Mapping):
            raise ProtocolError(PARSE_ERROR, "message must be a JSON object")
        msg_id = obj.get("id")
        if msg_id is not None and (
            isinstance(msg_id, bool)
            or not isinstance(msg_id, (str, int, float))
            or (isinstance(msg_id, float) and not math.isfinite(msg_id))
        ):
            raise ProtocolError(INVALID_REQUEST, "id must be a string or a finite number")
        method = obj.get("method")
        if method is None:
            if "result" in obj or "error" in obj:
                return cls(None, None, msg_id, False, obj.get("result"), obj.get("error"))
            raise ProtocolError(INVALID_REQUEST, "message has no method")
        if not isinstance(method, str):
            raise ProtocolError(INVALID_REQUEST, "method must be a string")
        return cls(method, obj.get("params"), msg_id, "id" in obj and msg_id is not None)


def response(msg_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def error_response(msg_id: Any, err: ProtocolError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": err.to_json()}


def notification(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def output_notification(
    process_id: str, seq: int, stream: str | None, chunk: Any
) -> dict[str, Any]:
    """``process/output``; ``chunk`` is already encoded (see :func:`encode_bytes`)."""
    params = {"processId": process_id, "seq": seq, "stream": stream, "chunk": chunk}
    return notification("process/output", params)


def encode_line(message: Mapping[str, Any]) -> bytes:
    """One message as a line of the text transport (``codex-exec serve``).

    ``process/output`` is written by hand: base64 needs no JSON escaping, and
    ``json.dumps`` would scan every byte of a 64 KiB chunk's 87 KiB of base64 (a third
    of the server's time in a flood). Any other message goes through ``json.dumps``."""
    if message.get("method") == "process/output":
        params = message["params"]
        chunk = params["chunk"]
        if isinstance(chunk, str):
            return _output_line(
                params["processId"], params["seq"], params["stream"], chunk.encode("ascii")
            )
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def output_line(process_id: str, seq: int, stream: str | None, data: bytes) -> bytes:
    """``process/output`` as a stdio line, straight from the chunk's bytes.

    The same line :func:`encode_line` makes from an :func:`output_notification`, with one
    base64 encode and one join: no ``str`` round trip of the base64, no intermediate
    concatenations (each a copy of the whole chunk)."""
    return _output_line(process_id, seq, stream, b64encode(data))


def _output_line(process_id: str, seq: int, stream: str | None, base64: bytes) -> bytes:
    """The ``process/output`` line around a chunk already in base64."""
    head = json.dumps(
        {"processId": process_id, "seq": seq, "stream": stream}, separators=(",", ":")
    )  # fmt: skip
    return b"".join((
        b'{"jsonrpc":"2.0","method":"process/output","params":',
        head[:-1].encode(),
        b',"chunk":"',
        base64,
        b'"}}\n',
    ))  # fmt: skip
