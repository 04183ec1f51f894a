"""The Jupyter comm transport: target ``codex.exec``, one comm = one connection.

Incoming comm messages arrive on whichever thread the kernel serves them on (the
main shell, a subshell, or the control channel) and are handed to the I/O thread.
Outgoing messages are sent from the I/O thread straight onto IOPub with the kernel's
session, never through ``Comm.send``: that method records the sending thread's
subshell and would pull the client's later messages back onto the (maybe busy)
main shell. Bytes travel as binary buffers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..dispatcher import ConnectionState
from ..iothread import IOThread
from ..protocol import COMM_TARGET

log = logging.getLogger("codex_exec_kernel")

TARGET = COMM_TARGET


class CommConnection:
    """One comm as a protocol connection."""

    binary = True

    def __init__(
        self,
        comm: Any,
        io: IOThread,
        publish: Callable[[Any, dict[str, Any], list[bytes], dict[str, Any]], None],
        parent: dict[str, Any],
        on_closed: Callable[[], object] | None = None,
    ) -> None:
        self.comm = comm
        #: Called when the client closes the comm (on whichever route the close came).
        self._on_closed = on_closed
        self.io = io
        self._publish = publish
        #: The latest message from the client: replies and notifications name it as
        #: parent. Written and read on the I/O thread only: the thread that receives a
        #: message hands it over together with the message (see :meth:`receive`).
        self.parent = parent
        self.state: ConnectionState | None = None
        io.run(self._connect)
        comm.on_msg(self.receive)
        comm.on_close(self._on_close)

    def _connect(self) -> None:
        self.state = self.io.dispatcher.connect(self)

    def send(self, message: dict[str, Any], buffers: list[bytes]) -> None:
        """Called on the I/O thread by the dispatcher."""
        self.io.table.owner.check()
        self._publish(self.comm, message, buffers, self.parent)

    def receive(self, msg: dict[str, Any]) -> None:
        """Called on the thread that served the comm message (a subshell, control, or
        the shell-channel thread: see ``shellroute.py``): hand it to the I/O loop."""
        data = msg.get("content", {}).get("data")
        # No copy here: the params decoder copies the one buffer it uses (protocol.py).
        buffers = list(msg.get("buffers") or [])
        self.io.call(self._handle, msg, data, buffers)

    def _handle(self, msg: dict[str, Any], data: Any, buffers: list[Any]) -> None:
        """On the I/O thread: this message becomes the parent of what answers it."""
        self.parent = msg
        state = self.state
        assert state is not None
        self.io.dispatcher.handle(state, data, buffers)

    def _on_close(self, msg: dict[str, Any]) -> None:
        if self._on_closed is not None:
            self._on_closed()
        state = self.state
        if state is not None:
            self.io.call(self.io.dispatcher.disconnect, state)
