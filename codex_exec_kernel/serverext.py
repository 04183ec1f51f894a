"""jupyter_server extension: make kernel websockets fit for a terminal.

Two things in jupyter_server 2.x hurt an interactive terminal that talks to
the kernel over a comm:

* **Nagle's algorithm.** The kernel websocket leaves it on. A keystroke's
  reply comes back as several small frames (the comm reply, busy/idle status,
  the echoed output); with Nagle on, later frames wait for the browser's
  delayed ACK, and a comm echo took a median 44 ms instead of about 1 ms.
  We call ``set_nodelay(True)`` on every kernel websocket, and on the
  server's own websocket to a gateway when ``--gateway-url`` is used.
* **Binary frames through a gateway.** With ``--gateway-url`` the server relays
  kernel messages to Kernel Gateway as text frames only; comm bytes travel as
  binary buffers, so we make the relay keep binary frames binary (and set
  TCP_NODELAY on the server's websocket to the gateway as well).
* **IOPub rate limits.** ``ZMQChannelsWebsocketConnection`` drops IOPub
  messages past 1000 msgs/s or 1 MB/s (3 s window). Terminal output is
  already bounded by the protocol's flow control (``process/ack``), so the
  limiter only loses output. We exempt our own notifications (``comm_msg``
  whose data is a ``process/*`` notification) on the comms this websocket
  opened with target ``codex.exec``, and leave every other message (any other
  comm's, whatever its data says, and the user's configuration) to the limiter.

The hook: the handler reads its connection class from the tornado settings
(``kernel_websocket_connection_class``) for every new websocket, so at load
time we swap in a subclass of whatever class is configured. Nothing is
monkeypatched globally, and a user-configured class keeps working.

Enabled by ``etc/jupyter/jupyter_server_config.d/codex_exec_kernel.json``;
``jupyter server extension list`` shows it.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

from .protocol import COMM_TARGET

log = logging.getLogger(__name__)

#: Methods of comm notifications exempt from the IOPub rate limiter.
_OUR_NOTIFICATIONS = frozenset({"process/output", "process/exited", "process/closed"})

_WRAPPED_MARKER = "_codex_exec_nodelay"
_V1 = "v1.kernel.websocket.jupyter.org"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "codex_exec_kernel.serverext"}]


def _set_nodelay(handler: Any) -> None:
    """``set_nodelay(True)`` on a tornado websocket handler, if it is open."""
    try:
        handler.set_nodelay(True)
    except Exception:  # the socket may already be closed
        log.debug("codex-exec: set_nodelay failed", exc_info=True)


def _client_nodelay(fut: Any) -> None:
    """``set_nodelay(True)`` on a finished ``websocket_connect`` future's connection."""
    try:
        if not fut.cancelled() and fut.exception() is None:
            fut.result().protocol.set_nodelay(True)
    except Exception:
        log.debug("codex-exec: gateway set_nodelay failed", exc_info=True)


