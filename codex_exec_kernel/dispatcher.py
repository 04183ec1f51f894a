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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ._version import __version__
from .process import Event, ManagedProcess
from .protocol import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PROTOCOL_VERSION,
    AckParams,
    Buffers,
    InitializeParams,
    Message,
    NoParams,
    ProcessRef,
    ProtocolError,
    ReadParams,
    ResizeParams,
    SignalParams,
    SnapshotParams,
    StartParams,
    SubscribeParams,
    TerminateParams,
    WriteParams,
    encode_bytes,
    error_response,
    notification,
    output_notification,
    response,
)
from .spawn import SpawnError
from .table import ProcessTable

log = logging.getLogger("codex_exec_kernel")



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


P = TypeVar("P")
P_co = TypeVar("P_co", covariant=True)


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
        #: Requests whose handler is still running (awaiting); the stdio transport stops
        #: reading requests past ``StdioServer.max_requests_in_flight``.
        self.in_flight = 0
        #: Called when one of those finishes (the transport may read again).
        self.on_request_done: Callable[[], None] | None = None

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
            chunk = encode_bytes(event.data, buffers)
            self.send(output_notification(process_id, event.seq, event.stream, chunk), buffers)
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
        self.table.owner.check()
        if self.closed:
            return
        try:
            self.conn.send(message, buffers or [])
        except Exception:  # a broken transport must not break the table
            log.exception("codex-exec: sending on a connection failed")

    def __hash__(self) -> int:
        return id(self)


class ParamsType(Protocol[P_co]):
    """A params dataclass: ``parse`` validates a message's params (``-32602``)."""

    def parse(self, params: Any, buffers: Buffers = ()) -> P_co: ...


@dataclass(frozen=True)
class Route:
    """A method: how its params decode, and the handler that takes them decoded."""

    params: ParamsType[Any]
    handler: Callable[[ConnectionState, Any], Any]


