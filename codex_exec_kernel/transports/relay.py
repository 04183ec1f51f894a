"""``codex-exec connect``: the stdio protocol, relayed to the ``codex.exec`` comm of a
kernel that runs elsewhere.

The stdio side is :class:`~codex_exec_kernel.transports.stdio.StdioServer` itself
(same framing, line limit and output fast path as ``codex-exec serve``); in place of
a dispatcher it is given a :class:`Relay`, which forwards every message to the
kernel over a :class:`~codex_exec_kernel.client.kernel_link.KernelLink` and turns
the kernel's answers back into stdio lines (binary buffers become base64). The
kernel's dispatcher does all validation, so error codes are the kernel's own.

What the relay adds, and why:

* **Flow control end to end.** The relay always says ``flowControl: true`` to the
  kernel. A flow-controlled peer's acks pass through; for a peer that did not ask
  for it, the relay acks output itself once it is written to stdout and stdout is
  not congested. Either way the kernel stops a process after one window, so the
  relay never holds more than the window plus the stdout high-water mark.
* **Reconnects** (websocket links). When the websocket drops, the relay reconnects
  with backoff, closes the old comm (its unacked window would otherwise stall the
  processes), opens a new one, repeats the peer's handshake and re-subscribes each
  followed process from the last seq it delivered: the kernel replays the retained
  events after it (the refill ``process/read`` would give, without the gap between a
  read and a subscribe), and the relay drops any seq it already delivered, so the
  peer sees every byte once. Every ``process/write`` carries a ``writeId`` (the
  relay adds one when the peer did not), so resending it is harmless. Requests in
  flight when the link dropped are resent when repeating them is harmless, else
  answered with -32603 saying that the call may or may not have run.
* **Clear failure.** A kernel without the extension, a refused token, an unknown
  kernel, a kernel that dies: one line on stderr and exit status 1, never a hang.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from traitlets import Float, Int
from traitlets.config import Application, Configurable

from ..client.kernel_link import KernelLink, LinkError, LinkLost
from ..protocol import (
    INTERNAL_ERROR,
    PARSE_ERROR,
    Message,
    ProtocolError,
    error_response,
)
from .stdio import StdioServer

log = logging.getLogger("codex_exec_kernel")

#: Events of a process, each with a ``seq``.
EVENTS = frozenset({"process/output", "process/exited", "process/closed"})
#: Requests that may be sent again after a reconnect without changing what they do.
#: (``process/write`` is among them because the relay gives every write a writeId.)
REPEATABLE = frozenset({
    "initialize", "process/read", "process/write", "process/list", "process/subscribe",
    "process/unsubscribe", "process/resize", "process/ack", "process/snapshot", "session/list",
    "session/logs",
})  # fmt: skip


@dataclass
class Followed:
    """A process whose events the peer receives."""

    #: The newest seq delivered to the peer.
    last_seq: int = 0
    #: After a reconnect: events up to this seq were delivered already.
    skip_upto: int = 0


@dataclass
class Pending:
    """A peer request sent to the kernel and not answered yet."""

    message: dict[str, Any]
    #: For initialize: whether the peer itself asked for flow control.
    peer_flow_control: bool = False
    #: Whether it went out on a link (then a reconnect must resend it or answer it).
    sent: bool = False


def _key(msg_id: Any) -> Any:
    """Ids the kernel echoes back (strings and integers), as dict keys; else None."""
    if isinstance(msg_id, str) or (isinstance(msg_id, int) and not isinstance(msg_id, bool)):
        return (type(msg_id).__name__, msg_id)
    return None


def _to_base64(value: Any, buffers: list[bytes]) -> Any:
    """Replace every ``{"buffer": i}`` bytes field by the base64 string stdio uses."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("buffer"), int):
            index = value["buffer"]
            if 0 <= index < len(buffers):
                return base64.b64encode(buffers[index]).decode("ascii")
        return {k: _to_base64(v, buffers) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_base64(v, buffers) for v in value]
    return value