class _BinaryFrame(bytes):
    """A binary websocket frame that survives the gateway relay's ``.decode("utf8")``."""

    def decode(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self


def _gateway_binary_relay(base: type) -> dict[str, Any]:
    """Make jupyter_server's gateway relay pass binary frames through as binary.

    ``GatewayWebSocketConnection`` relays kernel messages between the browser and
    the gateway but treats every frame as text: a message with binary buffers
    (how comm bytes travel) is decoded as UTF-8 on the way in (which fails) and
    sent with a text opcode on the way out (which the peer rejects). These
    overrides keep each frame's kind.
    """

    def _connection_done(self: Any, fut: Any) -> None:
        base._connection_done(self, fut)
        ws = getattr(self, "ws", None)
        if ws is None:
            return
        _client_nodelay(fut)
        read = ws.read_message

        async def read_message(*args: Any, **kwargs: Any) -> Any:
            message = await read(*args, **kwargs)
            return _BinaryFrame(message) if isinstance(message, bytes) else message

        ws.read_message = read_message

    def _write_message(self: Any, message: Any) -> None:
        try:
            if not self.disconnected and self.ws is not None:
                self.ws.write_message(message, binary=isinstance(message, bytes))
        except Exception as exc:
            self.log.error(f"Exception writing message to websocket: {exc}")

    def handle_outgoing_message(self: Any, incoming_msg: Any, *args: Any) -> None:
        if isinstance(incoming_msg, bytes):
            try:
                self.websocket_handler.write_message(bytes(incoming_msg), binary=True)
            except Exception:
                self.log.debug("codex-exec: client closed; binary message dropped")
            return
        base.handle_outgoing_message(self, incoming_msg, *args)

    return {
        "_connection_done": _connection_done,
        "_write_message": _write_message,
        "handle_outgoing_message": handle_outgoing_message,
    }


def _codex_comms(connection: Any) -> set[str]:
    """The ids of the comms this websocket opened with target ``codex.exec``."""
    comms: set[str] | None = connection.__dict__.get("_codex_exec_comms")
    if comms is None:
        comms = connection.__dict__["_codex_exec_comms"] = set()
    return comms


def note_comm_open(connection: Any, ws_msg: Any) -> None:
    """Remember the id of a ``codex.exec`` comm this websocket's client opens.

    Only ``comm_open`` messages are decoded (a cheap substring test first), so a
    keystroke costs no extra parsing."""
    needle: Any = b"comm_open" if isinstance(ws_msg, bytes) else "comm_open"
    if needle not in ws_msg:
        return
    try:
        if getattr(connection, "subprotocol", None) == _V1:
            from jupyter_server.services.kernels.connection.base import (
                deserialize_msg_from_ws_v1,
            )

            _, parts = deserialize_msg_from_ws_v1(ws_msg)
            header, content = json.loads(parts[0]), json.loads(parts[3])
        else:
            if isinstance(ws_msg, bytes):
                from jupyter_server.services.kernels.connection.base import (
                    deserialize_binary_message,
                )

                msg = deserialize_binary_message(ws_msg)
            else:
                msg = json.loads(ws_msg)
            header, content = msg["header"], msg["content"]
        if header.get("msg_type") == "comm_open" and content.get("target_name") == COMM_TARGET:
            _codex_comms(connection).add(str(content["comm_id"]))
    except Exception:
        log.debug("codex-exec: could not read a comm_open", exc_info=True)


def _is_our_notification(connection: Any, msg: dict, msg_list: list) -> bool:
    """Whether an IOPub message is one of our notifications on one of our comms."""
    try:
        comms = _codex_comms(connection)
        if not comms:
            return False
        header = connection.get_part("header", msg.get("header"), msg_list)
        if header.get("msg_type") != "comm_msg":
            return False
        content = connection.get_part("content", msg.get("content"), msg_list)
        data = content.get("data") or {}
        return (
            content.get("comm_id") in comms
            and isinstance(data, dict)
            and data.get("method") in _OUR_NOTIFICATIONS
        )
    except Exception:
        return False


def wrap_connection_class(base: type) -> type:
    """A subclass of the websocket connection class ``base`` with our tweaks."""
    if getattr(base, _WRAPPED_MARKER, False):
        return base

    namespace: dict[str, Any] = {_WRAPPED_MARKER: True, "__module__": __name__}

    if inspect.iscoroutinefunction(base.connect):

        async def connect(self: Any) -> Any:
            _set_nodelay(self.websocket_handler)
            return await base.connect(self)

    else:

        def connect(self: Any) -> Any:
            _set_nodelay(self.websocket_handler)
            return base.connect(self)

    namespace["connect"] = connect

    if hasattr(base, "_connection_done") and hasattr(base, "_write_message"):
        namespace.update(_gateway_binary_relay(base))

    if hasattr(base, "_limit_rate"):

        def handle_incoming_message(self: Any, incoming_msg: Any) -> Any:
            note_comm_open(self, incoming_msg)
            return base.handle_incoming_message(self, incoming_msg)

        namespace["handle_incoming_message"] = handle_incoming_message

        def _limit_rate(self: Any, channel: Any, msg: dict, msg_list: list) -> bool:
            if channel == "iopub" and _is_our_notification(self, msg, msg_list):
                return False
            return base._limit_rate(self, channel, msg, msg_list)

        namespace["_limit_rate"] = _limit_rate

    return type(f"CodexExec{base.__name__}", (base,), namespace)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    settings = serverapp.web_app.settings
    base = settings.get("kernel_websocket_connection_class")
    if base is None:
        serverapp.log.warning("codex-exec: no kernel websocket connection class; not loaded")
        return
    settings["kernel_websocket_connection_class"] = wrap_connection_class(base)
    serverapp.log.info(
        "codex-exec: TCP_NODELAY on kernel websockets; IOPub limits lifted for codex.exec (%s)",
        base.__name__,
    )


# Older jupyter_server / notebook name of the hook.
load_jupyter_server_extension = _load_jupyter_server_extension
