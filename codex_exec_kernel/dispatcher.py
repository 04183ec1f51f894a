"""The one dispatcher behind every transport.

A transport parses bytes into a message (plus binary buffers, on a comm), hands it to
:meth:`Dispatcher.handle` on the table's loop, and gets replies back through its
connection's ``send(message, buffers)``. Everything else — the handshake, validation,
routing, error codes, notifications and their encoding — lives here once, so the
stdio server and the kernel comm cannot drift apart.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import platform
import pwd
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ._version import __version__
from .process import Event, ManagedProcess
from .protocol import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    LIMIT_REACHED,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PROTOCOL_VERSION,
    AckParams,
    InitializeParams,
    Message,
    ProcessRef,
    ProtocolError,
    ReadParams,
    ResizeParams,
    SignalParams,
    StartParams,
    SubscribeParams,
    TerminateParams,
    WriteParams,
    encode_bytes,
    error_response,
    invalid_params,
    notification,
    response,
)
from .table import ProcessTable

log = logging.getLogger("codex_exec_kernel")

Buffers = Sequence[bytes | memoryview]


class Connection(Protocol):
    """What a transport provides: a way to send one message with its buffers."""

    #: True when bytes travel as binary buffers (comm), False for base64 (stdio).
    binary: bool

    def send(self, message: dict[str, Any], buffers: list[bytes]) -> None: ...


@dataclass
class Reply:
    """A handler's answer, with buffers and an action to run right after it is sent."""

    result: Any
    buffers: list[bytes] | None = None
    after: Callable[[], None] | None = None


Handler = Callable[["ConnectionState", Any, Buffers], Any]


