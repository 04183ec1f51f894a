"""jupyter_server extension: make kernel websockets fit for a terminal.

Two things in jupyter_server 2.x hurt an interactive terminal that talks to
the kernel over a comm:

* **Nagle's algorithm.** The kernel websocket leaves it on. A keystroke's
  reply comes back as several small frames (the comm reply, busy/idle status,
  the echoed output); with Nagle on, later frames wait for the browser's
  delayed ACK, and a comm echo took a median 44 ms instead of about 1 ms.
  We call ``set_nodelay(True)`` on every kernel websocket, and on the
  server's own websocket to a gateway when ``--gateway-url`` is used.
* **IOPub rate limits.** ``ZMQChannelsWebsocketConnection`` drops IOPub
  messages past 1000 msgs/s or 1 MB/s (3 s window). Terminal output is
  already bounded by the protocol's flow control (``process/ack``), so the
  limiter only loses output. We exempt our own notifications
  (``comm_msg`` whose data is a ``process/*`` notification) and leave every
  other message (and the user's configuration) to the limiter.

The hook: the handler reads its connection class from the tornado settings
(``kernel_websocket_connection_class``) for every new websocket, so at load
time we swap in a subclass of whatever class is configured. Nothing is
monkeypatched globally, and a user-configured class keeps working.

Enabled by ``etc/jupyter/jupyter_server_config.d/codex_exec_kernel.json``;
``jupyter server extension list`` shows it.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

log = logging.getLogger(__name__)

#: Methods of comm notifications exempt from the IOPub rate limiter.
_OUR_NOTIFICATIONS = frozenset({"process/output", "process/exited", "process/closed"})

_WRAPPED_MARKER = "_codex_exec_nodelay"


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


def _is_our_notification(connection: Any, msg: dict, msg_list: list) -> bool:
    """Whether an IOPub message is one of our comm notifications."""
    try:
        header = connection.get_part("header", msg.get("header"), msg_list)
        if header.get("msg_type") != "comm_msg":
            return False
        content = connection.get_part("content", msg.get("content"), msg_list)
        data = content.get("data") or {}
        return isinstance(data, dict) and data.get("method") in _OUR_NOTIFICATIONS
    except Exception:
        return False


def wrap_connection_class(base: type) -> type:
    """A subclass of the websocket connection class ``base`` with our tweaks."""
    if getattr(base, _WRAPPED_MARKER, False):
        return base

    namespace: dict[str, Any] = {_WRAPPED_MARKER: True, "__module__": __name__}

    def _after_connect(self: Any) -> None:
        # Gateway mode: the server is itself a websocket client of the gateway.
        ws_future = getattr(self, "ws_future", None)
        if ws_future is not None:
            ws_future.add_done_callback(_client_nodelay)

    if inspect.iscoroutinefunction(base.connect):

        async def connect(self: Any) -> Any:
            _set_nodelay(self.websocket_handler)
            result = await base.connect(self)
            _after_connect(self)
            return result

    else:

        def connect(self: Any) -> Any:
            _set_nodelay(self.websocket_handler)
            result = base.connect(self)
            _after_connect(self)
            return result

    namespace["connect"] = connect

    if hasattr(base, "_limit_rate"):

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