class Dispatcher:
    """Routes protocol messages to the process table (and registered extensions)."""

    def __init__(self, table: ProcessTable, server_name: str = "codex-exec") -> None:
        self.table = table
        self.server_name = server_name
        self.session_id = uuid.uuid4().hex
        self.connections: set[ConnectionState] = set()
        self.routes: dict[str, Route] = {}
        self.register("process/start", StartParams, self._start)
        self.register("process/read", ReadParams, self._read)
        self.register("process/write", WriteParams, self._write)
        self.register("process/closeStdin", ProcessRef, self._close_stdin)
        self.register("process/resize", ResizeParams, self._resize)
        self.register("process/signal", SignalParams, self._signal)
        self.register("process/terminate", TerminateParams, self._terminate)
        self.register("process/list", NoParams, self._list)
        self.register("process/subscribe", SubscribeParams, self._subscribe)
        self.register("process/unsubscribe", ProcessRef, self._unsubscribe)
        self.register("process/ack", AckParams, self._ack)
        self.register("process/snapshot", SnapshotParams, self._snapshot)
        self._tasks: set[asyncio.Task[Any]] = set()

    def register(
        self, method: str, params: ParamsType[P], handler: Callable[[ConnectionState, P], Any]
    ) -> None:
        """Add a method (e.g. ``session/*``). Gated by the handshake like ``process/*``.

        The router decodes the params with ``params.parse`` before the handler runs, so
        a handler sees only valid, typed params. It returns the result, or a
        :class:`Reply` (with buffers), or an awaitable of either."""
        self.routes[method] = Route(params, handler)

    # ------------------------------------------------------------------ connections
    def connect(self, conn: Connection) -> ConnectionState:
        self.table.owner.check()
        state = ConnectionState(self, conn)
        self.connections.add(state)
        return state

    def disconnect(self, state: ConnectionState) -> None:
        """The connection is gone: unsubscribe it everywhere; its processes go on."""
        self.table.owner.check()
        state.closed = True
        self.connections.discard(state)
        self.table.drop_subscriber(state)

    # ------------------------------------------------------------------ entry points
    def handle_text(self, state: ConnectionState, text: str | bytes | bytearray) -> None:
        """A line of JSON from a text transport."""
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            state.send(error_response(None, ProtocolError(PARSE_ERROR, f"not JSON: {exc}")))
            return
        except RecursionError:
            err = ProtocolError(PARSE_ERROR, "not JSON this server accepts: nested too deeply")
            state.send(error_response(None, err))
            return
        self.handle(state, obj, ())

    def handle(self, state: ConnectionState, obj: Any, buffers: Buffers) -> None:
        """One parsed message. Must run on the table's loop (checked in test runs)."""
        self.table.owner.check()
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
        except Exception as exc:
            self._answer_error(state, msg, exc)
            return
        if asyncio.iscoroutine(outcome) or isinstance(outcome, asyncio.Future):
            task = asyncio.ensure_future(self._finish(state, msg, outcome), loop=self.table.loop)
            self._tasks.add(task)
            state.in_flight += 1
            task.add_done_callback(lambda t: self._finished(state, t))
        else:
            self._answer(state, msg, outcome)

    def _finished(self, state: ConnectionState, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        state.in_flight -= 1
        if state.on_request_done is not None and not state.closed:
            state.on_request_done()

    async def _finish(self, state: ConnectionState, msg: Message, outcome: Awaitable[Any]) -> None:
        try:
            result = await outcome
        except Exception as exc:
            self._answer_error(state, msg, exc)
            return
        self._answer(state, msg, result)

    def _answer(self, state: ConnectionState, msg: Message, result: Any) -> None:
        reply = result if isinstance(result, Reply) else Reply(result)
        if msg.is_request:
            state.send(response(msg.id, reply.result), reply.buffers or [])
        if reply.after is not None:
            reply.after()

    def _answer_error(self, state: ConnectionState, msg: Message, exc: Exception) -> None:
        err = protocol_error_of(exc, msg.method)
        if msg.is_request:
            state.send(error_response(msg.id, err))
        else:
            log.warning("codex-exec: notification %s rejected: %s", msg.method, err.message)

    def _route(self, state: ConnectionState, msg: Message, buffers: Buffers) -> Any:
        method = msg.method
        assert method is not None
        if method == "initialize":
            return self._initialize(state, InitializeParams.parse(msg.params))
        if method == "initialized":
            if not state.initialize_done:
                raise ProtocolError(INVALID_REQUEST, "initialized before initialize")
            state.initialized = True
            return {}
        route = self.routes.get(method)
        if route is None:
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
        return route.handler(state, route.params.parse(msg.params, buffers))

    # ------------------------------------------------------------------ handshake
    def _initialize(self, state: ConnectionState, params: InitializeParams) -> dict[str, Any]:
        if state.initialize_done:
            raise ProtocolError(INVALID_REQUEST, "initialize was already called")
        state.initialize_done = True
        state.client_name = params.client_name
        state.flow_control = params.flow_control
        return {
            "protocolVersion": PROTOCOL_VERSION,
            "sessionId": self.session_id,
            "server": {"name": self.server_name, "version": __version__},
            "environment": server_environment(self.table.child_cwd()),
        }

    # ------------------------------------------------------------------ process methods
    # Each is a one-liner over ManagedProcess/ProcessTable: the rules live there.
    def _start(self, state: ConnectionState, params: StartParams) -> dict[str, Any]:
        proc = self.table.start(params.spec, params.process_id, params.title)
        proc.subscribe(state, 0)
        return {"processId": proc.process_id, "pid": proc.pid}

    def _read(self, state: ConnectionState, params: ReadParams) -> Reply | Awaitable[Reply]:
        proc = self.table.require(params.process_id)
        if params.wait_ms == 0 or proc.readable(params.after_seq):
            # Answered in this loop turn: no task, and the transport sees the answer's
            # size before it reads the next request.
            return self._read_reply(state, proc.read(params.after_seq, params.max_bytes))
        return self._read_waiting(state, proc, params)

    async def _read_waiting(
        self, state: ConnectionState, proc: ManagedProcess, params: ReadParams
    ) -> Reply:
        result = await proc.read_wait(params.after_seq, params.max_bytes, params.wait_ms / 1000)
        return self._read_reply(state, result)

    def _read_reply(self, state: ConnectionState, result: dict[str, Any]) -> Reply:
        out: list[bytes] | None = [] if state.binary else None
        result["chunks"] = [
            {"seq": e.seq, "stream": e.stream, "chunk": encode_bytes(e.data, out)}
            for e in result["chunks"]
        ]
        return Reply(result, out)

    def _write(self, state: ConnectionState, params: WriteParams) -> dict[str, Any]:
        self.table.check_write_size(len(params.chunk))
        proc = self.table.get(params.process_id)
        if proc is None:
            return {"status": "unknownProcess"}
        return {"status": proc.write(params.chunk, params.write_id)}

    def _close_stdin(self, state: ConnectionState, params: ProcessRef) -> dict[str, Any]:
        proc = self.table.get(params.process_id)
        return {"status": proc.close_stdin() if proc is not None else "unknownProcess"}

    def _resize(self, state: ConnectionState, params: ResizeParams) -> dict[str, Any]:
        self.table.require(params.process_id).resize(params.rows, params.cols)
        return {}

    def _signal(self, state: ConnectionState, params: SignalParams) -> dict[str, Any]:
        proc = self.table.get(params.process_id)
        if proc is not None:
            proc.send_signal(params.signum)
        return {}

    def _terminate(self, state: ConnectionState, params: TerminateParams) -> dict[str, Any]:
        proc = self.table.get(params.process_id)
        running = proc is not None and proc.terminate(params.grace_ms / 1000)
        return {"running": running}

    def _list(self, state: ConnectionState, params: NoParams) -> dict[str, Any]:
        return {"processes": self.table.list()}

    def _subscribe(self, state: ConnectionState, params: SubscribeParams) -> Reply:
        proc = self.table.require(params.process_id)
        # Reply first, then replay: a client learns nextSeq before the replayed events,
        # and nothing can slip in between since both happen in this one loop callback.
        return Reply(
            {"nextSeq": proc.next_seq}, after=lambda: proc.subscribe(state, params.after_seq)
        )

    async def _snapshot(self, state: ConnectionState, params: SnapshotParams) -> Reply:
        proc = self.table.require(params.process_id)
        result = await proc.snapshot(params.rows, params.cols)
        out: list[bytes] | None = [] if state.binary else None
        result["chunk"] = encode_bytes(result["chunk"], out)
        return Reply(result, out)

    def _unsubscribe(self, state: ConnectionState, params: ProcessRef) -> dict[str, Any]:
        self.table.require(params.process_id).unsubscribe(state)
        return {}

    def _ack(self, state: ConnectionState, params: AckParams) -> dict[str, Any]:
        proc = self.table.get(params.process_id)
        if proc is not None:
            proc.ack(state, params.seq)
        return {}


def protocol_error_of(exc: BaseException, method: str | None = None) -> ProtocolError:
    """The one mapping of exceptions to protocol errors.

    A ``ProtocolError`` is answered as it is; a child that could not start
    (:class:`SpawnError`, the OS layer's error) is ``-32603`` with its reason; anything
    else is a bug of ours, logged with its traceback and answered ``-32603``."""
    if isinstance(exc, ProtocolError):
        return exc
    if isinstance(exc, SpawnError):
        return ProtocolError(INTERNAL_ERROR, exc.message)
    log.error("codex-exec: %s failed", method, exc_info=exc)
    return ProtocolError(INTERNAL_ERROR, f"internal error: {exc}")


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