class ConnectionState:
    """One connection as the dispatcher sees it: handshake state, flow control, congestion."""

    def __init__(self, dispatcher: Dispatcher, conn: Connection) -> None:
        self.dispatcher = dispatcher
        self.table = dispatcher.table
        self.conn = conn
        self.binary = conn.binary
        self.initialize_done = False
        self.initialized = False
        self.client_name = ""
        self.flow_control = False
        self.closed = False
        self._congested = False

    # -- Subscriber protocol (see process.Subscriber)
    @property
    def congested(self) -> bool:
        return self._congested

    def set_congested(self, value: bool) -> None:
        """Transports call this when their outgoing buffer passes a high/low water mark."""
        if value == self._congested:
            return
        self._congested = value
        for proc in list(self.table.processes.values()):
            if self in proc.subscribers:
                proc.recheck_flow()

    def deliver(self, process_id: str, event: Event) -> None:
        if self.closed:
            return
        if event.kind == "output":
            buffers: list[bytes] | None = [] if self.binary else None
            params = {
                "processId": process_id,
                "seq": event.seq,
                "stream": event.stream,
                "chunk": encode_bytes(event.data, buffers),
            }
            self.send(notification("process/output", params), buffers or [])
        elif event.kind == "exited":
            params = {
                "processId": process_id,
                "seq": event.seq,
                "exitCode": event.exit_code,
                "signal": event.signal,
            }
            self.send(notification("process/exited", params), [])
        else:
            self.send(
                notification("process/closed", {"processId": process_id, "seq": event.seq}), []
            )

    def send(self, message: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        if self.closed:
            return
        try:
            self.conn.send(message, buffers or [])
        except Exception:  # a broken transport must not break the table
            log.exception("codex-exec: sending on a connection failed")

    def __hash__(self) -> int:
        return id(self)


class Dispatcher:
    """Routes protocol messages to the process table (and registered extensions)."""

    def __init__(self, table: ProcessTable, server_name: str = "codex-exec") -> None:
        self.table = table
        self.server_name = server_name
        self.session_id = uuid.uuid4().hex
        self.connections: set[ConnectionState] = set()
        self.handlers: dict[str, Handler] = {
            "process/start": self._start,
            "process/read": self._read,
            "process/write": self._write,
            "process/closeStdin": self._close_stdin,
            "process/resize": self._resize,
            "process/signal": self._signal,
            "process/terminate": self._terminate,
            "process/list": self._list,
            "process/subscribe": self._subscribe,
            "process/unsubscribe": self._unsubscribe,
            "process/ack": self._ack,
        }
        self._tasks: set[asyncio.Task[Any]] = set()

    def register(self, method: str, handler: Handler) -> None:
        """Add a method (e.g. ``session/*``). Gated by the handshake like ``process/*``.

        The handler returns the result, or a :class:`Reply` (with buffers), or an
        awaitable of either."""
        self.handlers[method] = handler

    # ------------------------------------------------------------------ connections
    def connect(self, conn: Connection) -> ConnectionState:
        state = ConnectionState(self, conn)
        self.connections.add(state)
        return state

    def disconnect(self, state: ConnectionState) -> None:
        """The connection is gone: unsubscribe it everywhere; its processes go on."""
        state.closed = True
        self.connections.discard(state)
        self.table.drop_subscriber(state)

    # ------------------------------------------------------------------ entry points
    def handle_text(self, state: ConnectionState, text: str | bytes) -> None:
        """A line of JSON from a text transport."""
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            state.send(error_response(None, ProtocolError(PARSE_ERROR, f"not JSON: {exc}")))
            return
        self.handle(state, obj, ())

    def handle(self, state: ConnectionState, obj: Any, buffers: Buffers) -> None:
        """One parsed message. Must run on the table's loop."""
        try:
            msg = Message.parse(obj)
        except ProtocolError as err:
            msg_id = obj.get("id") if isinstance(obj, dict) else None
            if not isinstance(msg_id, (str, int)) or isinstance(msg_id, bool):
                msg_id = None
            state.send(error_response(msg_id, err))
            return
        if msg.method is None:
            return  # a response from the client: we never send requests, nothing to match
        try:
            outcome = self._route(state, msg, buffers)
        except ProtocolError as err:
            self._answer_error(state, msg, err)
            return
        except Exception as exc:
            log.exception("codex-exec: %s failed", msg.method)
            self._answer_error(state, msg, ProtocolError(INTERNAL_ERROR, f"internal error: {exc}"))
            return
        if asyncio.iscoroutine(outcome) or isinstance(outcome, asyncio.Future):
            task = asyncio.ensure_future(self._finish(state, msg, outcome), loop=self.table.loop)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._answer(state, msg, outcome)

    async def _finish(self, state: ConnectionState, msg: Message, outcome: Awaitable[Any]) -> None:
        try:
            result = await outcome
        except ProtocolError as err:
            self._answer_error(state, msg, err)
            return
        except Exception as exc:
            log.exception("codex-exec: %s failed", msg.method)
            self._answer_error(state, msg, ProtocolError(INTERNAL_ERROR, f"internal error: {exc}"))
            return
        self._answer(state, msg, result)

    def _answer(self, state: ConnectionState, msg: Message, result: Any) -> None:
        reply = result if isinstance(result, Reply) else Reply(result)
        if msg.is_request:
            state.send(response(msg.id, reply.result), reply.buffers or [])
        if reply.after is not None:
            reply.after()

    def _answer_error(self, state: ConnectionState, msg: Message, err: ProtocolError) -> None:
        if msg.is_request:
            state.send(error_response(msg.id, err))
        else:
            log.warning("codex-exec: notification %s rejected: %s", msg.method, err.message)

    def _route(self, state: ConnectionState, msg: Message, buffers: Buffers) -> Any:
        method = msg.method
        assert method is not None
        if method == "initialize":
            return self._initialize(state, msg.params)
        if method == "initialized":
            if not state.initialize_done:
                raise ProtocolError(INVALID_REQUEST, "initialized before initialize")
            state.initialized = True
            return {}
        handler = self.handlers.get(method)
        if handler is None:
            raise ProtocolError(METHOD_NOT_FOUND, f"unknown method {method!r}")
        if not state.initialize_done:
            raise ProtocolError(
                INVALID_REQUEST, f"{method} before the handshake: send initialize first"
            )
        if not state.initialized:
            raise ProtocolError(
                INVALID_REQUEST,
                f"{method} before the handshake finished: send the initialized notification",
            )
        return handler(state, msg.params, buffers)

    # ------------------------------------------------------------------ handshake
    def _initialize(self, state: ConnectionState, params: Any) -> dict[str, Any]:
        parsed = InitializeParams.parse(params)
        if state.initialize_done:
            raise ProtocolError(INVALID_REQUEST, "initialize was already called")
        state.initialize_done = True
        state.client_name = parsed.client_name
        state.flow_control = parsed.flow_control
        return {
            "protocolVersion": PROTOCOL_VERSION,
            "sessionId": self.session_id,
            "server": {"name": self.server_name, "version": __version__},
            "environment": server_environment(self.table.default_cwd),
        }

    # ------------------------------------------------------------------ process methods
    def _start(self, state: ConnectionState, params: Any, buffers: Buffers) -> Reply:
        parsed = StartParams.parse(params)
        proc = self.table.start(parsed.spec, parsed.process_id, parsed.title)
        proc.subscribe(state, 0)
        return Reply({"processId": proc.process_id, "pid": proc.backend.pid})

    async def _read(self, state: ConnectionState, params: Any, buffers: Buffers) -> Reply:
        parsed = ReadParams.parse(params)
        proc = self.table.require(parsed.process_id)
        deadline = self.table.loop.time() + parsed.wait_ms / 1000
        while True:
            result = proc.read(parsed.after_seq, parsed.max_bytes)
            ready = (
                result["chunks"]
                or proc.closed
                or (proc.exited and proc.has_event_after(parsed.after_seq))
            )
            remaining = deadline - self.table.loop.time()
            if ready or remaining <= 0:
                break
            try:
                await asyncio.wait_for(proc.wait_event(), remaining)
            except asyncio.TimeoutError:
                pass
        out: list[bytes] | None = [] if state.binary else None
        result["chunks"] = [
            {"seq": e.seq, "stream": e.stream, "chunk": encode_bytes(e.data, out)}
            for e in result["chunks"]
        ]
        return Reply(result, out)

    def _write(self, state: ConnectionState, params: Any, buffers: Buffers) -> dict[str, Any]:
        parsed = WriteParams.parse(params, buffers)
        if len(parsed.chunk) > self.table.max_write_bytes:
            raise ProtocolError(
                LIMIT_REACHED,
                f"write of {len(parsed.chunk)} bytes exceeds the limit "
                f"of {self.table.max_write_bytes}",
            )
        proc = self.table.get(parsed.process_id)
        if proc is None:
            return {"status": "unknownProcess"}
        if parsed.write_id is not None and not proc.remember_write(parsed.write_id):
            return {"status": "accepted"}
        proc.note_input()
        ok = proc.backend.write(parsed.chunk)
        return {"status": "accepted" if ok else "stdinClosed"}

    def _close_stdin(self, state: ConnectionState, params: Any, buffers: Buffers) -> dict[str, Any]:
        parsed = ProcessRef.parse(params)
        proc = self.table.get(parsed.process_id)
        if proc is None:
            return {"status": "unknownProcess"}
        return {"status": "accepted" if proc.backend.close_stdin() else "stdinClosed"}

    def _resize(self, state: ConnectionState, params: Any, buffers: Buffers) -> dict[str, Any]:
        parsed = ResizeParams.parse(params)
        proc = self.table.require(parsed.process_id)
        if not proc.info.tty:
            raise invalid_params(f"process {parsed.process_id!r} has no terminal to resize")
        if not proc.closed:
            proc.backend.resize(parsed.rows, parsed.cols)
        return {}

    def _signal(self, state: ConnectionState, params: Any, buffers: Buffers) -> dict[str, Any]:
        parsed = SignalParams.parse(params)
        proc = self.table.get(parsed.process_id)
        if proc is not None and not proc.closed:
            proc.backend.signal(parsed.signum)
        return {}

    def _terminate(self, state: ConnectionState, params: Any, buffers: Buffers) -> dict[str, Any]:
        parsed = TerminateParams.parse(params)
        proc = self.table.get(parsed.process_id)
        if proc is None or proc.closed:
            return {"running": False}
        running = proc.backend.terminate(parsed.grace_ms / 1000)
        return {"running": running and not proc.exited}

    def _list(self, state: ConnectionState, params: Any, buffers: Buffers) -> dict[str, Any]:
        return {"processes": self.table.list()}

    def _subscribe(self, state: ConnectionState, params: Any, buffers: Buffers) -> Reply:
        parsed = SubscribeParams.parse(params)
        proc = self.table.require(parsed.process_id)
        # Reply first, then replay: a client learns nextSeq before the replayed events,
        # and nothing can slip in between since both happen in this one loop callback.
        return Reply(
            {"nextSeq": proc.next_seq}, after=lambda: proc.subscribe(state, parsed.after_seq)
        )

    def _unsubscribe(self, state: ConnectionState, params: Any, buffers: Buffers) -> dict[str, Any]:
        parsed = ProcessRef.parse(params)
        proc = self.table.require(parsed.process_id)
        proc.unsubscribe(state)
        return {}

    def _ack(self, state: ConnectionState, params: Any, buffers: Buffers) -> dict[str, Any]:
        parsed = AckParams.parse(params)
        proc: ManagedProcess | None = self.table.get(parsed.process_id)
        if proc is not None:
            proc.ack(state, parsed.seq)
        return {}


def server_environment(cwd: str | None = None) -> dict[str, Any]:
    """What a client needs to present a shell: the user's shell, home, host."""
    shell = os.environ.get("SHELL")
    if not shell:
        try:
            shell = pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
        except KeyError:
            shell = "/bin/sh"
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return {
        "shell": shell,
        "cwd": cwd or os.getcwd(),
        "home": os.path.expanduser("~"),
        "hostname": socket.gethostname(),
        "platform": sys.platform,
        "user": user,
        "machine": platform.machine(),
    }