class RelayState:
    """The stdio connection, as :class:`StdioServer` expects a dispatcher's state."""

    def __init__(self, relay: Relay, conn: Any) -> None:
        self.relay = relay
        self.conn = conn
        self.congested = False
        #: Requests are forwarded, not run here: the kernel's own dispatcher bounds what
        #: it runs at once, and the stdio output's high-water mark bounds what comes back.
        self.in_flight = 0
        self.on_request_done: Any = None

    def send(self, message: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        self.conn.send(message, buffers or [])

    def set_congested(self, value: bool) -> None:
        self.congested = value
        if not value:
            self.relay.flush_acks()


class Relay(Configurable):
    """Forwards one stdio connection to one kernel's ``codex.exec`` comm."""

    reconnect_timeout = Float(
        60.0, config=True,
        help="Seconds to keep trying to reconnect a dropped websocket before giving up.",
    )  # fmt: skip
    backoff_max = Float(5.0, config=True, help="Longest pause between two reconnect attempts.")
    probe_grace = Float(
        2.0, config=True,
        help="Seconds to wait for the comm's first answer after the kernel reported idle; "
        "past that the kernel is taken to have no codex.exec target.",
    )  # fmt: skip

    ack_bytes = Int(
        1024 * 1024, config=True,
        help="For a peer without flow control, the relay acks output past this many bytes "
        "at once (keep it well under the kernel's ProcessTable.flow_control_window)...",
    )  # fmt: skip
    ack_delay = Float(0.05, config=True, help="...and any smaller amount after this many seconds.")

    def __init__(self, link: KernelLink, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.link = link
        self.state: RelayState | None = None
        self.followed: dict[str, Followed] = {}
        self.pending: dict[Any, Pending] = {}
        #: Peer messages that arrived while the link was down.
        self.outbox: list[dict[str, Any]] = []
        self.connected = False
        #: The handshake the peer made, repeated on each new comm.
        self.init_params: dict[str, Any] | None = None
        self.peer_initialized = False
        self.peer_flow_control = False
        self._unacked: dict[str, int] = {}
        self._unacked_bytes = 0
        self._ack_timer: asyncio.TimerHandle | None = None
        self._nonce = uuid.uuid4().hex[:12]
        self._counter = 0

    # ------------------------------------------------------------------ link side
    async def open(self) -> None:
        """Reach the kernel and check that it serves ``codex.exec`` (else LinkError)."""
        await self.link.start()
        await self.link.open_checked(self.probe_grace)
        self.connected = True

    async def run(self) -> None:
        """Move the kernel's messages to stdio until the link fails for good."""
        while True:
            try:
                found = await self.link.receive()
            except LinkLost as exc:
                await self._reconnect(exc)
                continue
            if found.kind == "comm":
                self._from_kernel(found.data, found.buffers)
            elif found.kind == "closed":
                raise LinkError(f"the kernel {self.link.where} closed the codex.exec comm")

    def _private_id(self) -> str:
        self._counter += 1
        return f"codex-exec-connect/{self._nonce}/{self._counter}"

    def _is_private(self, msg_id: Any) -> bool:
        return isinstance(msg_id, str) and msg_id.startswith(f"codex-exec-connect/{self._nonce}/")

    async def _reconnect(self, why: LinkLost) -> None:
        self.connected = False
        if not self.link.can_reconnect:
            raise LinkError(str(why))
        log.warning("codex-exec connect: %s; reconnecting", why)
        stale = [self.link.comm_id]  # comms whose subscriptions stall until closed
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_timeout
        delay = 0.05
        while True:
            try:
                await self.link.reconnect()
                await self._resume()
                break
            except LinkLost as exc:
                if self.link.comm_id not in stale:
                    stale.append(self.link.comm_id)
                if loop.time() + delay > deadline:
                    raise LinkError(f"could not reconnect to {self.link.where} within "
                                    f"{self.reconnect_timeout:g} s: {exc}")  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
        # Only now close the old comms: while open, their (stalled) subscriptions hold
        # each process to the flow-control window, so nothing runs past what the kernel
        # retains before the new subscription takes over. The kernel serves these in order.
        for comm_id in stale:
            self.link.close_comm(comm_id)
        self.connected = True
        for key, pending in list(self.pending.items()):
            method = pending.message.get("method")
            if not pending.sent:
                continue  # still in the outbox: sent below
            if method in REPEATABLE:
                self.link.send(pending.message)
            else:
                del self.pending[key]
                err = ProtocolError(INTERNAL_ERROR, f"the connection to the kernel dropped "
                                    f"before {method} was answered: it may or may not have run")
                self._to_peer(error_response(pending.message.get("id"), err))
        outbox, self.outbox = self.outbox, []
        for message in outbox:
            self._forward(message)

    async def _resume(self) -> None:
        """On a new connection: a new comm, the peer's handshake, its subscriptions."""
        await self.link.open_checked(self.probe_grace)
        if self.init_params is not None:
            await self.link.call({"jsonrpc": "2.0", "id": self._private_id(),
                                  "method": "initialize", "params": self.init_params},
                                 self.probe_grace)  # fmt: skip
            if self.peer_initialized:
                self.link.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            for process_id, followed in self.followed.items():
                followed.skip_upto = followed.last_seq
                self.link.send({"jsonrpc": "2.0", "id": self._private_id(),
                                "method": "process/subscribe",
                                "params": {"processId": process_id,
                                           "afterSeq": followed.last_seq}})  # fmt: skip

    # ------------------------------------------------------------------ kernel → peer
    def _from_kernel(self, data: dict[str, Any], buffers: list[bytes]) -> None:
        if buffers:
            data = _to_base64(data, buffers)
        method = data.get("method")
        if method is not None:
            params = data.get("params") or {}
            if method in EVENTS and not self._track_event(params, method):
                return
            self._to_peer(data)
            if method == "process/output" and not self.peer_flow_control:
                chunk = params.get("chunk")
                size = len(chunk) * 3 // 4 if isinstance(chunk, str) else 0
                self._ack(params.get("processId"), params.get("seq"), size)
            return
        msg_id = data.get("id")
        if self._is_private(msg_id):
            return  # the answer to a re-subscribe after a reconnect
        pending = self.pending.pop(_key(msg_id), None)
        if pending is not None and "result" in data:
            self._track_result(pending, data["result"])
        self._to_peer(data)

    def _track_event(self, params: dict[str, Any], method: str) -> bool:
        """Record a process event; False when it was delivered already (a replay)."""
        process_id, seq = params.get("processId"), params.get("seq")
        if not isinstance(process_id, str) or not isinstance(seq, int):
            return True
        followed = self.followed.setdefault(process_id, Followed())
        if seq <= followed.skip_upto:
            return False
        followed.last_seq = max(followed.last_seq, seq)
        if method == "process/closed":
            self.followed.pop(process_id, None)
        return True

    def _track_result(self, pending: Pending, result: Any) -> None:
        method = pending.message.get("method")
        params = pending.message.get("params")
        if method == "initialize":
            self.init_params = params if isinstance(params, dict) else {}
            self.peer_flow_control = pending.peer_flow_control
        elif method in ("process/start", "session/attach") and isinstance(result, dict):
            if isinstance(result.get("processId"), str):
                self.followed.setdefault(result["processId"], Followed())
        elif method == "process/subscribe" and isinstance(params, dict):
            self.followed.setdefault(params["processId"], Followed())
        elif method == "process/unsubscribe" and isinstance(params, dict):
            self.followed.pop(params["processId"], None)

    def _to_peer(self, message: dict[str, Any]) -> None:
        if self.state is not None:
            self.state.send(message)

    def _ack(self, process_id: Any, seq: Any, size: int) -> None:
        """Ack on behalf of a peer that did not ask for flow control (see module doc).

        Batched: at once past ``ack_bytes`` unacknowledged, else after ``ack_delay``,
        so a flood or a typing session does not cost one control message per chunk.
        Held while stdout is congested (the peer is not reading)."""
        if not isinstance(process_id, str) or not isinstance(seq, int):
            return
        self._unacked[process_id] = seq
        self._unacked_bytes += size
        if self.state is not None and self.state.congested:
            return
        if self._unacked_bytes >= self.ack_bytes:
            self.flush_acks()
        elif self._ack_timer is None:
            loop = asyncio.get_running_loop()
            self._ack_timer = loop.call_later(self.ack_delay, self.flush_acks)

    def flush_acks(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if not self.connected or (self.state is not None and self.state.congested):
            return
        unacked, self._unacked = self._unacked, {}
        self._unacked_bytes = 0
        for process_id, seq in unacked.items():
            try:
                self.link.send({"jsonrpc": "2.0", "method": "process/ack",
                                "params": {"processId": process_id, "seq": seq}})  # fmt: skip
            except LinkLost:
                return  # a re-subscribe after the reconnect starts a new window

    # ------------------------------------------------------------------ peer → kernel
    # (what StdioServer needs of a dispatcher)
    def connect(self, conn: Any) -> RelayState:
        self.state = RelayState(self, conn)
        return self.state

    def disconnect(self, state: RelayState) -> None:
        self.state = None

    def handle_text(self, state: RelayState, text: str | bytes) -> None:
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            state.send(error_response(None, ProtocolError(PARSE_ERROR, f"not JSON: {exc}")))
            return
        if not isinstance(obj, dict):
            try:
                Message.parse(obj)
            except ProtocolError as err:
                state.send(error_response(None, err))
            return
        self._forward(self._prepare(obj))

    def _prepare(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Rewrite what the relay must (see the module doc) and note pending requests."""
        method, params = obj.get("method"), obj.get("params")
        peer_flow_control = False
        if method == "initialize" and isinstance(params, dict):
            flow = params.get("flowControl", False)
            if flow is False or flow is True:
                peer_flow_control = flow
                obj = {**obj, "params": {**params, "flowControl": True}}
        elif method == "initialized":
            self.peer_initialized = True  # repeated after a reconnect (if it was valid)
        elif method == "process/write" and isinstance(params, dict) and "writeId" not in params:
            obj = {**obj, "params": {**params, "writeId": self._private_id()}}
        key = _key(obj.get("id"))
        if key is not None and isinstance(method, str):
            self.pending[key] = Pending(obj, peer_flow_control)
        return obj

    def _forward(self, message: dict[str, Any]) -> None:
        """Send to the kernel, or keep for after the reconnect if the link is down."""
        if self.connected:
            try:
                self.link.send(message)
            except LinkLost:
                pass  # the pump sees the drop too and reconnects
            else:
                pending = self.pending.get(_key(message.get("id")))
                if pending is not None and pending.message is message:
                    pending.sent = True
                return
        self.outbox.append(message)


# ---------------------------------------------------------------------------- the app


async def _connect(link: KernelLink, config: Any) -> int:
    loop = asyncio.get_running_loop()
    proto_out = os.dup(1)
    os.dup2(2, 1)  # keep the protocol's stdout to ourselves
    relay = Relay(link, config=config)
    try:
        try:
            await relay.open()
        except LinkError as exc:
            print(f"codex-exec connect: {exc}", file=sys.stderr)
            return 1
        server = StdioServer(SimpleNamespace(loop=loop), relay, config=config)  # type: ignore[arg-type]
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, server.done.set)
        failure: list[str] = []

        async def pump() -> None:
            try:
                await relay.run()
            except LinkError as exc:
                failure.append(str(exc))
            finally:
                server.done.set()

        pumping = asyncio.ensure_future(pump())
        await server.serve(os.dup(0), proto_out)
        pumping.cancel()
        try:
            await pumping
        except asyncio.CancelledError:
            pass
        if failure:
            print(f"codex-exec connect: {failure[0]}", file=sys.stderr)
            return 1
        return 0
    finally:
        await link.close()


class ConnectApp(Application):
    """``codex-exec connect``: settings of the relay and its stdio side are traits,
    e.g. ``--Relay.reconnect_timeout=120`` or ``--StdioServer.max_message_bytes=...``."""

    name = "codex-exec-connect"
    description = "Serve the codex-exec protocol on stdio, relayed to a kernel's codex.exec comm."
    classes = [Relay, StdioServer]

    def run_link(self, link: KernelLink) -> int:
        return asyncio.run(_connect(link, self.config))


def main(args: Any, rest: list[str]) -> int:
    """Entry point of ``codex-exec connect`` (``args`` from the CLI parser)."""
    from ..client.kernel_link import WebSocketLink, ZmqLink, split_url

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app = ConnectApp()
    app.initialize(rest)
    link: KernelLink
    if args.existing:
        link = ZmqLink(args.existing, timeout=args.timeout)
    else:
        try:
            # --token, else the URL's ?token=, else the environment (keeps it out of `ps`)
            token = args.token if args.token is not None else split_url(args.url, None)[1]
            if not token:
                token = os.environ.get("JUPYTER_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
            link = WebSocketLink(args.url, token, kernel_id=args.kernel,
                                 kernel_name=args.kernel_name, keep_kernel=args.keep_kernel,
                                 timeout=args.timeout)  # fmt: skip
        except LinkError as exc:
            print(f"codex-exec connect: {exc}", file=sys.stderr)
            return 2
    return app.run_link(link)
